# A RocketMQ 5.3.3 broker with ACL 2.0 (authentication and authorization),
# reached through a foreign server and user mappings.  As a user granted
# Pub, Sub and Get on one topic and one group: every SQL function and a
# stream with auto_commit work, signed; the official Java client reads what
# we send and we read what it sends.  Each refusal (wrong secret, unknown
# user, no mapping, no Pub, no Sub, no Get, a topic not granted) is a clear
# error with its SQLSTATE, the broker's words and a hint; a stream refused
# fails with the reason and resumes once its owner's mapping is fixed.  And
# the secrets appear nowhere: not in the server log (log_statement = all),
# pg_stat_activity, the extension's tables, or any error text.
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
	RMQ_HOME => PostgreSQL::Test::Utils::tempdir('acl_broker'),
	RMQ_NAMESRV_PORT => 25876,
	RMQ_BROKER_PORT => 26911,
	RMQ_ACL => 1);

sub acl_broker
{
	my (@cmd) = @_;
	local @ENV{ keys %benv } = values %benv;
	my ($stdout, $stderr);
	IPC::Run::run([ 'bash', "$dir/broker/broker.sh", @cmd ], '>', \$stdout, '2>', \$stderr)
	  or die "broker.sh @cmd (ACL broker) failed:\n$stdout$stderr";
	note("broker.sh @cmd: $stderr");
	return $stdout;
}
acl_broker('start');
END { eval { acl_broker('stop') } if %benv; }
# "export A=1 B=2" lines, values without spaces (quoted ones unquoted).
my %env = map { /^(\w+)=['"]?(.*?)['"]?$/ ? ($1 => $2) : () }
  map { s/^export\s+//r } map { split /\s+(?=\w+=)/ } grep { /^export / } split /\n/, acl_broker('env');
my $ns = "127.0.0.1:$benv{RMQ_NAMESRV_PORT}";
my ($T, $OTHER, $G) = @env{qw(RMQ_ACL_TOPIC RMQ_ACL_OTHER_TOPIC RMQ_ACL_GROUP)};

my $node = RmqTest::stream_node('acl', conf => "log_statement = 'all'\nrocketmq_stream.namesrv_addr = '$ns'\n");
sub sql { return $node->safe_psql('postgres', $_[0]); }

# Each PostgreSQL role maps to one RocketMQ user of the test bed.
my %secret = (
	r_app => [ $env{RMQ_ACL_USER}, $env{RMQ_ACL_SECRET} ],
	r_nopub => [ $env{RMQ_ACL_NOPUB_USER}, $env{RMQ_ACL_NOPUB_SECRET} ],
	r_nosub => [ $env{RMQ_ACL_NOSUB_USER}, $env{RMQ_ACL_NOSUB_SECRET} ],
	r_noget => [ $env{RMQ_ACL_NOGET_USER}, $env{RMQ_ACL_NOGET_SECRET} ],
	r_badsecret => [ $env{RMQ_ACL_USER}, 'not-the-secret-4711' ],
	r_nobody => [ 'nobody', 'nobody-secret-0815' ]);
sql("CREATE SERVER acl FOREIGN DATA WRAPPER rocketmq_stream OPTIONS (namesrv_addr '$ns')");
# The test's own checks (as the superuser) read through the server too.
sql("CREATE USER MAPPING FOR postgres SERVER acl OPTIONS (access_key '$env{RMQ_ACL_USER}', "
	  . "secret_key '$env{RMQ_ACL_SECRET}')");
sql("ALTER SYSTEM SET rocketmq_stream.server = 'acl'");
sql("SELECT pg_reload_conf()");
for my $r (sort(keys %secret), 'r_nomap')
{
	sql("CREATE ROLE $r LOGIN");
	sql("GRANT USAGE ON FOREIGN SERVER acl TO $r");
	sql("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO $r");
	sql("CREATE USER MAPPING FOR $r SERVER acl OPTIONS (access_key '$secret{$r}[0]', secret_key '$secret{$r}[1]')")
	  if $secret{$r};
}

# As role $r with the server as the default for its calls.
sub as
{
	my ($r, $q) = @_;
	return $node->psql('postgres', "SET ROLE $r; SET rocketmq_stream.server = 'acl'; $q");
}
sub ok_as
{
	my ($r, $q, $label) = @_;
	my ($rc, $out, $err) = as($r, $q);
	is($rc, 0, $label) or diag($err);
	return $out;
}
my @errors;    # every error text seen, for the secret check
sub refused
{
	my ($r, $q, $state, $detail, $hint, $label) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE $r; SET rocketmq_stream.server = 'acl'; "
		  . "SET client_min_messages = error; \\set VERBOSITY verbose\n$q");
	push @errors, $err;
	like($err, qr/ERROR:  $state: /, "$label: SQLSTATE $state");
	like($err, $detail, "$label: the broker's words in DETAIL");
	like($err, $hint, "$label: a hint") if $hint;
	return;
}

# --- everything works for a user with Pub, Sub and Get ----------------------
my $sent = ok_as('r_app', "SELECT count(rmq_send('$T', convert_to('sql ' || i, 'UTF8'), 'TagSql', 'k' || i)) "
	  . "FROM generate_series(1, 20) i", 'rmq_send, signed');
ok_as('r_app', "SELECT cardinality(rmq_send_batch('$T', ARRAY['a', 'b', 'c']::bytea[], 'TagBatch'))",
	'rmq_send_batch, signed');
is(ok_as('r_app', "SELECT sum(max_offset - min_offset) FROM rmq_queues('$T')", 'rmq_queues (needs Get)'),
	'23', 'rmq_queues: 23 messages in the queues');
is(ok_as('r_app', "SELECT count(*) FROM rmq_create_rdd('$G', (SELECT array_agg(rmq_offset_range('$T', broker, "
	  . "queue_id, min_offset, max_offset)) FROM rmq_queues('$T')))", 'rmq_create_rdd (needs Sub on topic and group)'),
	'23', 'rmq_create_rdd reads all 23');
like(ok_as('r_app', "SELECT rmq_offset_for_time('$T', 'broker-a', 0, now() - interval '1 hour')",
	'rmq_offset_for_time (needs Get)'), qr/^\d+$/, 'rmq_offset_for_time returns an offset');
{
	my ($rc, $out, $err) = as('r_app', "BEGIN; SELECT rmq_commit_offsets('$G', (SELECT array_agg(rmq_offset_range('$T', "
		  . "broker, queue_id, min_offset, max_offset)) FROM rmq_queues('$T'))); COMMIT;");
	is($rc, 0, 'rmq_commit_offsets, signed');
	unlike($err, qr/WARNING/, 'rmq_commit_offsets: the broker took the offsets (no warning)') or diag($err);
}
is(ok_as('r_app', "SELECT count(*) FILTER (WHERE broker_offset = next_offset) FROM rmq_committed_offsets('$G', '$T')",
	'rmq_committed_offsets (needs Sub or Get)'), '4', 'the broker has the committed offsets of all 4 queues');

# --- the official Java client under the same ACL ----------------------------
{
	local @ENV{qw(RMQ_ACL_USER RMQ_ACL_SECRET)} = @{ $secret{r_app} };
	RmqTest::java('InteropProduce', $ns, $T, PostgreSQL::Test::Utils::tempdir() . '/produced.tsv');
	my $n = ok_as('r_app', "SELECT sum(max_offset - min_offset) FROM rmq_queues('$T')", 'queues after Java');
	cmp_ok($n, '>', 23, 'the Java producer sent, signed');
	my $java = RmqTest::canon(RmqTest::java('InteropDump', $ns, $T, $G, $n, 120));
	my $ours = RmqTest::canon(ok_as('r_app', "SELECT $RmqTest::row_json FROM rmq_create_rdd('$G', "
		  . "(SELECT array_agg(rmq_offset_range('$T', broker, queue_id, min_offset, max_offset)) FROM rmq_queues('$T')))",
		'rmq_create_rdd after Java'));
	is(scalar(@$ours), $n, "we read all $n messages, ours and Java's");
	is_deeply($ours, $java, 'the Java consumer reads exactly what we read: our messages and its own, column for column');
}

# --- a stream, as its owner, with auto_commit ----------------------------------
# The group's offsets on the broker (committed above) come before the
# stream's start strategy: it reads what came after them.
my $committed = ok_as('r_app', "SELECT sum(broker_offset) FROM rmq_committed_offsets('$G', '$T')", 'committed offsets');
sql("CREATE TABLE acl_t (queue_id int, queue_offset bigint, unique_key text, body bytea)");
sql("GRANT INSERT, SELECT ON acl_t TO r_app, r_nosub");
ok_as('r_app', "SELECT rmq_create_stream('s_acl', '$T', '$G', 'acl_t', "
	  . "options => '{\"server\": \"acl\", \"auto_commit\": true, \"batch_interval\": 200}')", 'a stream with server acl');
RmqTest::wait_caught_up($node, 's_acl', $G, $T);
is(sql("SELECT count(*) FROM acl_t"), sql("SELECT sum(max_offset) FROM rmq_queues('$T')") - $committed,
	'the stream ingests every message after the group\'s committed offsets, signed as its owner');
ok($node->poll_query_until('postgres',
		"SELECT count(*) FILTER (WHERE broker_offset = next_offset) = 4 FROM rmq_committed_offsets('$G', '$T')"),
	'auto_commit: the broker has the stream\'s offsets')
  or diag(sql("SELECT string_agg(broker || '/' || queue_id || ' pg ' || coalesce(next_offset::text, '-') || ' broker ' "
	  . "|| coalesce(broker_offset::text, '-'), ', ') FROM rmq_committed_offsets('$G', '$T')"));

# --- refusals -------------------------------------------------------------------
my $all = "(SELECT array_agg(rmq_offset_range('$T', broker, queue_id, min_offset, max_offset)) FROM rmq_queues('$T'))";
refused('r_badsecret', "SELECT * FROM rmq_queues('$T')", '28000', qr/check signature failed/, qr/HINT:.*user mapping/,
	'wrong secret');
refused('r_nobody', "SELECT * FROM rmq_queues('$T')", '28000', qr/User:nobody is not found/, qr/HINT:.*user mapping/,
	'unknown user');
refused('r_nomap', "SELECT * FROM rmq_queues('$T')", '28000', qr/username cannot be null/, qr/HINT:.*user mapping/,
	'no user mapping: unsigned');
refused('r_nopub', "SELECT rmq_send('$T', 'x')", '42501', qr/has no permission to access Topic:$T/,
	qr/HINT:  Sending needs Pub/, 'no Pub');
refused('r_noget', "SELECT * FROM rmq_queues('$T')", '42501', qr/has no permission to access Topic:$T/,
	qr/HINT:  Reading a queue's offsets needs Get on the topic; Sub alone is not enough/, 'no Get');
refused('r_nosub', "SELECT count(*) FROM rmq_create_rdd('$G', ARRAY[rmq_offset_range('$T', 'broker-a', 0, 0, 1)])",
	'42501', qr/has no permission to access Topic:$T/, qr/HINT:  Pulling needs Sub/, 'no Sub');
refused('r_app', "SELECT rmq_send('$OTHER', 'x')", '42501', qr/has no permission to access Topic:$OTHER/, undef,
	'topic not granted');
refused('r_app', "SELECT rmq_create_topic('acl_new_topic', 1)", '42501', qr/has no permission/, qr/HINT:  Creating topics/,
	'creating a topic without Create');

# A stream whose owner may not pull fails with the reason, and goes on once
# the owner's mapping names a user that may.
ok_as('r_nosub', "SELECT rmq_create_stream('s_nosub', '$T', '$G', 'acl_t', "
	  . "options => '{\"server\": \"acl\", \"batch_interval\": 200}')", 'a stream whose owner has no Sub');
RmqTest::wait_state($node, 's_nosub', 'failed', 'a stream refused by the broker fails');
my $why = sql("SELECT last_error FROM rmq_stream_status WHERE stream = 's_nosub' LIMIT 1");
like($why, qr/permission denied/, "... with the reason in rmq_stream_status: $why");
push @errors, $why;
sql("ALTER USER MAPPING FOR r_nosub SERVER acl OPTIONS (SET access_key '$secret{r_app}[0]', "
	  . "SET secret_key '$secret{r_app}[1]')");
ok_as('r_nosub', "SELECT rmq_resume_stream('s_nosub')", 'resume after fixing the mapping');
RmqTest::wait_state($node, 's_nosub', 'running');
ok($node->poll_query_until('postgres', "SELECT health = 'healthy' AND lag = 0 FROM rmq_stream_status "
	  . "WHERE stream = 's_nosub' ORDER BY queue_id LIMIT 1"), 'the resumed stream catches up, healthy');

# A changed secret is picked up without restarting anything: the running
# stream s_acl now signs with a wrong one and fails; with the right one back
# and a resume it goes on.
sql("ALTER USER MAPPING FOR r_app SERVER acl OPTIONS (SET secret_key 'wrong-again-0042')");
RmqTest::wait_state($node, 's_acl', 'failed', 'a stream whose owner\'s secret changed to a wrong one fails');
like(sql("SELECT last_error FROM rmq_stream WHERE name = 's_acl'"), qr/authentication failed/, '... saying why');
sql("ALTER USER MAPPING FOR r_app SERVER acl OPTIONS (SET secret_key '$secret{r_app}[1]')");
ok_as('r_app', "SELECT rmq_resume_stream('s_acl')", 'resume with the right secret');
RmqTest::wait_state($node, 's_acl', 'running');
RmqTest::wait_caught_up($node, 's_acl', $G, $T);

# --- the secrets appear nowhere -------------------------------------------------
my @secrets = map { $_->[1] } values %secret;
push @secrets, 'wrong-again-0042';
my %where = (
	'the server log' => slurp_file($node->logfile),
	'pg_stat_activity' => sql("SELECT string_agg(coalesce(query, ''), E'\\n') FROM pg_stat_activity"),
	'rmq_stream' => sql("SELECT string_agg(t::text, E'\\n') FROM rmq_stream t"),
	'rmq_stream_status' => sql("SELECT string_agg(t::text, E'\\n') FROM rmq_stream_status t"),
	'rmq_batch' => sql("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM rmq_batch t"),
	'rmq_dead_letter' => sql("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM rmq_dead_letter t"),
	'the errors seen' => join("\n", @errors),
	'pg_user_mappings, as a role other than their owners' =>
	  (as('r_nopub', "SELECT string_agg(coalesce(umoptions::text, ''), E'\\n') FROM pg_user_mappings "
		  . "WHERE usename <> 'r_nopub'"))[1]);
like($where{'the server log'}, qr/secret_key '\*{8}'/, 'the log shows user mapping statements with the secret masked');
for my $w (sort keys %where)
{
	my @found = grep { index($where{$w}, $_) >= 0 } @secrets;
	is(scalar(@found), 0, "no secret in $w") or diag("found: @found");
}

done_testing();
