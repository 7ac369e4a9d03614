# Every topic type of RocketMQ 5.3.3 and every kind of message the official
# Java producer sends to it, read by rmq_create_rdd and by a stream, column
# for column against what the official Java consumer decodes from the same
# offsets: normal (tags, keys, properties, NUL characters, zlib/LZ4/ZSTD,
# a 3 MiB body, a batch), FIFO, delay and timer, transactions (commit,
# rollback, check-back), retries, and BatchCQ topics, whose batches the
# broker stores as one record standing for many queue offsets.  Exact
# counts: a queue's offsets [min, max) are exactly the messages sent.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Encode;
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $ns = $ENV{RMQ_NAMESRV};
my $node = RmqTest::stream_node('kinds');
my $json = JSON::PP->new->canonical->utf8;
my $P = RmqTest::uniq('k4');

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $row_json = $RmqTest::row_json;

sub all_ranges
{
	my ($t) = @_;
	return "(SELECT array_agg(rmq_offset_range('$t', broker, queue_id, min_offset, max_offset)) FROM rmq_queues('$t'))";
}

sub canon { return RmqTest::canon(@_); }

sub rdd_lines
{
	my ($t, $opts) = @_;
	$opts //= '{}';
	return canon(sql("SELECT $row_json FROM rmq_create_rdd('g4_rdd', " . all_ranges($t) . ", '$opts')"));
}

sub java_lines
{
	my ($t, $n) = @_;
	return canon(RmqTest::java('InteropDump', $ns, $t, RmqTest::uniq('g4_java'), $n, 120));
}

# First mismatch, for the diagnostics.
sub first_diff
{
	my ($a, $b) = @_;
	for my $i (0 .. ($#$a > $#$b ? $#$a : $#$b))
	{
		my ($x, $y) = ($a->[$i] // '(none)', $b->[$i] // '(none)');
		return "ours: $x\njava: $y" if $x ne $y;
	}
	return 'none';
}

# --- the topics, and what the Java producer sends ---------------------------
my %type = (normal => '{"message.type": "NORMAL"}', fifo => '{"message.type": "FIFO"}',
	delay => '{"message.type": "DELAY"}', tx => '{"message.type": "TRANSACTION"}',
	bcq => '{"queue.type": "BatchCQ"}');
sql("SELECT rmq_create_topic('${P}_$_', 4, attributes => '$type{$_}')") for sort keys %type;
is(sql("SELECT string_agg(min_offset || '/' || max_offset, ' ') FROM rmq_queues('${P}_bcq')"),
	'0/0 0/0 0/0 0/0', 'an empty BatchCQ queue reports [0, 0), not the broker\'s min offset -1');
is(sql("SELECT count(*) FROM rmq_create_rdd('g4_rdd', " . all_ranges("${P}_bcq") . ")"), '0',
	'the read-everything pattern works on empty BatchCQ queues');

my %count = map { split /\t/ } grep { /\t/ } split /\n/, RmqTest::java('InteropKinds', $ns, $P);
is(scalar(keys %count), 6, 'the Java producer reports six topics (five types and a retry topic)');

my $stream_no = 0;
for my $t (sort keys %count)
{
	my $n = sql("SELECT sum(max_offset - min_offset) FROM rmq_queues('$t')");
	cmp_ok($count{$t}, '>', 0, "$t: messages were sent");
	# A transaction checked back twice before its commit lands is committed
	# twice: RocketMQ's at-least-once, not ours to undo.
	if ($t =~ /_tx$/)
	{
		cmp_ok($n, '>=', $count{$t}, "$t: the queues' offsets span at least the $count{$t} messages committed");
	}
	else
	{
		is($n, $count{$t}, "$t: the queues' offsets span exactly the $count{$t} messages sent");
	}
	my $java = java_lines($t, $n);
	is(scalar(@$java), $n, "$t: the Java consumer reads all $n");
	my $ours = rdd_lines($t);
	is(scalar(@$ours), $n, "$t: rmq_create_rdd returns all $n, none skipped or doubled");
	is_deeply($ours, $java, "$t: rmq_create_rdd equals the Java consumer, every column of every row")
	  or diag(first_diff($ours, $java));

	# A stream into a table with every column.
	$stream_no++;
	my ($s, $tab, $g) = ("s4_$stream_no", "t4_$stream_no", RmqTest::uniq("g4_s$stream_no"));
	sql(RmqTest::message_table($tab, 'properties_raw bytea'));
	sql("SELECT rmq_create_stream('$s', '$t', '$g', '$tab', options => '{\"batch_interval\": 200}')");
	RmqTest::wait_caught_up($node, $s, $g, $t);
	my $table = canon(sql("SELECT $row_json FROM $tab"));
	is_deeply($table, $java, "$t: the stream's table equals the Java consumer, every column of every row")
	  or diag(first_diff($table, $java));
	sql("SELECT rmq_drop_stream('$s')");
}

# --- NUL characters: U+FFFD in text, the exact bytes in properties_raw -----
my $N = "${P}_normal";
is(sql("SELECT tags || ' ' || array_to_string(keys, ',') || ' ' || (properties->>'nul') || ' '
            || (properties->>E'n\\uFFFDk') || ' '
            || (position('\\x6e756c01610062'::bytea IN properties_raw) > 0) || ' '
            || (position('\\x6e006b0176'::bytea IN properties_raw) > 0)
        FROM rmq_create_rdd('g4_rdd', " . all_ranges($N) . ") WHERE properties_raw IS NOT NULL"),
	Encode::encode_utf8("Tag\x{FFFD}Nul k\x{FFFD}ey,other a\x{FFFD}b v true true"),
	'NUL: U+FFFD in tags, keys and properties; properties_raw holds the stored bytes, NUL included');
is(sql("SELECT count(*) FROM rmq_create_rdd('g4_rdd', " . all_ranges($N) . ") WHERE properties_raw IS NULL"),
	$count{$N} - 1, 'NUL: properties_raw is NULL for every other message');

# --- BatchCQ: ranges inside a batch record, tag filters over batches -------
my $B = "${P}_bcq";
my $jb = java_lines($B, $count{$B});
my %java_at = map { my $o = $json->decode($_); ("$o->{queue_id}/$o->{queue_offset}" => $_) } @$jb;
# The 40-message batch (tag TagD): its queue and first offset.
my ($bq, $base) = split /\|/, sql("SELECT queue_id, min(queue_offset) FROM rmq_create_rdd('g4_rdd', "
	  . all_ranges($B) . ") WHERE tags = 'TagD' GROUP BY queue_id");
for my $r ([ $base + 5, $base + 17 ], [ $base + 5, $base + 6 ], [ $base + 30, $base + 40 ], [ $base, $base + 1 ])
{
	my ($from, $until) = @$r;
	my $got = canon(sql("SELECT $row_json FROM rmq_create_rdd('g4_rdd', "
		  . "ARRAY[rmq_offset_range('$B', 'broker-a', $bq, $from, $until)])"));
	my $want = [ sort map { $java_at{"$bq/$_"} // "(missing $_)" } $from .. $until - 1 ];
	is_deeply($got, $want, "BatchCQ: the range [$from, $until) inside a 40-message batch record is exactly its messages");
}
my @tagged = sort grep { $json->decode($_)->{tags} =~ /^(TagA|TagSingle)$/ } @$jb;
cmp_ok(scalar(@tagged), '>=', 7, 'BatchCQ: the Java consumer decodes batched and single messages tagged TagA or TagSingle');
my $filtered = rdd_lines($B, '{"tag_filter": "TagA || TagSingle"}');
is_deeply($filtered, \@tagged, 'BatchCQ: a tag filter keeps exactly the messages with those tags, batched ones included')
  or diag(first_diff($filtered, \@tagged));
{
	my $g = RmqTest::uniq('g4_tag');
	sql(RmqTest::message_table('t4_tag', 'properties_raw bytea'));
	sql("SELECT rmq_create_stream('s4_tag', '$B', '$g', 't4_tag', "
		  . "options => '{\"batch_interval\": 200, \"tag_filter\": \"TagA || TagSingle\"}')");
	RmqTest::wait_caught_up($node, 's4_tag', $g, $B);
	is_deeply(canon(sql("SELECT $row_json FROM t4_tag")), \@tagged, 'BatchCQ: a stream with the tag filter stores the same');
	sql("SELECT rmq_drop_stream('s4_tag')");
}

# --- rmq_send_batch to a BatchCQ topic: the Java consumer reads N messages --
my $ids = sql("SELECT array_to_string(rmq_send_batch('$B', ARRAY(SELECT convert_to('from sql ' || i, 'UTF8') "
	  . "FROM generate_series(1, 7) i), 'TagSql', ARRAY(SELECT 'sk' || i FROM generate_series(1, 7) i)), ' ')");
my @ids = split / /, $ids;
is(scalar(@ids), 7, 'rmq_send_batch to BatchCQ returns seven ids');
my $after = java_lines($B, $count{$B} + 7);
my @sql_msgs = map { $json->decode($_) } grep { $json->decode($_)->{tags} eq 'TagSql' } @$after;
is_deeply([ sort map { $_->{unique_key} } @sql_msgs ], [ sort @ids ],
	'rmq_send_batch to BatchCQ: the Java consumer reads the seven messages, each with the id returned');
is_deeply([ sort map { join ',', @{ $_->{keys} } } @sql_msgs ], [ sort map { "sk$_" } 1 .. 7 ],
	'... and each with its own keys');

# --- a damaged batch record (the broker counts by size fields, the message
# fields disagree): on_error decides, naming the batch's offsets -----------
my $D = "${P}_bcq_bad";
sql("SELECT rmq_create_topic('$D', 1, attributes => '{\"queue.type\": \"BatchCQ\"}')");
my $broker_addr = "127.0.0.1:" . ($ENV{RMQ_BROKER_PORT} // 10911);
for my $spec ([ 5, 'good' ], [ 4, 'lengths' ], [ 3, 'good' ])
{
	my ($stdout, $stderr);
	IPC::Run::run([ 'python3', "$ENV{RMQ_TEST_DIR}/broker/rmq_probe.py", 'send-inner-batch', $broker_addr, $D, 0, @$spec ],
		'>', \$stdout, '2>', \$stderr) or die "send-inner-batch: $stderr";
}
is(sql("SELECT max_offset FROM rmq_queues('$D')"), '12', 'damaged batch: the broker stored 5 + 4 + 3 offsets');
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT count(*) FROM rmq_create_rdd('g4_rdd', ARRAY[rmq_offset_range('$D', 'broker-a', 0, 0, 12)])");
like($err, qr/could not decode the batch at offsets \[5, 9\) of queue 0/, 'damaged batch: rmq_create_rdd fails, naming its offsets');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT string_agg(queue_offset::text, ',' ORDER BY queue_offset) FROM rmq_create_rdd('g4_rdd', "
	  . "ARRAY[rmq_offset_range('$D', 'broker-a', 0, 0, 12)], '{\"on_error\": \"skip\"}')");
is($out, '0,1,2,3,4,9,10,11', 'damaged batch: with on_error skip the other batches are read');
like($err, qr/skipping undecodable batch at offsets \[5, 9\)/, '... with a warning naming it');
is(sql("SELECT count(*) FROM rmq_create_rdd('g4_rdd', ARRAY[rmq_offset_range('$D', 'broker-a', 0, 9, 12)])"), '3',
	'damaged batch: a range after it reads fine');
for my $policy (qw(fail dead_letter))
{
	my ($s, $g) = ("s4_bad_$policy", RmqTest::uniq("g4_bad_$policy"));
	sql(RmqTest::message_table("t4_bad_$policy"));
	sql("SELECT rmq_create_stream('$s', '$D', '$g', 't4_bad_$policy', "
		  . "options => '{\"batch_interval\": 200, \"on_error\": \"$policy\"}')");
	if ($policy eq 'fail')
	{
		RmqTest::wait_state($node, $s, 'failed', 'damaged batch, on_error fail: the stream fails');
		like(sql("SELECT last_error FROM rmq_stream WHERE name = '$s'"), qr/offset 5 of queue 0/,
			'... naming where');
		is(sql("SELECT string_agg(queue_offset::text, ',' ORDER BY queue_offset) || ' next ' || "
			  . "(SELECT next_offset FROM rmq_offset WHERE consumer_group = '$g') FROM t4_bad_fail"),
			'0,1,2,3,4 next 5', '... having stored what came before it, and stopped right before it');
	}
	else
	{
		RmqTest::wait_caught_up($node, $s, $g, $D);
		is(sql("SELECT string_agg(queue_offset::text, ',' ORDER BY queue_offset) FROM t4_bad_dead_letter"),
			'0,1,2,3,4,9,10,11', 'damaged batch, on_error dead_letter: every other message stored');
		is(sql("SELECT queue_offset || ' ' || (error ~ 'batch at queue offset 5') || ' ' "
			  . "|| (position(convert_to('raw 0', 'UTF8') IN body) > 0) || ' ' "
			  . "|| (position(convert_to('raw 3', 'UTF8') IN body) > 0) FROM rmq_dead_letter WHERE stream = '$s'"),
			'5 true true true',
			'... and the batch record, whole, in rmq_dead_letter');
	}
	sql("SELECT rmq_drop_stream('$s')");
}

done_testing();
