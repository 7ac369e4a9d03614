# A name server and broker (RocketMQ 5.3.3) that enforce TLS, with a CA the
# test bed makes and client certificates optional: every SQL function and a
# stream work through foreign servers with tls = require and verify-full;
# verify-full with a wrong host name or another CA, a client certificate the
# broker does not trust, and tls = disable each fail clearly; prefer finds
# TLS; and a cancel during a handshake that never completes returns within a
# second.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib $FindBin::Bin;
use RmqTest;
use HostilePeer;

$HostilePeer::fake_log = "$PostgreSQL::Test::Utils::tmp_check/fake_peer_109.log";

my $dir = $ENV{RMQ_TEST_DIR} or die "RMQ_TEST_DIR is not set";
my %benv = (
	RMQ_HOME => PostgreSQL::Test::Utils::tempdir('tls_broker'),
	RMQ_NAMESRV_PORT => 27876,
	RMQ_BROKER_PORT => 28911,
	RMQ_TLS => 1,
	RMQ_TLS_CLIENT_AUTH => 'optional');

sub tls_broker
{
	my (@cmd) = @_;
	local @ENV{ keys %benv } = values %benv;
	my ($stdout, $stderr);
	IPC::Run::run([ 'bash', "$dir/broker/broker.sh", @cmd ], '>', \$stdout, '2>', \$stderr)
	  or die "broker.sh @cmd (TLS broker) failed:\n$stdout$stderr";
	note("broker.sh @cmd: $stderr");
	return $stdout;
}
tls_broker('start');
END { eval { tls_broker('stop') } if %benv; }
my %env = map { /^(\w+)=['"]?(.*?)['"]?$/ ? ($1 => $2) : () }
  map { s/^export\s+//r } map { split /\s+(?=\w+=)/ } grep { /^export / } split /\n/, tls_broker('env');
my $port = $benv{RMQ_NAMESRV_PORT};

my $node = RmqTest::stream_node('tls', conf => "rocketmq_stream.namesrv_addr = '127.0.0.1:$port'\n");
sub sql { return $node->safe_psql('postgres', $_[0]); }

my %servers = (
	t_require => "namesrv_addr '127.0.0.1:$port', tls 'require'",
	t_full => "namesrv_addr '127.0.0.1:$port', tls 'verify-full', tls_root_cert '$env{RMQ_TLS_CA}'",
	t_full_name => "namesrv_addr 'localhost:$port', tls 'verify-full', tls_root_cert '$env{RMQ_TLS_CA}'",
	t_ca => "namesrv_addr '127.0.0.1:$port', tls 'verify-ca', tls_root_cert '$env{RMQ_TLS_CA}'",
	t_prefer => "namesrv_addr '127.0.0.1:$port', tls 'prefer'",
	t_cert => "namesrv_addr '127.0.0.1:$port', tls 'verify-full', tls_root_cert '$env{RMQ_TLS_CA}', "
	  . "tls_cert '$env{RMQ_TLS_CLIENT_CERT}', tls_key '$env{RMQ_TLS_CLIENT_KEY}'",
	# the certificate names 127.0.0.1 and localhost, not the IPv4-mapped IPv6 address
	t_wrong_host => "namesrv_addr '[::ffff:127.0.0.1]:$port', tls 'verify-full', tls_root_cert '$env{RMQ_TLS_CA}'",
	t_wrong_ca => "namesrv_addr '127.0.0.1:$port', tls 'verify-ca', tls_root_cert '$env{RMQ_TLS_WRONG_CA}'",
	t_bad_cert => "namesrv_addr '127.0.0.1:$port', tls 'require', "
	  . "tls_cert '$env{RMQ_TLS_WRONG_CLIENT_CERT}', tls_key '$env{RMQ_TLS_WRONG_CLIENT_KEY}'",
	t_disable => "namesrv_addr '127.0.0.1:$port', tls 'disable'",
	t_stuck => "namesrv_addr '127.0.0.1:$HostilePeer::ns_port', tls 'require'");
sql("CREATE SERVER $_ FOREIGN DATA WRAPPER rocketmq_stream OPTIONS ($servers{$_})") for sort keys %servers;
# The test's own checks go through TLS too.
sql("ALTER SYSTEM SET rocketmq_stream.server = 't_full'");
sql("SELECT pg_reload_conf()");

my $T = RmqTest::uniq('t109');
my $G = RmqTest::uniq('g109');
sub on { my ($srv) = @_; return "'{\"server\": \"$srv\"}'"; }
my $all = "(SELECT array_agg(rmq_offset_range('$T', broker, queue_id, min_offset, max_offset)) FROM rmq_queues('$T', "
  . on('t_full') . "))";

# --- every function, with require and with verify-full -------------------------
is(sql("SELECT rmq_create_topic('$T', 4, options => " . on('t_full') . ")"), '1', 'rmq_create_topic over verify-full');
for my $srv (qw(t_require t_full t_full_name t_ca t_prefer t_cert))
{
	my ($rc, $out, $err) = $node->psql('postgres', "SELECT count(rmq_send('$T', convert_to('$srv ' || i, 'UTF8'), "
		  . "NULL, NULL, NULL, " . on($srv) . ")) FROM generate_series(1, 5) i");
	is($out, '5', "$srv: rmq_send") or diag($err);
	($rc, $out, $err) = $node->psql('postgres', "SELECT cardinality(rmq_send_batch('$T', ARRAY['x', 'y']::bytea[], "
		  . "NULL, NULL, NULL, " . on($srv) . "))");
	is($out, '2', "$srv: rmq_send_batch") or diag($err);
	($rc, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM rmq_queues('$T', " . on($srv) . ")");
	is($out, '4', "$srv: rmq_queues") or diag($err);
}
my $n = sql("SELECT sum(max_offset - min_offset) FROM rmq_queues('$T')");
is($n, 42, 'six servers sent 7 messages each');
for my $srv (qw(t_require t_full))
{
	is(sql("SELECT count(*) FROM rmq_create_rdd('$G', $all, " . on($srv) . ")"), $n, "$srv: rmq_create_rdd reads all");
	like(sql("SELECT rmq_offset_for_time('$T', 'broker-a', 0, now(), " . on($srv) . ")"), qr/^\d+$/,
		"$srv: rmq_offset_for_time");
}
{
	my ($rc, $out, $err) = $node->psql('postgres', "BEGIN; SELECT rmq_commit_offsets('$G', $all, " . on('t_full') . "); COMMIT;");
	is($rc, 0, 'rmq_commit_offsets over verify-full');
	unlike($err, qr/WARNING/, '... and the broker took them') or diag($err);
	is(sql("SELECT count(*) FILTER (WHERE broker_offset = next_offset) FROM rmq_committed_offsets('$G', '$T', "
		  . on('t_require') . ")"), '4', 'rmq_committed_offsets over require: the broker has them');
}

# --- a stream over verify-full ----------------------------------------------------
my $G2 = RmqTest::uniq('g109_s');
sql(RmqTest::message_table('tls_t'));
sql("SELECT rmq_create_stream('s_tls', '$T', '$G2', 'tls_t', options => '{\"server\": \"t_full\", \"batch_interval\": 200}')");
RmqTest::wait_caught_up($node, 's_tls', $G2, $T);
RmqTest::check_exact($node, table => 'tls_t', topic => $T, label => 's_tls', group => $G2);

# --- what fails, fails clearly -------------------------------------------------------
my %fails = (
	t_wrong_host => qr/TLS handshake with RocketMQ at \[::ffff:127\.0\.0\.1\]:$port failed.*\n.*DETAIL:.*(hostname mismatch|IP address mismatch)/,
	t_wrong_ca => qr/TLS handshake with RocketMQ at 127\.0\.0\.1:$port failed.*\n.*DETAIL:.*certificate verify failed/,
	t_bad_cert => qr/TLS (handshake )?with RocketMQ at 127\.0\.0\.1:$port failed.*\n.*DETAIL:.*(certificate unknown|certificate_unknown)/i,
	t_disable => qr/could not receive from RocketMQ at 127\.0\.0\.1:$port: connection closed by peer.*\n.*HINT:.*requires TLS/);
for my $srv (sort keys %fails)
{
	my ($rc, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM rmq_queues('$T', " . on($srv) . ")");
	isnt($rc, 0, "$srv: refused");
	like($err, $fails{$srv}, "$srv: a clear error") or diag($err);
}

# --- cancel during a handshake that never completes -------------------------------
HostilePeer::start_fake('blackhole', undef, 'TLS handshake that never completes');
my $s = $node->background_psql('postgres', on_error_stop => 0);
$s->query_until(qr/parking/, "\\echo parking\nSELECT count(*) FROM rmq_queues('$T', '{\"server\": \"t_stuck\", \"request_timeout\": 600000}');\n");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Extension' "
	  . "AND query LIKE '%t_stuck%' AND pid <> pg_backend_pid()"), 'a call waits in the TLS handshake');
my $t0 = time;
sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%t_stuck%' AND pid <> pg_backend_pid()");
my ($out) = $s->query("SELECT 'alive'");
my $dt = time - $t0;
like($s->{stderr}, qr/canceling statement due to user request/, 'pg_cancel_backend stops the handshake');
cmp_ok($dt, '<', 1, sprintf('... within a second (%.3f s)', $dt));
is($out, 'alive', 'the session goes on');
$s->quit;
HostilePeer::stop_fake();

done_testing();
