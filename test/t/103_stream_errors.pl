# Streams that cannot go on, and what happens to the messages:
#  - a poison message (format json, a body that is not JSON) under each
#    on_error policy: 'fail' stops the stream (state failed, last_error
#    names the message) with everything before it committed and nothing
#    after; 'skip' and 'dead_letter' go on and record it in rmq_dead_letter
#    (without, resp. with, its body);
#  - two poison messages on different queues of one batch under 'fail':
#    each queue stops right before its own (neither is passed over);
#  - an undecodable message (stored flagged compressed by a producer that did
#    not compress it): the same policies, the raw record as dead-letter body;
#    an rdd over it fails with a clear error;
#  - the target table dropped: failed; recreated and resumed: continues from
#    the stored offsets, exactly once;  likewise a column whose type no
#    longer matches;
#  - INSERT on the target revoked from the stream's owner (a role that is
#    not a superuser and owns nothing): failed; granted again and resumed:
#    exactly once.
# Data loss (fail_on_data_loss) is tested in 105_data_loss.pl.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $node = RmqTest::stream_node('stream_errors');
sub sql { return $node->safe_psql('postgres', $_[0]); }

# --- poison messages -----------------------------------------------------------
my $P = RmqTest::uniq('t103_poison');
sql("SELECT rmq_create_topic('$P', 1)");
my %g = map { $_ => RmqTest::uniq("g103_$_") } qw(fail skip dl);
for my $p ([ 'fail', 'fail' ], [ 'skip', 'skip' ], [ 'dl', 'dead_letter' ])
{
	sql("CREATE TABLE p_$p->[0] (broker text, queue_id integer, queue_offset bigint, body jsonb, tags text)");
	sql("SELECT rmq_create_stream('s_$p->[0]', '$P', '$g{$p->[0]}', 'p_$p->[0]', format => 'json',
           options => '{\"batch_interval\": 200, \"on_error\": \"$p->[1]\"}')");
}
RmqTest::produce($node, $P, queues => [0], per_queue => 20);    # offsets 0..19
RmqTest::wait_caught_up($node, "s_$_", $g{$_}, $P) for qw(fail skip dl);

sub send_one
{
	my ($body, $tags, $keys) = @_;
	sql("SELECT rmq_send('$P', convert_to('$body', 'UTF8'), " . ($tags ? "'$tags'" : 'NULL') . ', '
		  . ($keys ? "'$keys'" : 'NULL') . ", '{\"origin\": \"tap\"}', '{\"queue_id\": 0}')");
}
send_one('not json {', 'TagP', 'poison-1 second-key');                    # 20
send_one('42');                                                          # 21: JSON, not an object
RmqTest::produce($node, $P, queues => [0], per_queue => 8);               # 22..29
send_one('{"unterminated": [1, 2', 'TagQ', 'poison-2');                  # 30
RmqTest::produce($node, $P, queues => [0], per_queue => 9);               # 31..39
my $valid = "queue_offset NOT IN (20, 30)";
my $json_cols = q{broker, queue_id, queue_offset, convert_from(body, 'UTF8')::jsonb AS body, tags};
my $got_cols = 'broker, queue_id, queue_offset, body, tags';

# on_error 'fail'
RmqTest::wait_state($node, 's_fail', 'failed', "on_error fail: the poison message fails the stream");
my $err = sql("SELECT last_error FROM rmq_stream WHERE name = 's_fail'");
like($err, qr/json/i, "on_error fail: last_error says the body is not JSON: $err");
like($err, qr/\b20\b/, 'on_error fail: last_error names the offset of the poison message');
RmqTest::wait_workers($node, 's_fail', 0, 'on_error fail: no worker for a failed stream');
is(sql("SELECT count(*) || ' ' || count(DISTINCT queue_offset) || ' ' || min(queue_offset) || ' ' || max(queue_offset) FROM p_fail"),
	'20 20 0 19', 'on_error fail: everything before the poison message committed, nothing after');
is(sql("SELECT next_offset FROM rmq_offset WHERE consumer_group = '$g{fail}'"), '20',
	'on_error fail: the stored offset is the poison message\'s');
is(sql("SELECT count(*) FROM rmq_dead_letter WHERE stream = 's_fail'"), '0', 'on_error fail: no dead letter');
# The way on: skip it from now on.  Resuming goes on from the stored offset.
sql("UPDATE rmq_stream SET options = options || '{\"on_error\": \"skip\"}' WHERE name = 's_fail'");
sql("SELECT rmq_resume_stream('s_fail')");
RmqTest::wait_caught_up($node, 's_fail', $g{fail}, $P);
RmqTest::check_exact($node, table => 'p_fail', topic => $P, group => $g{fail}, expect => 38, filter => $valid,
	exp_cols => $json_cols, got_cols => $got_cols, label => 'on_error fail, then resumed with skip');
is(sql("SELECT string_agg(queue_offset || ':' || policy, ' ' ORDER BY queue_offset) FROM rmq_dead_letter WHERE stream = 's_fail'"),
	'20:skip 30:skip', 'resumed: both poison messages skipped');

# on_error 'skip' and 'dead_letter': the same messages, recorded.
my $rdd = "rmq_create_rdd('rmq_tap_check', ARRAY[rmq_offset_range('$P', 'broker-a', 0, 0, 40)])";
for my $p ([ 'skip', 'skip', 'NULL' ], [ 'dl', 'dead_letter', 'r.body' ])
{
	my ($s, $policy, $body) = ("s_$p->[0]", $p->[1], $p->[2]);
	RmqTest::wait_caught_up($node, $s, $g{ $p->[0] }, $P);
	RmqTest::check_exact($node, table => "p_$p->[0]", topic => $P, group => $g{ $p->[0] }, expect => 38,
		filter => $valid, exp_cols => $json_cols, got_cols => $got_cols, label => "on_error $policy");
	is(sql("SELECT state || ' ' || coalesce(last_error, '-') FROM rmq_stream WHERE name = '$s'"), 'running -',
		"on_error $policy: the stream goes on");
	is(sql("SELECT count(*) FROM rmq_dead_letter WHERE stream = '$s'"), '2', "on_error $policy: two dead letters");
	is(sql("SELECT count(*) FROM rmq_dead_letter d JOIN $rdd r ON r.queue_offset = d.queue_offset
            WHERE d.stream = '$s' AND d.topic = '$P' AND d.broker = 'broker-a' AND d.queue_id = 0
              AND d.queue_offset IN (20, 30) AND d.msg_id = r.msg_id AND d.unique_key = r.unique_key
              AND d.tags = r.tags AND d.keys = array_to_string(r.keys, ' ') AND d.properties = r.properties
              AND d.properties->>'origin' = 'tap' AND d.policy = '$policy' AND d.error ~* 'json'
              AND d.body IS NOT DISTINCT FROM $body"),
		'2', "on_error $policy: rmq_dead_letter records where, what and why"
		  . ($policy eq 'skip' ? ' (no body)' : ' (with the raw body)'));
	is(sql("SELECT sum(skipped) FROM rmq_batch WHERE stream = '$s'"), '2', "on_error $policy: rmq_batch counts the skipped");
}
is(sql("SELECT convert_from(body, 'UTF8') FROM rmq_dead_letter WHERE stream = 's_dl' AND queue_offset = 20"),
	'not json {', 'dead_letter keeps the body byte for byte');
is(sql("SELECT body FROM p_skip WHERE queue_offset = 21"), '42', 'a JSON scalar is not poison');
sql("SELECT rmq_drop_stream('s_$_')") for qw(fail skip dl);

# --- two poison messages in one batch, on different queues -----------------
# Produced before the stream starts, so its first batch holds both.
my $P2 = RmqTest::uniq('t103_poison2');
my $gp2 = RmqTest::uniq('g103_poison2');
sql("SELECT rmq_create_topic('$P2', 2)");
sub send_to
{
	my ($q, $body) = @_;
	sql("SELECT rmq_send('$P2', convert_to('$body', 'UTF8'), NULL, NULL, NULL, '{\"queue_id\": $q}')");
}
RmqTest::produce($node, $P2, queues => [0], per_queue => 5);    # q0: 0..4
send_to(0, 'not json, queue 0');                                # q0: 5
RmqTest::produce($node, $P2, queues => [0], per_queue => 4);    # q0: 6..9
RmqTest::produce($node, $P2, queues => [1], per_queue => 3);    # q1: 0..2
send_to(1, 'not json, queue 1');                                # q1: 3
RmqTest::produce($node, $P2, queues => [1], per_queue => 6);    # q1: 4..9
sql("CREATE TABLE p2 (broker text, queue_id integer, queue_offset bigint, body jsonb, tags text)");
sql("SELECT rmq_create_stream('s_p2', '$P2', '$gp2', 'p2', format => 'json',
       options => '{\"batch_interval\": 5000, \"on_error\": \"fail\"}')");
RmqTest::wait_state($node, 's_p2', 'failed', 'two poison messages, on_error fail: the stream fails');
is(sql("SELECT string_agg(queue_id || ':' || n || ':' || mx, ' ' ORDER BY queue_id)
        FROM (SELECT queue_id, count(*) n, max(queue_offset) mx FROM p2 GROUP BY 1) x"),
	'0:5:4 1:3:2', 'two poison messages: each queue committed up to its own poison message, nothing after');
is(sql("SELECT string_agg(queue_id || ':' || next_offset, ' ' ORDER BY queue_id) FROM rmq_offset WHERE consumer_group = '$gp2'"),
	'0:5 1:3', 'two poison messages: each queue\'s stored offset is its poison message\'s');
is(sql("SELECT rows FROM rmq_batch WHERE stream = 's_p2' ORDER BY id DESC LIMIT 1"), '8',
	'two poison messages: rmq_batch counts only the rows written');
sql("SELECT rmq_alter_stream('s_p2', '{\"on_error\": \"skip\"}')");
sql("SELECT rmq_resume_stream('s_p2')");
RmqTest::wait_caught_up($node, 's_p2', $gp2, $P2);
RmqTest::check_exact($node, table => 'p2', topic => $P2, group => $gp2, expect => 18,
	filter => "(queue_id, queue_offset) NOT IN ((0, 5), (1, 3))", exp_cols => $json_cols, got_cols => $got_cols,
	label => 'two poison messages, resumed with skip');
is(sql("SELECT string_agg(queue_id || '\@' || queue_offset, ' ' ORDER BY queue_id) FROM rmq_dead_letter WHERE stream = 's_p2'"),
	'0@5 1@3', 'two poison messages: both skipped after the resume');
sql("SELECT rmq_drop_stream('s_p2')");

# --- undecodable messages -------------------------------------------------------
# A producer that sets the compressed flag on a body it did not compress: the
# broker stores the flag as given, and no client can decode that message.
my $U = RmqTest::uniq('t103_undecodable');
my %gu = map { $_ => RmqTest::uniq("g103u_$_") } qw(fail dl);
my $broker_addr = '127.0.0.1:' . ($ENV{RMQ_BROKER_PORT} or die 'RMQ_BROKER_PORT is not set');
sql("SELECT rmq_create_topic('$U', 1)");
for my $p ([ 'fail', 'fail' ], [ 'dl', 'dead_letter' ])
{
	sql(RmqTest::message_table("u_$p->[0]"));
	sql("SELECT rmq_create_stream('su_$p->[0]', '$U', '$gu{$p->[0]}', 'u_$p->[0]',
           options => '{\"batch_interval\": 200, \"on_error\": \"$p->[1]\"}')");
}
RmqTest::produce($node, $U, queues => [0], per_queue => 10);    # 0..9
my ($probe_out, $perr);
IPC::Run::run([ 'python3', "$ENV{RMQ_TEST_DIR}/broker/rmq_probe.py", 'send-raw', $broker_addr, $U, '0', '0x1',
		'this is not zlib', 'TagU' ], '>', \$probe_out, '2>', \$perr)
  or die "rmq_probe send-raw failed: $perr";
chomp $probe_out;
is($probe_out, '10', 'undecodable: the broker stored the message flagged compressed at offset 10');
RmqTest::produce($node, $U, queues => [0], per_queue => 5);     # 11..15

RmqTest::wait_state($node, 'su_fail', 'failed', 'undecodable, on_error fail: the stream fails');
$err = sql("SELECT last_error FROM rmq_stream WHERE name = 'su_fail'");
like($err, qr/undecodable message at offset 10 of queue 0/, "undecodable, on_error fail: last_error names it: $err");
like($err, qr/zlib|inflate|compress/i, 'undecodable, on_error fail: last_error says why');
is(sql("SELECT count(*) || ' ' || count(DISTINCT queue_offset) || ' ' || max(queue_offset) FROM u_fail"),
	'10 10 9', 'undecodable, on_error fail: everything before it committed, nothing after');
is(sql("SELECT next_offset FROM rmq_offset WHERE consumer_group = '$gu{fail}'"), '10',
	'undecodable, on_error fail: the stored offset is the undecodable message\'s');
sql("SELECT rmq_alter_stream('su_fail', '{\"on_error\": \"dead_letter\"}')");
sql("SELECT rmq_resume_stream('su_fail')");
for my $p ([ 'fail', 'resumed with dead_letter' ], [ 'dl', 'on_error dead_letter' ])
{
	my ($s, $label) = ("su_$p->[0]", "undecodable, $p->[1]");
	RmqTest::wait_caught_up($node, $s, $gu{ $p->[0] }, $U);
	# check_exact reads the whole queue with an rdd, which stops at the
	# undecodable message: compare with the two ranges around it instead.
	is(sql("WITH exp AS MATERIALIZED (SELECT $RmqTest::all_columns FROM rmq_create_rdd('rmq_tap_check',
                ARRAY[rmq_offset_range('$U', 'broker-a', 0, 0, 10), rmq_offset_range('$U', 'broker-a', 0, 11, 16)])),
                 got AS MATERIALIZED (SELECT $RmqTest::all_columns FROM u_$p->[0])
            SELECT (SELECT count(*) FROM got) || ' ' || (SELECT count(DISTINCT queue_offset) FROM got) || ' ' ||
                   (SELECT count(*) FROM (TABLE exp EXCEPT ALL TABLE got) x) || ' ' ||
                   (SELECT count(*) FROM (TABLE got EXCEPT ALL TABLE exp) y)"),
		'15 15 0 0', "$label: every other message exactly once, column for column");
	is(sql(RmqTest::caught_up_sql($gu{ $p->[0] }, $U)), 't', "$label: stored offsets equal the broker's max offsets");
	is(sql("SELECT state || ' ' || coalesce(last_error, '-') FROM rmq_stream WHERE name = '$s'"), 'running -',
		"$label: the stream goes on");
	is(sql("SELECT string_agg(queue_offset || ' ' || tags || ' ' || policy || ' ' || (error ~ '^could not decode message: ')
                               || ' ' || (position(convert_to('this is not zlib', 'UTF8') IN body) > 0)
                               || ' ' || (length(body) > 91), ',')
            FROM rmq_dead_letter WHERE stream = '$s'"),
		'10 TagU dead_letter true true true', "$label: one dead letter, with its tags, the reason and the raw record");
	is(sql("SELECT sum(skipped) FROM rmq_batch WHERE stream = '$s'"), '1', "$label: rmq_batch counts it as skipped");
}
my ($rc, $rdd_out, $rdd_err) = $node->psql('postgres',
	"SELECT count(*) FROM rmq_create_rdd('rmq_tap_check', ARRAY[rmq_offset_range('$U', 'broker-a', 0, 0, 16)])");
like($rdd_err, qr/could not decode the message at offset 10 of queue 0 of broker "broker-a"/,
	"undecodable: rmq_create_rdd fails clearly, naming the message: $rdd_err");
($rc, $rdd_out, $rdd_err) = $node->psql('postgres',
	"SELECT count(*) || ' ' || bool_and(queue_offset <> 10) FROM rmq_create_rdd('rmq_tap_check', "
	  . "ARRAY[rmq_offset_range('$U', 'broker-a', 0, 0, 16)], '{\"on_error\": \"skip\"}')");
is($rdd_out, '15 true', 'undecodable: rmq_create_rdd with on_error skip returns the other 15');
like($rdd_err, qr/WARNING:  skipping undecodable message at offset 10 of queue 0 of broker "broker-a"/,
	'undecodable: ... and warns, naming the message');
is(sql("SELECT count(*) FROM rmq_create_rdd('rmq_tap_check', ARRAY[rmq_offset_range('$U', 'broker-a', 0, 11, 16)])"),
	'5', 'undecodable: rmq_create_rdd past it reads the rest');
sql("SELECT rmq_drop_stream('su_$_')") for qw(fail dl);

# --- the target dropped, a column type changed ---------------------------------
my $D = RmqTest::uniq('t103_drop');
my $gD = RmqTest::uniq('g103_drop');
my $ddl = "CREATE TABLE d_t (broker text, queue_id integer, queue_offset bigint, body bytea)";
sql("SELECT rmq_create_topic('$D', 4)");
sql($ddl);
sql("SELECT rmq_create_stream('s_drop', '$D', '$gD', 'd_t', options => '{\"batch_interval\": 200}')");
RmqTest::produce($node, $D, per_queue => 25);
RmqTest::wait_caught_up($node, 's_drop', $gD, $D);
RmqTest::check_exact($node, table => 'd_t', topic => $D, group => $gD, expect => 100, label => 'before the drop');

sql("DROP TABLE d_t");
RmqTest::produce($node, $D, per_queue => 10);
RmqTest::wait_state($node, 's_drop', 'failed', 'target dropped: the stream fails');
$err = sql("SELECT last_error FROM rmq_stream WHERE name = 's_drop'");
like($err, qr/d_t/, "target dropped: last_error names the table: $err");
RmqTest::wait_workers($node, 's_drop', 0, 'target dropped: no worker');
is(sql("SELECT string_agg(next_offset::text, ' ' ORDER BY queue_id) FROM rmq_offset WHERE consumer_group = '$gD'"),
	'25 25 25 25', 'target dropped: stored offsets unchanged');
sql($ddl);
sql("SELECT rmq_resume_stream('s_drop')");
RmqTest::produce($node, $D, per_queue => 5);
RmqTest::wait_caught_up($node, 's_drop', $gD, $D);
RmqTest::check_exact($node, table => 'd_t', topic => $D, group => $gD, expect => 60,
	from => { map { $_ => 25 } 0 .. 3 }, label => 'recreated and resumed');

sql("ALTER TABLE d_t ALTER COLUMN queue_offset TYPE numeric");
RmqTest::produce($node, $D, per_queue => 5);
RmqTest::wait_state($node, 's_drop', 'failed', 'column type changed: the stream fails');
$err = sql("SELECT last_error FROM rmq_stream WHERE name = 's_drop'");
like($err, qr/queue_offset/, "column type changed: last_error names the column: $err");
is(sql("SELECT string_agg(next_offset::text, ' ' ORDER BY queue_id) FROM rmq_offset WHERE consumer_group = '$gD'"),
	'40 40 40 40', 'column type changed: stored offsets unchanged');
sql("ALTER TABLE d_t ALTER COLUMN queue_offset TYPE bigint");
sql("SELECT rmq_resume_stream('s_drop')");
RmqTest::wait_caught_up($node, 's_drop', $gD, $D);
RmqTest::check_exact($node, table => 'd_t', topic => $D, group => $gD, expect => 80,
	from => { map { $_ => 25 } 0 .. 3 }, label => 'type fixed and resumed');
sql("SELECT rmq_drop_stream('s_drop')");

# --- permission revoked from the stream's owner --------------------------------
my $R = RmqTest::uniq('t103_perm');
my $gR = RmqTest::uniq('g103_perm');
sql("SELECT rmq_create_topic('$R', 4)");
sql("CREATE ROLE rmq_tap_user LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE");
sql("CREATE TABLE perm_t (broker text, queue_id integer, queue_offset bigint, body bytea)");
sql("GRANT INSERT ON perm_t TO rmq_tap_user");
RmqTest::produce($node, $R, per_queue => 10);
my ($ret, $out, $stderr) = $node->psql('postgres',
	"SELECT rmq_create_stream('s_perm', '$R', '$gR', 'perm_t', options => '{\"batch_interval\": 200}')",
	extra_params => [ '-U', 'rmq_tap_user' ]);
is($ret, 0, 'a role with INSERT on the target creates a stream') or diag($stderr);
if ($ret != 0)
{
	# Go on with a stream the role owns nonetheless, to test the worker.
	sql("SELECT rmq_create_stream('s_perm', '$R', '$gR', 'perm_t', options => '{\"batch_interval\": 200}');
         UPDATE rmq_stream SET owner = 'rmq_tap_user' WHERE name = 's_perm'");
}
is(sql("SELECT owner FROM rmq_stream WHERE name = 's_perm'"), 'rmq_tap_user', 'the stream\'s owner is the role');
is(sql("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = 'rmq_tap_user'"),
	'0', 'the role owns no relation');
SKIP:
{
	# Without a working stream owned by the role the rest cannot be tested
	# (and would only wait for timeouts).
	skip 'the stream owned by the role does not ingest', 10
	  unless RmqTest::wait_caught_up($node, 's_perm', $gR, $R);
	RmqTest::check_exact($node, table => 'perm_t', topic => $R, group => $gR, expect => 40, label => 'ingesting as the owner');
	ok($node->poll_query_until('postgres', "SELECT usename FROM pg_stat_activity WHERE application_name = 'rocketmq_stream s_perm/0'",
			'rmq_tap_user'),
		'the worker runs as the stream\'s owner');

	sql("REVOKE INSERT ON perm_t FROM rmq_tap_user");
	RmqTest::produce($node, $R, per_queue => 10);
	RmqTest::wait_state($node, 's_perm', 'failed', 'INSERT revoked: the stream fails');
	$err = sql("SELECT last_error FROM rmq_stream WHERE name = 's_perm'");
	like($err, qr/permission denied/, "INSERT revoked: last_error says so: $err");
	is(sql("SELECT string_agg(next_offset::text, ' ' ORDER BY queue_id) FROM rmq_offset WHERE consumer_group = '$gR'"),
		'10 10 10 10', 'INSERT revoked: stored offsets unchanged');
	is(sql("SELECT count(*) FROM perm_t"), '40', 'INSERT revoked: nothing more inserted');
	sql("GRANT INSERT ON perm_t TO rmq_tap_user");
	sql("SELECT rmq_resume_stream('s_perm')");
	RmqTest::produce($node, $R, per_queue => 5);
	RmqTest::wait_caught_up($node, 's_perm', $gR, $R);
	RmqTest::check_exact($node, table => 'perm_t', topic => $R, group => $gR, expect => 100, label => 'granted again and resumed');
	sql("SELECT rmq_drop_stream('s_perm')");
}

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC|TRAP:/, 'no backend crashed');
$node->stop;
done_testing();
