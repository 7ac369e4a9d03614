# Format json_columns: JSON bodies into the target's columns.
#  - top-level keys into columns of their names, of many types (bigint,
#    text with escapes, numeric(10,2), integer, boolean, timestamptz, jsonb,
#    int[], text[], a 2-D int[]; times in ISO 8601 with zones, read without
#    timestamptz_in, and in other spellings, read with it), each row equal to what
#    json_populate_record makes of the same body (read back with
#    rmq_create_rdd); nested values through json_paths, in both spellings
#    ("$.order.total", '$.ship."the city"', ["items", 1, "sku"]) and "$" for
#    the whole body; header columns beside them (broker, queue_id,
#    queue_offset, tags, store_timestamp, topic: the header's, though the
#    body has a key "topic" too); a key absent gives the column its default
#    (serial, constant) or NULL, a JSON null gives NULL; every message once;
#  - poison messages under each on_error policy: a body that is not JSON, not
#    an object or not UTF-8, values a column's type does not take (top-level,
#    through a path, an array that is not rectangular, \u0000 for text,
#    \u0000 inside a jsonb value, which only COPY's jsonb_recv refuses, a
#    29 February of a common year):
#    'fail' stops right before the first (three streams, each failing at
#    another, with last_error naming the column and the reason), 'skip' and
#    'dead_letter' set each aside with the column and the reason in
#    rmq_dead_letter, and every other message arrives once;
#  - json_paths checked at rmq_create_stream and rmq_alter_stream.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $node = RmqTest::stream_node('stream_json_columns');
sub sql { return $node->safe_psql('postgres', $_[0]); }

# --- typed columns, paths, headers, defaults ---------------------------------
my $T = RmqTest::uniq('t110_main');
my $gT = RmqTest::uniq('g110_main');
sql("SELECT rmq_create_topic('$T', 4)");
sql(q{
CREATE TYPE jc_shape AS (id bigint, name text, price numeric(10,2), qty integer, ok boolean, at timestamptz,
                         meta jsonb, nums integer[], words text[], grid integer[]);
CREATE TABLE jc (broker text, queue_id integer, queue_offset bigint, tags text, store_timestamp timestamptz,
                 topic text,
                 id bigint, name text, price numeric(10,2), qty integer, ok boolean, at timestamptz,
                 meta jsonb, nums integer[], words text[], grid integer[],
                 body_topic text, total numeric, sku text, city text, doc jsonb,
                 rid bigserial, dflt text DEFAULT 'dflt', nul text DEFAULT 'not null', gen text GENERATED ALWAYS AS (name || '!') STORED);
});
sql(qq{SELECT rmq_create_stream('s_jc', '$T', '$gT', 'jc', format => 'json_columns',
    options => '{"batch_interval": 200, "batch_rows": 30, "json_paths": {"body_topic": "\$.topic", "total": "\$.order.total",
                 "sku": ["items", 1, "sku"], "city": "\$.ship.\\"the city\\"", "doc": "\$"}}')});
is(sql("SELECT options->'json_paths'->>'city' FROM rmq_stream WHERE name = 's_jc'"), '$.ship."the city"',
	'json_paths kept as given');

# Every fifth body lacks "qty" and "dflt"; names carry quotes, a tab, an é.
# Times in many spellings: ISO 8601 with a zone (read without
# timestamptz_in), and others (with it): no zone, a zone name, 7 digits.
my $at = q{format('%s-%s-%s%s%s:%s:%s%s%s', 1990 + s % 40, lpad((s % 12 + 1)::text, 2, '0'),
    lpad((s % 28 + 1)::text, 2, '0'), (ARRAY['T', ' '])[s % 2 + 1],
    lpad((s % 24)::text, 2, '0'), lpad((s * 7 % 60)::text, 2, '0'), lpad((s * 13 % 60)::text, 2, '0'),
    (ARRAY['', '.5', '.123456', '.1234567', '.04'])[s % 5 + 1],
    (ARRAY['Z', '+05:30', '-08', '', '+0100', '-11:45', ' UTC', 'Z', '+14'])[s % 9 + 1])};
my $body = qq{convert_to((jsonb_build_object('id', s, 'name', 'n' || s || ' "q"' || chr(9) || 'é', 'price', s * 1.125,
    'qty', s % 7, 'ok', s % 2 = 0, 'at', $at,
    'meta', jsonb_build_object('s', s, 'tags', jsonb_build_array('a', 'b')), 'nums', jsonb_build_array(s, s + 1, NULL),
    'words', jsonb_build_array('x' || s, 'y'), 'grid', jsonb_build_array(jsonb_build_array(s, 1), jsonb_build_array(2, 3)),
    'order', jsonb_build_object('total', s * 2.5), 'items', jsonb_build_array(jsonb_build_object('sku', 'A' || s),
    jsonb_build_object('sku', 'B' || s)), 'ship', jsonb_build_object('the city', 'C' || s), 'topic', 'from-body',
    'nul', NULL, 'dflt', 'given') - CASE WHEN s % 5 = 0 THEN ARRAY['qty', 'dflt'] ELSE '{}' END)::text, 'UTF8')};
RmqTest::produce($node, $T, per_queue => 25, tags => 'TagJ', body => $body);
RmqTest::wait_caught_up($node, 's_jc', $gT, $T);
my $j = q{convert_from(body, 'UTF8')::jsonb};
RmqTest::check_exact($node, table => 'jc', topic => $T, group => $gT, expect => 100,
	exp_cols => "broker, queue_id, queue_offset, tags, store_timestamp, topic,
                 (json_populate_record(NULL::jc_shape, convert_from(body, 'UTF8')::json)).*,
                 $j->>'topic', ($j #>> '{order,total}')::numeric, $j #>> '{items,1,sku}', $j #>> '{ship,the city}', $j",
	got_cols => 'broker, queue_id, queue_offset, tags, store_timestamp, topic, id, name, price, qty, ok, at, meta, nums, '
	  . 'words, grid, body_topic, total, sku, city, doc',
	label => 'json_columns: headers, keys as json_populate_record converts them, paths');
is(sql("SELECT count(*) FILTER (WHERE topic = '$T' AND body_topic = 'from-body') || ' '
        || count(*) FILTER (WHERE qty IS NULL) || ' ' || count(*) FILTER (WHERE id % 5 = 0 AND qty IS NULL) || ' '
        || count(*) FILTER (WHERE dflt = 'dflt') || ' ' || count(*) FILTER (WHERE id % 5 = 0 AND dflt = 'dflt') || ' '
        || count(*) FILTER (WHERE dflt = 'given') || ' ' || count(DISTINCT rid) || ' ' || count(*) FILTER (WHERE nul IS NULL)
        || ' ' || count(*) FILTER (WHERE gen = name || '!') FROM jc"),
	'100 20 20 20 20 80 100 100 100',
	'header topic beside the body\'s; absent keys: NULL or the default (constant, serial); JSON null: NULL; generated computed');
is(sql("SELECT name || '|' || price || '|' || grid::text || '|' || nums::text || '|' || total || '|' || sku || '|' || city
        FROM jc WHERE id = 3"),
	qq{n3 "q"\té|3.38|{{3,1},{2,3}}|{3,4,NULL}|7.5|B3|C3}, 'a row, spelled out');

# --- poison messages -------------------------------------------------------------
my $P = RmqTest::uniq('t110_poison');
sql("SELECT rmq_create_topic('$P', 1)");
sql("CREATE TYPE p_shape AS (id integer, name text, at timestamptz, grid integer[], meta jsonb)");
my %g = map { $_ => RmqTest::uniq("g110_$_") } qw(fail fail11 fail20 skip dl);
my %from = (fail11 => 11, fail20 => 20);
# Those starting at an offset are created once it exists (below).
sub p_stream
{
	my ($k, $policy) = @_;
	my $start = $from{$k} ? qq{start_from => 'offsets', start_offsets => '{"broker-a/0": $from{$k}}', } : '';
	sql("CREATE TABLE p_$k (broker text, queue_id integer, queue_offset bigint, id integer, name text,
                            at timestamptz, grid integer[], meta jsonb, n numeric)");
	sql(qq{SELECT rmq_create_stream('p_$k', '$P', '$g{$k}', 'p_$k', format => 'json_columns', $start
           options => '{"batch_interval": 200, "on_error": "$policy", "json_paths": {"n": "\$.x.n"}}')});
}
p_stream(@$_) for [ 'fail', 'fail' ], [ 'skip', 'skip' ], [ 'dl', 'dead_letter' ];
my $good = q{convert_to(json_build_object('id', s, 'name', 'p' || s, 'x', json_build_object('n', s * 1.5))::text, 'UTF8')};
sub send_raw { sql("SELECT rmq_send('$P', $_[0], NULL, NULL, NULL, '{\"queue_id\": 0}')"); }
sub send_text { my ($t) = @_; $t =~ s/'/''/g; send_raw("convert_to('$t', 'UTF8')"); }
my %poison = (
	10 => [ 'not json {', qr/^body is not JSON: / ],
	11 => [ '{"id": "abc"}', qr/^column "id" \(integer\): invalid input syntax for type integer: "abc"$/ ],
	15 => [ '{"id": 1, "at": "not a time"}', qr/^column "at" \(timestamp with time zone\): invalid input syntax for type timestamp with time zone: "not a time"$/ ],
	16 => [ '[1, 2]', qr/^body is a JSON array, not an object$/ ],
	17 => [ '{"id": 2, "x": {"n": "many"}}', qr/^column "n" \(numeric, from \$\.x\.n\): invalid input syntax for type numeric: "many"$/ ],
	18 => [ '{"id": 3, "grid": [[1], [2, 3]]}', qr/^column "grid" \(integer\[\]\): .*sub-arrays differ/ ],
	19 => [ '{"id": 4, "name": "a\u0000b"}', qr/^column "name" \(text\): unsupported Unicode escape sequence: \\u0000 cannot be converted to text$/ ],
	20 => [ '{"id": 5, "meta": {"a": "\u0000"}}', qr/^column "meta": unsupported Unicode escape sequence$/ ],
	25 => [ undef, qr/^body is not JSON: it is not valid UTF-8$/ ],
	28 => [ '{"id": 9, "at": "2023-02-29T12:00:00Z"}', qr/^column "at" \(timestamp with time zone\): date\/time field value out of range: "2023-02-29T12:00:00Z"$/ ],
);
RmqTest::produce($node, $P, queues => [0], per_queue => 10, body => $good);    # 0..9
send_text($poison{$_}[0]) for 10, 11;
RmqTest::produce($node, $P, queues => [0], per_queue => 3, body => $good);     # 12..14
send_text($poison{$_}[0]) for 15 .. 20;
send_text('{"id": 6, "name": "\u00e9\ud83d\ude00\n", "at": "2024-02-29T23:59:59.999999-00:30", "id": 21}');    # 21: the last id wins
RmqTest::produce($node, $P, queues => [0], per_queue => 3, body => $good);     # 22..24
send_raw(q{'\x7b226964223a20ff7d'::bytea});                                   # 25: {"id": \xff}
RmqTest::produce($node, $P, queues => [0], per_queue => 2, body => $good);     # 26..27
send_text($poison{28}[0]);
p_stream($_, 'fail') for qw(fail11 fail20);
my $bad = join(', ', sort { $a <=> $b } keys %poison);
my $valid = "queue_offset NOT IN ($bad)";
my $exp_cols = "broker, queue_id, queue_offset, (json_populate_record(NULL::p_shape, convert_from(body, 'UTF8')::json)).*, "
  . "(convert_from(body, 'UTF8')::jsonb #>> '{x,n}')::numeric";
my $got_cols = 'broker, queue_id, queue_offset, id, name, at, grid, meta, n';

# on_error 'fail': each stream stops right before its first poison message.
for my $f ([ 'fail', 10, qr/body is not JSON/ ], [ 'fail11', 11, qr/column "id" \(integer\): invalid input syntax/ ],
	[ 'fail20', 20, qr/column "meta": unsupported Unicode escape sequence/ ])
{
	my ($k, $at, $why) = @$f;
	RmqTest::wait_state($node, "p_$k", 'failed', "on_error fail (from offset " . ($from{$k} // 0) . "): the stream fails");
	my $err = sql("SELECT last_error FROM rmq_stream WHERE name = 'p_$k'");
	like($err, qr/poison message at offset $at of queue 0/, "$k: last_error names offset $at: $err");
	like($err, $why, "$k: ... and the column and reason");
	is(sql("SELECT next_offset FROM rmq_offset WHERE consumer_group = '$g{$k}'"), $at,
		"$k: the stored offset is the poison message's");
	is(sql("SELECT count(*) || ' ' || coalesce(max(queue_offset), -1) FROM p_$k"),
		$k eq 'fail' ? '10 9' : '0 -1', "$k: everything before it committed, nothing after");
}
is(sql("SELECT count(*) FROM rmq_dead_letter WHERE stream LIKE 'p_fail%'"), '0', 'on_error fail: no dead letter');
sql("SELECT rmq_alter_stream('p_fail', '{\"on_error\": \"dead_letter\"}')");
sql("SELECT rmq_resume_stream('p_fail')");

# 'skip', 'dead_letter', and 'fail' resumed with 'dead_letter'.
my $rdd = "rmq_create_rdd('rmq_tap_check', ARRAY[rmq_offset_range('$P', 'broker-a', 0, 0, 29)])";
for my $p ([ 'skip', 'skip', 'NULL' ], [ 'dl', 'dead_letter', 'r.body' ], [ 'fail', 'dead_letter', 'r.body' ])
{
	my ($k, $policy, $kept) = @$p;
	RmqTest::wait_caught_up($node, "p_$k", $g{$k}, $P);
	RmqTest::check_exact($node, table => "p_$k", topic => $P, group => $g{$k}, expect => 19, filter => $valid,
		exp_cols => $exp_cols, got_cols => $got_cols, label => "on_error $policy ($k)");
	is(sql("SELECT state || ' ' || coalesce(last_error, '-') FROM rmq_stream WHERE name = 'p_$k'"), 'running -',
		"$k: the stream goes on");
	is(sql("SELECT string_agg(d.queue_offset::text, ' ' ORDER BY d.queue_offset) FROM rmq_dead_letter d JOIN $rdd r
            ON r.queue_offset = d.queue_offset WHERE d.stream = 'p_$k' AND d.policy = '$policy'
            AND d.msg_id = r.msg_id AND d.body IS NOT DISTINCT FROM $kept"),
		join(' ', sort { $a <=> $b } keys %poison), "$k: each poison message in rmq_dead_letter, once, "
		  . ($kept eq 'NULL' ? 'without' : 'with') . ' its body');
	my %err = map { split /\|/, $_, 2 } split /\n/,
	  sql("SELECT queue_offset || '|' || error FROM rmq_dead_letter WHERE stream = 'p_$k'");
	like($err{$_} // '(none)', $poison{$_}[1], "$k: dead letter at offset $_ says why") for sort { $a <=> $b } keys %poison;
	is(sql("SELECT sum(skipped) FROM rmq_batch WHERE stream = 'p_$k'"), '10', "$k: rmq_batch counts the 10 set aside");
}
is(sql("SELECT id || ' ' || (name = U&'\\00e9\\+01F600' || chr(10)) || ' ' || (at = '2024-03-01 00:29:59.999999+00')
        FROM p_dl WHERE queue_offset = 21"), '21 true true',
	'escapes and surrogate pairs decoded; a key given twice: the last one; a leap day with a half-hour zone');
sql("SELECT rmq_drop_stream(name) FROM rmq_stream");

# --- options checked up front ------------------------------------------------------
sql("CREATE TABLE v (a integer, topic integer, g integer GENERATED ALWAYS AS (a + 1) STORED)");
my @refused = (
	[ q{format => 'json_columns', options => '{"json_paths": {"nope": "$.a"}}'},
		qr/json_paths names column "nope", which stream target "v" does not have/ ],
	[ q{format => 'json_columns', options => '{"json_paths": {"a": "a.b"}}'}, qr/the path of column "a" is not valid: it must start with \$/ ],
	[ q{format => 'json_columns', options => '{"json_paths": {"a": "$.a[x]"}}'}, qr/an index must be a non-negative integer/ ],
	[ q{format => 'json_columns', options => '{"json_paths": {"a": ["a", 1.5]}}'}, qr/an index must be a non-negative integer/ ],
	[ q{format => 'json_columns', options => '{"json_paths": {"a": 5}}'}, qr/must be a JSON path or an array/ ],
	[ q{format => 'json_columns', options => '{"json_paths": ["a"]}'}, qr/"json_paths" must be a JSON object/ ],
	[ q{format => 'json_columns', options => '{"json_paths": {"g": "$.g"}}'}, qr/names column "g" of "v", which is generated/ ],
	[ q{format => 'json', options => '{"json_paths": {"a": "$.a"}}'}, qr/"json_paths" needs format => 'json_columns'/ ],
	[ q{format => 'json_columns'}, qr/column "topic" of stream target "v" has type integer, but the stream writes text.*HINT:.*json_paths/s ],
);
for my $r (@refused)
{
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT rmq_create_stream('v', '$P', 'gv', 'v', $r->[0])");
	like($err, $r->[1], "refused at creation: $r->[0]");
}
is(sql("SELECT count(*) FROM rmq_stream"), '0', 'no stream was created by those');
sql(q{SELECT rmq_create_stream('v', 'x', 'gv', 'v', format => 'json_columns', options => '{"json_paths": {"topic": "$.topic"}}')});
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT rmq_alter_stream('v', '{"json_paths": {"zzz": "$.a"}}')});
like($err, qr/json_paths names column "zzz"/, 'refused by rmq_alter_stream: an unknown column');
($ret, $out, $err) = $node->psql('postgres', q{SELECT rmq_alter_stream('v', '{"json_paths": null}')});
like($err, qr/column "topic" of stream target "v" has type integer/,
	'refused by rmq_alter_stream: json_paths removed, the standard column "topic" no longer fits');
sql(q{SELECT rmq_alter_stream('v', '{"json_paths": {"topic": ["t"], "a": "$.\"x y\"[2]"}}')});
is(sql("SELECT options->'json_paths' FROM rmq_stream WHERE name = 'v'"), '{"a": "$.\"x y\"[2]", "topic": ["t"]}',
	'rmq_alter_stream replaces json_paths as a whole');
sql("SELECT rmq_drop_stream('v')");

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC|TRAP:/, 'no backend crashed');
$node->stop;
done_testing();
