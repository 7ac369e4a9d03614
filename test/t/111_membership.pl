# Consumer-group membership ("membership": "group"): streams on three
# PostgreSQL servers and an official Java push consumer (orderly, so it takes
# the broker's queue locks too) share one group over a topic of 8 queues
# while a producer runs.  At every settled point each queue is held by
# exactly one member, and each member holds what AllocateMessageQueueAveragely
# gives it (the Java consumer computes its own share with that class);
# mqadmin consumerConnection lists every member.  Members join and leave
# (a server added, a stream paused and resumed, the Java consumer stopped),
# one server is killed -9 with all its processes and restarted within the
# broker's lock lifetime, the broker restarts, and one server is killed and
# never comes back.  In the end every produced message was consumed exactly
# once over all members' tables, except for repeats after the death for
# good, which are counted and reported.  Beside that: a stream with membership and one without behave
# the same on one server; options that contradict membership are refused.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use Sys::Hostname;
use RmqTest;

my $ns = $ENV{RMQ_NAMESRV};
my $T = RmqTest::uniq('grp');
my $G = RmqTest::uniq('grp_g');
my $tmp = PostgreSQL::Test::Utils::tempdir;

my @nodes = map { RmqTest::stream_node("m$_") } (1 .. 3);
$nodes[0]->safe_psql('postgres', "SELECT rmq_create_topic('$T', 8)");
$_->safe_psql('postgres', 'CREATE TABLE t_grp (topic text, broker text, queue_id int, queue_offset bigint, body bytea)')
  for @nodes;
my $opts = q{'{"membership": "group", "batch_rows": 200}'};

# ---------------------------------------------------------------------------
# What contradicts membership is refused
# ---------------------------------------------------------------------------
{
	my $n = $nodes[0];
	my ($ret, $out, $err) = $n->psql('postgres',
		qq{SELECT rmq_create_stream('bad', '$T', '$G', 't_grp', queue_map => '{"broker-a/0": 0}', options => $opts)});
	like($err, qr/cannot have a queue_map/, 'membership with a queue_map is refused');
	($ret, $out, $err) = $n->psql('postgres',
		qq{SELECT rmq_create_stream('bad', '$T', '$G', 't_grp', force_specific => true, options => $opts)});
	like($err, qr/cannot use force_specific/, 'membership with force_specific is refused');
	($ret, $out, $err) = $n->psql('postgres',
		qq{SELECT rmq_create_stream('bad', '$T', '$G', 't_grp', options => '{"membership": "group", "auto_commit": false}')});
	like($err, qr/needs auto_commit/, 'membership without auto_commit is refused');
	($ret, $out, $err) = $n->psql('postgres',
		qq{SELECT rmq_create_stream('bad', '$T', '$G', 't_grp', options => '{"membership": "yes"}')});
	like($err, qr/must be none or group/, 'an unknown membership value is refused');
	$n->safe_psql('postgres', qq{SELECT rmq_create_stream('bad', '$T', '$G', 't_grp', queue_map => '{"broker-a/0": 0}')});
	($ret, $out, $err) = $n->psql('postgres', qq{SELECT rmq_alter_stream('bad', '{"membership": "group"}')});
	like($err, qr/cannot have a queue_map/, 'altering a stream with a queue_map into a member is refused');
	$n->safe_psql('postgres', "SELECT rmq_drop_stream('bad')");
}

# ---------------------------------------------------------------------------
# Members and their shares
# ---------------------------------------------------------------------------
my $host = hostname();
$host =~ s/([^A-Za-z0-9._-])/sprintf('%%%02X', ord($1))/ge;
sub pg_id
{
	my ($node) = @_;
	my $sysid = $node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
	return "$host\@pg$sysid:postgres:s:0";
}

# Every queue of the topic and of the group's retry topic, sorted as Java
# sorts MessageQueue.
sub all_queues
{
	my @q;
	for my $topic ($T, "%RETRY%$G")
	{
		# the retry topic has a route once a member's heartbeat made it
		my $rows = RmqTest::poll_value($nodes[0],
			"SELECT string_agg(broker || ' ' || queue_id, E'\\n' ORDER BY broker, queue_id) FROM rmq_queues('$topic')",
			"the queues of $topic");
		push @q, map { "$topic $_" } split /\n/, $rows;
	}
	return @q;
}

# AllocateMessageQueueAveragely per topic (the unit test holds our C
# version to the Java class; this is the same arithmetic for the test).
sub expected_shares
{
	my (@ids) = sort @_;
	my %share = map { $_ => [] } @ids;
	my %by_topic;
	for my $q (all_queues())
	{
		my ($topic) = split / /, $q;
		push @{ $by_topic{$topic} }, $q;
	}
	for my $topic (keys %by_topic)
	{
		my @mq = @{ $by_topic{$topic} };
		my ($n, $c) = (scalar @mq, scalar @ids);
		for my $index (0 .. $#ids)
		{
			my $mod = $n % $c;
			my $avg = $n <= $c ? 1 : ($mod > 0 && $index < $mod ? int($n / $c) + 1 : int($n / $c));
			my $start = ($mod > 0 && $index < $mod) ? $index * $avg : $index * $avg + $mod;
			my $range = $avg < $n - $start ? $avg : $n - $start;
			push @{ $share{ $ids[$index] } }, @mq[ $start .. $start + $range - 1 ] if $range > 0;
		}
	}
	return { map { $_ => join(',', sort @{ $share{$_} }) } @ids };
}

my ($java, $java_id, $java_stop) = (undef, undef, "$tmp/java_stop");
my $java_out = "$tmp/java_out";

# What each member holds now: {id => "topic broker qid,..."}.
sub held
{
	my (%members) = @_;
	my %h;
	for my $id (keys %members)
	{
		my $m = $members{$id};
		my @q;
		if ($m eq 'java')
		{
			if (open(my $fh, '<', "$java_out.alloc"))
			{
				@q = map { chomp; join(' ', split /\t/) } <$fh>;
				close $fh;
			}
		}
		else
		{
			my ($ret, $out) = $m->psql('postgres',
				"SELECT topic || ' ' || broker || ' ' || queue_id FROM rmq_stream_status WHERE stream = 's' AND member = '$id'");
			@q = split /\n/, $out if $ret == 0;
		}
		$h{$id} = join(',', sort @q);
	}
	return \%h;
}

# Wait until the members hold exactly their shares; then check that every
# queue is held by exactly one of them.
sub settled
{
	my ($label, %members) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $want = expected_shares(keys %members);
	my $got;
	my $deadline = time + 120;
	while (time < $deadline)
	{
		$got = held(%members);
		last if join(';', map { "$_=$got->{$_}" } sort keys %$got) eq join(';', map { "$_=$want->{$_}" } sort keys %$want);
		usleep(200_000);
	}
	my $ok = is_deeply($got, $want, "$label: each member holds its AllocateMessageQueueAveragely share");
	my %count;
	$count{$_}++ for map { split /,/ } grep { $_ ne '' } values %$got;
	my @all = all_queues();
	is(join(',', map { $count{$_} // 0 } @all), join(',', map { 1 } @all),
		"$label: every queue held by exactly one member");
	return $ok;
}

sub consumer_connection
{
	my ($stdout, $stderr) = ('', '');
	IPC::Run::run([ 'bash', "$ENV{RMQ_TEST_DIR}/broker/broker.sh", 'admin', 'consumerConnection', '-g', $G ],
		'>', \$stdout, '2>', \$stderr);
	return $stdout;
}

my $stop = "$tmp/stop";
# Output to files: a pipe nobody pumps fills with the client's warnings
# while the broker is away, and the producer blocks writing them.
my $producer = IPC::Run::start([ "$ENV{RMQ_TEST_DIR}/java/run.sh", 'SteadyProduce', $ns, $T, 150, $stop ],
	'>', "$tmp/producer.out", '2>', "$tmp/producer.err");
END { if ($stop) { open(my $fh, '>', $stop); } if ($java_stop) { open(my $fh, '>', $java_stop); } }

my ($n1, $n2, $n3) = @nodes;
my ($id1, $id2, $id3) = map { pg_id($_) } @nodes;
$_->safe_psql('postgres', "SELECT rmq_create_stream('s', '$T', '$G', 't_grp', options => $opts)") for ($n1, $n2);

my ($jout, $jerr) = ('', '');
$java = IPC::Run::start([ "$ENV{RMQ_TEST_DIR}/java/run.sh", 'GroupMember', $ns, $T, $G, $java_out, $java_stop ],
	'>', "$tmp/java.stdout", '2>', "$tmp/java.stderr");
my $deadline = time + 60;
while ($jout !~ /\n/ && time < $deadline)
{
	$jout = -e "$tmp/java.stdout" ? slurp_file("$tmp/java.stdout") : '';
	usleep(100_000);
}
$jerr = slurp_file("$tmp/java.stderr") if $jout !~ /\n/;
($java_id) = $jout =~ /^(\S+)/;
ok(defined $java_id, "the Java consumer started: " . ($java_id // $jerr));

settled('two servers and a Java consumer', $id1 => $n1, $id2 => $n2, $java_id => 'java');
{
	my $cc = consumer_connection();
	ok((grep { index($cc, $_) >= 0 } ($id1, $id2, $java_id)) == 3,
		'mqadmin consumerConnection lists both servers and the Java consumer') or diag($cc);
	like($cc, qr/CONSUME_PASSIVELY/, 'mqadmin: the group consumes passively, as its Java members say');
	# consumerProgress -s asks every member for its running info (GET_CONSUMER_RUNNING_INFO)
	# and prints, per queue, the part of its client id before '@'.
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'bash', "$ENV{RMQ_TEST_DIR}/broker/broker.sh", 'admin', 'consumerProgress', '-g', $G, '-s', 'true' ],
		'>', \$out, '2>', \$err);
	my $ours = grep { /^\Q$T\E\s/ && /\s\Q$host\E\s/ } split /\n/, $out;
	my $want = scalar(grep { /^\Q$T\E / } split /,/, join(',', values %{ held($id1 => $n1, $id2 => $n2) }));
	is($ours, $want, "mqadmin consumerProgress -s: the queues the servers hold are shown as theirs ($want)")
	  or diag($out . $err);
}
ok($n1->poll_query_until('postgres', 'SELECT count(*) > 0 FROM t_grp'), 'server 1 ingests its share');

$n3->safe_psql('postgres', "SELECT rmq_create_stream('s', '$T', '$G', 't_grp', options => $opts)");
settled('a third server joins', $id1 => $n1, $id2 => $n2, $id3 => $n3, $java_id => 'java');

$n2->safe_psql('postgres', "SELECT rmq_pause_stream('s')");
settled('server 2 pauses its stream', $id1 => $n1, $id3 => $n3, $java_id => 'java');

open(my $fh, '>', $java_stop) or die;
close $fh;
$java->finish;
is($?, 0, 'the Java consumer shut down cleanly');
settled('the Java consumer leaves', $id1 => $n1, $id3 => $n3);

$n2->safe_psql('postgres', "SELECT rmq_resume_stream('s')");
settled('server 2 resumes', $id1 => $n1, $id2 => $n2, $id3 => $n3);

# kill -9 a whole server (postmaster and every child at once: nothing gets
# to leave the group or unlock) mid-stream, back within the lock lifetime.
sub kill_all
{
	my ($node) = @_;
	my $pid = $node->{_pid};
	# Frozen first: a child that saw the postmaster die before its own
	# SIGKILL arrived would leave the group cleanly (unlocking its queues).
	kill 'STOP', $pid, RmqTest::children_of($pid);
	my @kids = RmqTest::children_of($pid);
	kill 'KILL', $pid, @kids;
	usleep(100_000) while kill(0, $pid);
	usleep(100_000) while grep { kill(0, $_) } @kids;
	$node->{_pid} = undef;
	return;
}
kill_all($n1);
$n1->start;
settled('server 1 killed -9 and back within the lock lifetime', $id1 => $n1, $id2 => $n2, $id3 => $n3);
ok($n1->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM rmq_batch WHERE stream = 's' AND committed_at > now() - interval '5 seconds' AND rows > 0"),
	'server 1 ingests again');

# The broker killed -9 and revived under the members: its lock table,
# consumer list and last offsets are gone; every member notices its
# connections closed, heartbeats again and renews its locks (a batch that
# read from the broker before it went is rolled back unless its lock is
# renewed first).  While the broker is young (40 s) no member takes a queue
# another may still read: the first to rejoin sees a partial member list.
if (RmqTest::broker_controllable())
{
	my @log_at = map { -s $_->logfile } @nodes;
	RmqTest::broker('kill', 'broker');
	sleep 2;
	RmqTest::broker('revive');
	# At once, while the broker is young, a member leaves: the others wait it out.
	$n3->safe_psql('postgres', "SELECT rmq_pause_stream('s')");
	settled('the broker restarted and server 3 paused', $id1 => $n1, $id2 => $n2);
	my $said = join('', map { substr(slurp_file($nodes[$_]->logfile), $log_at[$_]) } 0 .. 1);
	like($said, qr/broker "broker-a" started \d+ s ago; queues of group "\Q$G\E" that other members may still read are taken over in \d+ s/,
		'the others held its queues back until the broker was 40 s old (its uptime, from the real broker)');
	$n3->safe_psql('postgres', "SELECT rmq_resume_stream('s')");
	settled('server 3 resumes', $id1 => $n1, $id2 => $n2, $id3 => $n3);
	for my $n ($n1, $n2, $n3)
	{
		ok($n->poll_query_until('postgres',
			"SELECT count(*) > 0 FROM rmq_batch WHERE stream = 's' AND committed_at > now() - interval '5 seconds' AND rows > 0"),
			$n->name . ' ingests after the broker restart');
	}
}
else
{
	note('the broker is not this test\'s to restart (run it from test/run-all.sh): no broker restart');
}

# A member that never comes back: its locks lapse (60 s) before the others
# take its queues.
my $max_batch3 = $n3->safe_psql('postgres', "SELECT coalesce(max(rows), 0) FROM rmq_batch WHERE stream = 's'");
kill_all($n3);
settled('server 3 killed -9 for good', $id1 => $n1, $id2 => $n2);

# Drain: stop the producer, wait until the holders store every max offset.
open($fh, '>', $stop) or die;
close $fh;
$producer->finish;
my $max = RmqTest::max_offsets($n1, $T);
my $held_sql = "SELECT coalesce(string_agg(queue_id || ':' || next_offset, ',' ORDER BY queue_id), '') "
  . "FROM rmq_stream_status WHERE stream = 's' AND topic = '$T'";
my $want = join(',', map { "$_:$max->{$_}" } sort { $a <=> $b } keys %$max);
my $caught = 0;
$deadline = time + 120;
while (time < $deadline)
{
	my %got = map { split /:/ } grep { $_ ne '' } map { split /,/, $_->safe_psql('postgres', $held_sql) } ($n1, $n2);
	if (join(',', map { "$_:" . ($got{$_} // '') } sort { $a <=> $b } keys %$max) eq $want) { $caught = 1; last; }
	usleep(200_000);
}
ok($caught, 'the members drained the topic');

# Count over every member's table: server 3's from its data directory, with
# the extension's library no longer loaded (it must not rejoin).
$n3->adjust_conf('postgresql.conf', 'shared_preload_libraries', "''");
$n3->start;
my %seen;
my %from;
for my $i (0 .. 2)
{
	for (split /\n/, $nodes[$i]->safe_psql('postgres', "SELECT queue_id || '\@' || queue_offset FROM t_grp WHERE topic = '$T'"))
	{
		$seen{$_}++;
		$from{$_} .= $i + 1;
	}
}
if (open(my $jf, '<', $java_out))
{
	while (<$jf>)
	{
		chomp;
		my ($topic, $broker, $q, $o) = split /\t/;
		next unless $topic eq $T;
		$seen{"$q\@$o"}++;
		$from{"$q\@$o"} .= 'j';
	}
	close $jf;
}
my ($expected, $missing, $repeats_of_3, $other_repeats) = (0, 0, 0, 0);
my @of_3;
for my $q (keys %$max)
{
	for my $o (0 .. $max->{$q} - 1)
	{
		$expected++;
		my $k = "$q\@$o";
		$missing++ unless $seen{$k};
		next unless ($seen{$k} // 0) > 1;
		if ($from{$k} =~ /3/ && ($seen{$k} == 2))
		{
			$repeats_of_3++;
			push @of_3, "$k by " . join(' and ', map { $_ eq 'j' ? 'Java' : "server $_" } split //, $from{$k});
		}
		else { $other_repeats++; diag("repeated: queue $k read by " . join(' and ', map { $_ eq 'j' ? 'Java' : "server $_" } split //, $from{$k})) if $other_repeats <= 10 }
	}
}
note("membership: $expected messages; $missing missing; $repeats_of_3 repeated after server 3 died for good "
	  . "(its largest batch: $max_batch3 rows); $other_repeats other repeats");
ok($expected > 1000, "the producer sent a real load ($expected messages)");
is($missing, 0, 'no message lost over all members');
is($other_repeats, 0, 'no message consumed twice, across joins, leaves, a pause, the Java consumer and a kill -9 within the lock lifetime');
cmp_ok($repeats_of_3, '<=', $max_batch3 > 0 ? $max_batch3 : 200,
	"a member dead for good: at most its last batch is read again ($repeats_of_3 repeats)")
  or diag('read again: ' . join(', ', (sort @of_3)[ 0 .. ($#of_3 < 9 ? $#of_3 : 9) ]));

# ---------------------------------------------------------------------------
# With and without membership, side by side on one server
# ---------------------------------------------------------------------------
{
	my $T2 = RmqTest::uniq('grp_side');
	$n1->safe_psql('postgres', "SELECT rmq_create_topic('$T2', 4)");
	$n1->safe_psql('postgres', RmqTest::message_table($_)) for ('t_member', 't_plain');
	my $sent = RmqTest::produce($n1, $T2, per_queue => 100, queues => [ 0 .. 3 ]);
	my ($ga, $gb) = (RmqTest::uniq('side_member'), RmqTest::uniq('side_plain'));
	$n1->safe_psql('postgres', qq{SELECT rmq_create_stream('side_member', '$T2', '$ga', 't_member', options => '{"membership": "group"}')});
	$n1->safe_psql('postgres', qq{SELECT rmq_create_stream('side_plain', '$T2', '$gb', 't_plain')});
	RmqTest::produce($n1, $T2, per_queue => 50, queues => [ 0 .. 3 ]);
	RmqTest::wait_caught_up($n1, 'side_member', $ga, $T2);
	RmqTest::wait_caught_up($n1, 'side_plain', $gb, $T2);
	RmqTest::check_exact($n1, table => 't_member', topic => $T2, group => $ga, exp_cols => $RmqTest::all_columns);
	RmqTest::check_exact($n1, table => 't_plain', topic => $T2, group => $gb, exp_cols => $RmqTest::all_columns);
	is($n1->safe_psql('postgres', "SELECT count(*) FROM ((TABLE t_member EXCEPT ALL TABLE t_plain) UNION ALL (TABLE t_plain EXCEPT ALL TABLE t_member)) d"),
		'0', 'the member and the plain stream wrote the same rows');
}

$_->stop for @nodes;
done_testing();
