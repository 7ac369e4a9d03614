# Data loss: messages a stream or a range still needs are deleted by the
# broker (retention) before they are read.
#
# A broker of its own (the shared one keeps every message): 1 MiB
# commit-log files, fileReservedTime=0 and a deleteWhen hour that never
# comes, so nothing is deleted until the test sends DELETE_EXPIRED_COMMITLOG
# (broker.sh delete-expired); then every file but the one being written
# goes, and the queue's min offset rises past offsets nobody has read.
#  - rmq_create_rdd over the lost range: an error naming it, or with
#    fail_on_data_loss false a WARNING and exactly the surviving messages;
#  - a stream with fail_on_data_loss (the default): failed, last_error names
#    the lost range, nothing written, offsets unchanged; after
#    rmq_alter_stream(fail_on_data_loss false) and resume: the survivors
#    exactly once, the skip recorded in rmq_batch;
#  - a stream with fail_on_data_loss false: goes on by itself, the same.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $dir = $ENV{RMQ_TEST_DIR} or die "RMQ_TEST_DIR is not set";
my %benv = (
	RMQ_HOME => PostgreSQL::Test::Utils::tempdir('dl_broker'),
	RMQ_NAMESRV_PORT => 23876,
	RMQ_BROKER_PORT => 24911,
	RMQ_BROKER_CONF_EXTRA => join("\n",
		'mappedFileSizeCommitLog=1048576', 'fileReservedTime=0', 'deleteWhen=99',
		'cleanResourceInterval=500', 'destroyMapedFileIntervalForcibly=1000'));

sub dl_broker
{
	my ($cmd) = @_;
	local @ENV{ keys %benv } = values %benv;
	my ($stdout, $stderr);
	IPC::Run::run([ 'bash', "$dir/broker/broker.sh", $cmd ], '>', \$stdout, '2>', \$stderr)
	  or die "broker.sh $cmd (data-loss broker) failed:\n$stdout$stderr";
	note("broker.sh $cmd: $stderr");
	return;
}
dl_broker('start');
END { eval { dl_broker('stop') } if %benv; }

local $ENV{RMQ_NAMESRV} = "127.0.0.1:$benv{RMQ_NAMESRV_PORT}";
my $node = RmqTest::stream_node('data_loss');
sub sql { return $node->safe_psql('postgres', $_[0]); }

my $T = RmqTest::uniq('t105_loss');
my %g = map { $_ => RmqTest::uniq("g105_$_") } qw(fail skip);
sql("SELECT rmq_create_topic('$T', 1)");
sql(RmqTest::message_table("loss_$_")) for qw(fail skip);
sql("SELECT rmq_create_stream('s_fail', '$T', '$g{fail}', 'loss_fail', options => '{\"batch_interval\": 200}')");
sql("SELECT rmq_create_stream('s_skip', '$T', '$g{skip}', 'loss_skip',
       options => '{\"batch_interval\": 200, \"fail_on_data_loss\": false}')");
RmqTest::produce($node, $T, queues => [0], per_queue => 10);    # offsets 0..9
RmqTest::wait_caught_up($node, "s_$_", $g{$_}, $T) for qw(fail skip);
sql("SELECT rmq_pause_stream('s_$_')") for qw(fail skip);
RmqTest::wait_workers($node, "s_$_", 0, "s_$_: paused") for qw(fail skip);

# ~1.3 KiB per message on disk: 1300 of them fill the first 1 MiB file.
RmqTest::produce($node, $T, queues => [0], per_queue => 1300,
	body => q{convert_to(rpad(s::text, 1024, '.'), 'UTF8')});
my $max = sql("SELECT max_offset FROM rmq_queues('$T')");
is($max, 1310, 'all messages stored');
is(sql("SELECT min_offset FROM rmq_queues('$T')"), 0, 'nothing deleted before it is asked for');

dl_broker('delete-expired');
my $min = RmqTest::poll_value($node, "SELECT min_offset FROM rmq_queues('$T') WHERE min_offset > 10",
	'the queue min offset to rise past 10');
cmp_ok($min, '<', $max, "the broker deleted offsets [0, $min) and kept [$min, $max)");
my $survivors = $max - $min;
my $range = "ARRAY[rmq_offset_range('$T', 'broker-a', 0, 0, $max)]";

# --- rmq_create_rdd -------------------------------------------------------------
my ($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM rmq_create_rdd('g105_rdd', $range)");
isnt($ret, 0, 'rdd over a lost range: error');
like($err, qr/offsets \[0, $min\) of queue 0 of broker "broker-a" for topic "$T" are no longer on the broker/,
	'rdd: the error names the lost range');
($ret, $out, $err) = $node->psql('postgres',
	"SELECT count(*), count(DISTINCT queue_offset), min(queue_offset), max(queue_offset) "
	  . "FROM rmq_create_rdd('g105_rdd', $range, '{\"fail_on_data_loss\": false}')");
is($out, "$survivors|$survivors|$min|" . ($max - 1), 'rdd with fail_on_data_loss false: exactly the survivors');
like($err, qr/WARNING:  skipping lost offsets \[0, $min\) of queue 0/, 'rdd: a WARNING names the skipped range');

# --- a stream with fail_on_data_loss true ---------------------------------------------
sql("SELECT rmq_resume_stream('s_fail')");
RmqTest::wait_state($node, 's_fail', 'failed', 'fail_on_data_loss: the stream fails');
like(sql("SELECT last_error FROM rmq_stream_status WHERE stream = 's_fail'"),
	qr/offsets \[10, $min\) of queue 0 .* are no longer on the broker/, 'the status view names the lost range');
is(sql("SELECT count(*) FROM loss_fail"), 10, 'failed: nothing written past the loss');
is(sql("SELECT next_offset FROM rmq_offset WHERE consumer_group = '$g{fail}'"), 10, 'failed: stored offset unchanged');
RmqTest::wait_workers($node, 's_fail', 0, 'failed: no worker');

# The user accepts the loss: alter, resume; the stream skips exactly it.
($ret, $out, $err) = $node->psql('postgres', "SELECT rmq_alter_stream('s_fail', '{\"fail_on_data_loss\": 1}')");
like($err, qr/stream option "fail_on_data_loss" must be a boolean/, 'rmq_alter_stream validates the merged options');
($ret, $out, $err) = $node->psql('postgres', "SELECT rmq_alter_stream('no_such', '{}')");
like($err, qr/stream "no_such" does not exist/, 'rmq_alter_stream: unknown stream');
sql("SELECT rmq_alter_stream('s_fail', '{\"fail_on_data_loss\": false, \"batch_interval\": null}')");
is(sql("SELECT options::text || ' ' || state FROM rmq_stream WHERE name = 's_fail'"),
	'{"fail_on_data_loss": false} failed', 'rmq_alter_stream merges options (null removes one), keeps the state');
sql("SELECT rmq_resume_stream('s_fail')");

sql("SELECT rmq_resume_stream('s_skip')");
for my $k (qw(fail skip))
{
	RmqTest::wait_caught_up($node, "s_$k", $g{$k}, $T);
	is( sql("SELECT count(*) FILTER (WHERE queue_offset < 10) || ' ' || "
			  . "count(*) FILTER (WHERE queue_offset >= 10 AND queue_offset < $min) || ' ' || "
			  . "count(*) FILTER (WHERE queue_offset >= $min) || ' ' || count(DISTINCT queue_offset) FROM loss_$k"),
		"10 0 $survivors " . (10 + $survivors), "s_$k: the 10 read before, none lost, the $survivors survivors once");
	RmqTest::check_exact($node, table => "(SELECT * FROM loss_$k WHERE queue_offset >= $min) x", topic => $T,
		group => $g{$k}, label => "s_$k: the survivors as rmq_create_rdd reads them");
	is( sql("SELECT count(*) FROM rmq_batch b, jsonb_array_elements(b.ranges) r, jsonb_array_elements(r->'lost') l "
			  . "WHERE b.stream = 's_$k' AND l @> '{\"queue_id\": 0, \"from\": 10, \"until\": $min}'"),
		1, "s_$k: rmq_batch records the skipped range once");
	is(sql("SELECT state FROM rmq_stream WHERE name = 's_$k'"), 'running', "s_$k: running");
}
like(slurp_file($node->logfile), qr/stream "s_skip" skips lost offsets \[10, $min\) of queue 0/,
	'the server log has a WARNING for the skipped range');

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC|TRAP:/, 'no backend crashed');
$node->stop;
done_testing();
