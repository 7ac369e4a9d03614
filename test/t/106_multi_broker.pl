# A cluster of two master brokers (broker-a, broker-b) behind one name
# server, as production clusters are: a topic's queues live on both.
#  - rmq_create_topic creates the topic on both, rmq_queues lists both;
#  - rmq_create_rdd reads ranges of both brokers in one call, exactly;
#  - a stream whose one worker owns queues on both brokers, and one with
#    parallelism 2, ingest everything exactly once, also while broker-b
#    is stopped and started again mid-stream;
#  - rmq_committed_offsets shows both brokers' queues;
#  - broker-b hangs (SIGSTOP: its sockets stay open, so the name server
#    keeps listing it for up to 2 minutes): once its pulls time out, its
#    queues sit out and broker-a's go on without the stream's run failing;
#    when it wakes up (SIGCONT) its queues catch up, all exactly once;
#  - the name server goes away: the workers' periodic route check keeps
#    the queues they have (WARNING), and messages sent straight to both
#    brokers are still ingested, once each.
# The worker polls each broker's connection and sleeps on all of them at
# once; that one broker's long poll does not delay the other is a matter
# of timing and is not asserted here (see bench/ and the README).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $dir = $ENV{RMQ_TEST_DIR} or die "RMQ_TEST_DIR is not set";
my $ns_port = 21876;
my %benv = (
	a => { RMQ_HOME => PostgreSQL::Test::Utils::tempdir('broker_a'), RMQ_NAMESRV_PORT => $ns_port,
		RMQ_BROKER_PORT => 22911, RMQ_BROKER_NAME => 'broker-a' },
	b => { RMQ_HOME => PostgreSQL::Test::Utils::tempdir('broker_b'), RMQ_NAMESRV_PORT => $ns_port,
		RMQ_BROKER_PORT => 22921, RMQ_BROKER_NAME => 'broker-b', RMQ_JOIN_NAMESRV => "127.0.0.1:$ns_port" });
my %started;

sub broker
{
	my ($which, $cmd) = @_;
	local @ENV{ keys %{ $benv{$which} } } = values %{ $benv{$which} };
	my ($stdout, $stderr);
	IPC::Run::run([ 'bash', "$dir/broker/broker.sh", $cmd ], '>', \$stdout, '2>', \$stderr)
	  or die "broker.sh $cmd (broker $which) failed:\n$stdout$stderr";
	note("broker.sh $cmd ($which): $stderr");
	$started{$which} = 1 if $cmd eq 'start';
	return;
}
broker('a', 'start');
broker('b', 'start');
# b first: it is registered with a's name server.
my $b_stopped_pid;
END
{
	kill 'CONT', $b_stopped_pid if $b_stopped_pid;
	for my $w (qw(b a)) { eval { broker($w, 'stop') } if $started{$w} }
}

local $ENV{RMQ_NAMESRV} = "127.0.0.1:$ns_port";
my $node = RmqTest::stream_node('multi_broker');
sub sql { return $node->safe_psql('postgres', $_[0]); }

my $T = RmqTest::uniq('t106_multi');
is(sql("SELECT rmq_create_topic('$T', 4)"), 2, 'the topic is created on both masters');
is(sql("SELECT string_agg(broker || '/' || queue_id, ' ' ORDER BY broker, queue_id) FROM rmq_queues('$T')"),
	'broker-a/0 broker-a/1 broker-a/2 broker-a/3 broker-b/0 broker-b/1 broker-b/2 broker-b/3',
	'rmq_queues lists the queues of both brokers');

# N messages to every queue of the brokers (default both); bodies unique per topic.
my $seq = 0;
sub produce
{
	my ($n, @brokers) = @_;
	@brokers = qw(broker-a broker-b) unless @brokers;
	my $sql = '';
	for my $b (@brokers)
	{
		for my $q (0 .. 3)
		{
			my ($from, $to) = ($seq + 1, $seq + $n);
			$seq = $to;
			$sql .= "SELECT cardinality(rmq_send_batch('$T', ARRAY(SELECT convert_to('$b/$q/' || s, 'UTF8') "
			  . "FROM generate_series($from, $to) s ORDER BY s), NULL, NULL, NULL, "
			  . "'{\"queue_id\": $q, \"broker\": \"$b\"}'));\n";
		}
	}
	my $got = 0;
	$got += $_ for split /\n/, sql($sql);
	is($got, 4 * @brokers * $n, "sent $n messages to each queue of @brokers");
	return;
}

sql(RmqTest::message_table($_)) for qw(m_one m_two);
my %g = (one => RmqTest::uniq('g106_one'), two => RmqTest::uniq('g106_two'));
sql("SELECT rmq_create_stream('s_one', '$T', '$g{one}', 'm_one', options => '{\"batch_interval\": 200}')");
sql("SELECT rmq_create_stream('s_two', '$T', '$g{two}', 'm_two', parallelism => 2,
       options => '{\"batch_interval\": 200}')");
produce(25);
for my $k (qw(one two))
{
	RmqTest::wait_caught_up($node, "s_$k", $g{$k}, $T);
	RmqTest::check_exact($node, table => "m_$k", topic => $T, group => $g{$k}, expect => 200,
		label => "s_$k: both brokers");
}
is(sql("SELECT count(DISTINCT broker) FROM m_one"), 2, 's_one: one worker read both brokers');
is( sql("SELECT count(*) FROM (SELECT broker, queue_id FROM rmq_batch b, jsonb_array_elements(b.ranges) r, "
		  . "LATERAL (SELECT r->>'broker' AS broker, r->>'queue_id' AS queue_id) x "
		  . "WHERE b.stream = 's_two' AND r ? 'queue_id' AND (r->>'rows')::int > 0 "
		  . "GROUP BY 1, 2 HAVING count(DISTINCT b.worker) > 1) d"),
	0, 's_two: no queue was read by both workers');

# rmq_create_rdd over ranges of both brokers, in one call.
is( sql("SELECT count(*) || ' ' || count(DISTINCT (broker, queue_id, queue_offset)) || ' ' || count(DISTINCT broker) "
		  . "FROM rmq_create_rdd('g106_rdd', ARRAY(SELECT rmq_offset_range('$T', broker, queue_id, 5, 15) "
		  . "FROM rmq_queues('$T')))"),
	'80 80 2', 'rdd: ten messages of each of the 8 queues, from both brokers');
is( sql("SELECT count(*) FILTER (WHERE pg_next_offset = 25) || ' ' || count(DISTINCT broker) "
		  . "FROM (SELECT broker, next_offset AS pg_next_offset FROM rmq_committed_offsets('$g{one}', '$T')) c"),
	'8 2', 'rmq_committed_offsets shows the 8 queues of both brokers');

# broker-b goes away mid-stream and comes back: nothing lost, nothing twice.
produce(10);
broker('b', 'stop');
produce(15, 'broker-a');    # broker-b is down
broker('b', 'start');
produce(5);
for my $k (qw(one two))
{
	RmqTest::wait_caught_up($node, "s_$k", $g{$k}, $T);
	RmqTest::check_exact($node, table => "m_$k", topic => $T, group => $g{$k}, expect => 8 * 40 + 4 * 15,
		label => "s_$k: broker-b stopped and started mid-stream");
	is(sql("SELECT state FROM rmq_stream WHERE name = 's_$k'"), 'running', "s_$k: still running");
}

# broker-b hangs.  Short timeouts so its pulls time out in seconds.
for my $k (qw(one two))
{
	sql("SELECT rmq_alter_stream('s_$k', '{\"pull_timeout\": 1000, \"request_timeout\": 1000}')");
}
produce(5);
RmqTest::wait_caught_up($node, "s_$_", $g{$_}, $T) for qw(one two);
my $log_pos = -s $node->logfile;
$b_stopped_pid = slurp_file("$benv{b}{RMQ_HOME}/broker.pid");
chomp $b_stopped_pid;
ok(kill('STOP', $b_stopped_pid), 'broker-b hangs (SIGSTOP)');
for my $k (qw(one two))
{
	ok($node->wait_for_log(qr/stream "s_$k": broker at 127\.0\.0\.1:22921 is unreachable/, $log_pos),
		"s_$k: broker-b's pulls time out and its queues sit out");
}
my %a_rows = map { $_ => sql("SELECT count(*) FROM m_$_ WHERE broker = 'broker-a'") } qw(one two);
produce(10, 'broker-a');
for my $k (qw(one two))
{
	ok($node->poll_query_until('postgres', "SELECT count(*) = $a_rows{$k} + 40 FROM m_$k WHERE broker = 'broker-a'"),
		"s_$k: broker-a's new messages are ingested while broker-b hangs");
	like(sql("SELECT state || ': ' || last_error FROM rmq_stream WHERE name = 's_$k'"),
		qr/^running: broker at 127\.0\.0\.1:22921 is unreachable/, "s_$k: running, last_error names the hung broker");
}
ok(kill('CONT', $b_stopped_pid), 'broker-b wakes up (SIGCONT)');
$b_stopped_pid = undef;
produce(5);
for my $k (qw(one two))
{
	RmqTest::wait_caught_up($node, "s_$k", $g{$k}, $T);
	RmqTest::check_exact($node, table => "m_$k", topic => $T, group => $g{$k}, expect => 8 * 50 + 4 * 25,
		label => "s_$k: broker-b hung and woke up mid-stream");
}
my $tail = substr(slurp_file($node->logfile), $log_pos);
unlike($tail, qr/ERROR:[^\n]*22921/, 'no stream run failed because of broker-b: only its queues waited');

# The name server goes away (last: nothing after this needs a route).
$log_pos = -s $node->logfile;
my $ns_pid = slurp_file("$benv{a}{RMQ_HOME}/namesrv.pid");
chomp $ns_pid;
ok(kill('TERM', $ns_pid), 'the name server is stopped');
my $gone = 0;
for (1 .. 300) { if (!kill(0, $ns_pid)) { $gone = 1; last } usleep(100_000) }
ok($gone, 'the name server has exited');
for my $k (qw(one two))
{
	ok($node->wait_for_log(qr/stream "s_$k" could not refresh the route of topic "\Q$T\E"; it keeps its queues/, $log_pos),
		"s_$k: the route check warns and keeps its queues");
}
my %before = map { $_ => sql("SELECT count(*) FROM m_$_") } qw(one two);
# Sent straight to the brokers (no route needed): SEND_MESSAGE, sysFlag 0.
my $sent = 0;
for my $to ([ 22911, 0 ], [ 22921, 1 ])
{
	for my $i (1 .. 3)
	{
		my ($o, $e);
		IPC::Run::run([ 'python3', "$dir/broker/rmq_probe.py", 'send-raw', "127.0.0.1:$to->[0]", $T, $to->[1], '0',
				"no-namesrv-$to->[0]-$i" ], '>', \$o, '2>', \$e)
		  or die "rmq_probe send-raw failed: $e";
		$sent++;
	}
}
for my $k (qw(one two))
{
	ok($node->poll_query_until('postgres', "SELECT count(*) = $before{$k} + $sent FROM m_$k"),
		"s_$k: messages sent while the name server is away are ingested");
	is(sql("SELECT count(*) || ' ' || count(DISTINCT (broker, queue_id, queue_offset)) || ' ' || "
		  . "count(*) FILTER (WHERE convert_from(body, 'UTF8') LIKE 'no-namesrv-%') FROM m_$k"),
		($before{$k} + $sent) . ' ' . ($before{$k} + $sent) . " $sent", "s_$k: each exactly once");
	is(sql("SELECT state FROM rmq_stream WHERE name = 's_$k'"), 'running', "s_$k: still running");
}

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC|TRAP:/, 'no backend crashed');
$node->stop;
done_testing();
