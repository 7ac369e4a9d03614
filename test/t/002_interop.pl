# Interoperability with the official RocketMQ Java client, byte for byte:
# what the Java producer sends (tags, keys, user properties, non-ASCII and
# binary bodies, zlib-compressed bodies, a batch) rmq_create_rdd returns
# exactly as the Java consumer sees it; what rmq_send and rmq_send_batch
# send, the Java consumer receives intact.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $ns = $ENV{RMQ_NAMESRV};
my $node = RmqTest::node('interop');
my $tmp = PostgreSQL::Test::Utils::tempdir();

# Properties the client or broker set themselves; the TSV lines compare
# user properties only, as InteropTsv does (MessageConst.STRING_HASH_SET).
my $sys = "ARRAY['KEYS','TAGS','WAIT','DELAY','UNIQ_KEY','CLUSTER','MSG_REGION','TRACE_ON',"
  . "'MIN_OFFSET','MAX_OFFSET','CONSUME_START_TIME','INSTANCE_ID','TRAN_MSG','PGROUP',"
  . "'REAL_TOPIC','REAL_QID','RETRY_TOPIC','RECONSUME_TIME','MAX_RECONSUME_TIMES',"
  . "'ORIGIN_MESSAGE_ID','__transactionId__','BATCH_UNIQ_ID']";

# One InteropTsv line per message, built from rmq_create_rdd's columns.
sub sql_lines
{
	my ($topic, $group) = @_;
	return $node->safe_psql('postgres', qq{
SELECT queue_id || E'\\t' || queue_offset || E'\\t' || coalesce(unique_key, '') || E'\\t'
    || coalesce(tags, '') || E'\\t' || coalesce(properties->>'KEYS', '') || E'\\t'
    || (SELECT '{' || coalesce(string_agg(to_json(k)::text || ':' || to_json(v)::text, ','
                                          ORDER BY k COLLATE "C"), '') || '}'
        FROM jsonb_each_text(properties - $sys) AS e(k, v)) || E'\\t'
    || md5(body) || E'\\t' || length(body) || E'\\t' || encode(body, 'hex')
FROM rmq_create_rdd('$group', (SELECT array_agg(rmq_offset_range('$topic', broker, queue_id, min_offset, max_offset))
                               FROM rmq_queues('$topic')))
ORDER BY queue_id, queue_offset});
}

sub sorted_lines { my ($text) = @_; return [ sort grep { $_ ne '' } split /\n/, $text ]; }
sub cols { my ($line) = @_; return [ split /\t/, $line, -1 ]; }

# --- Java producer -> rmq_create_rdd ---------------------------------------
$node->safe_psql('postgres', "SELECT rmq_create_topic('tap_interop_in', 4)");
RmqTest::java('InteropProduce', $ns, 'tap_interop_in', "$tmp/produced.tsv");
my $produced = sorted_lines(slurp_file("$tmp/produced.tsv"));
cmp_ok(scalar(@$produced), '>=', 17, 'the Java producer sent its set');

my $ours = sorted_lines(sql_lines('tap_interop_in', 'tap_interop_rdd'));
is(scalar(@$ours), scalar(@$produced), 'rmq_create_rdd returns as many messages as were sent');

# What the Java consumer sees of the same queues, decoded by Apache's code.
my $java = sorted_lines(RmqTest::java('InteropConsume', $ns, 'tap_interop_in', 'tap_interop_java',
		scalar(@$produced), 60));
is_deeply($ours, $java, 'rmq_create_rdd matches the Java consumer line for line (ids, tags, keys, properties, bodies)');

# And every field the producer chose, except the id of batch members: a
# 5.3.3 broker gives them the batch's UNIQ_KEY (apache/rocketmq#9416).
my %by_place = map { my $c = cols($_); ("$c->[0]/$c->[1]" => $c) } @$ours;
my $same = 0;
for my $line (@$produced)
{
	my $p = cols($line);
	my $o = $by_place{"$p->[0]/$p->[1]"};
	next unless $o;
	my @pp = @$p; my @oo = @$o;
	splice(@pp, 2, 1); splice(@oo, 2, 1);
	$same++ if join("\t", @pp) eq join("\t", @oo);
}
is($same, scalar(@$produced), 'tags, keys, user properties and bodies equal what the Java producer sent');
my $compressed = grep { cols($_)->[7] >= 4096 } @$ours;
cmp_ok($compressed, '>=', 2, 'bodies the Java client compressed are read back whole');

# --- rmq_send / rmq_send_batch -> Java consumer ------------------------------
$node->safe_psql('postgres', "SELECT rmq_create_topic('tap_interop_out', 4)");
$node->safe_psql('postgres', q{
CREATE TABLE sent (id text, tags text, keys text, props jsonb, body bytea);
INSERT INTO sent
SELECT rmq_send('tap_interop_out', b, t, k, p), t, k, coalesce(p, '{}'), b
FROM (VALUES
    (convert_to('plain from PostgreSQL', 'UTF8'), 'TagA', 'k1 k2', NULL::jsonb),
    (convert_to('grüße, 日本語, 🚀', 'UTF8'), 'TagUni', NULL, '{"lang": "ja", "note": "ünï©ødé"}'),
    ((SELECT string_agg(set_byte('\x00'::bytea, 0, x), ''::bytea ORDER BY x) FROM generate_series(0, 255) x),
     NULL, 'binary', '{"n": 42}'),
    (convert_to(repeat('compress me please ', 1000), 'UTF8'), 'Big', 'big', NULL),
    ((SELECT decode(string_agg(md5(x::text), ''), 'hex') FROM generate_series(1, 6400) x), 'Random', NULL, NULL)
) v(b, t, k, p);
INSERT INTO sent
SELECT u.id, 'TagBatch', 'bk' || u.n, '{"batch": "yes"}', convert_to('batch member ' || u.n, 'UTF8')
FROM unnest(rmq_send_batch('tap_interop_out',
        ARRAY(SELECT convert_to('batch member ' || n, 'UTF8') FROM generate_series(1, 10) n),
        'TagBatch', ARRAY(SELECT 'bk' || n FROM generate_series(1, 10) n), '{"batch": "yes"}'))
     WITH ORDINALITY AS u(id, n);
});
my $expected = sorted_lines($node->safe_psql('postgres', q{
SELECT id || E'\t' || coalesce(tags, '') || E'\t' || coalesce(keys, '') || E'\t'
    || (SELECT '{' || coalesce(string_agg(to_json(k)::text || ':' || to_json(v)::text, ',' ORDER BY k COLLATE "C"), '') || '}'
        FROM jsonb_each_text(props) AS e(k, v)) || E'\t'
    || md5(body) || E'\t' || length(body) || E'\t' || encode(body, 'hex')
FROM sent}));
is(scalar(@$expected), 15, 'fifteen messages sent from SQL');

my $got = RmqTest::java('InteropConsume', $ns, 'tap_interop_out', 'tap_interop_java2', 15, 60);
my @received = map { my @c = @{ cols($_) }; join("\t", @c[2 .. $#c]) } grep { $_ ne '' } split /\n/, $got;
is_deeply([ sort @received ], $expected,
	'the Java consumer receives every message intact, each with the id rmq_send returned');
done_testing();
