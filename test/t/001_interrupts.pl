# A call parked in the broker's long poll answers cancel, terminate, fast
# shutdown and statement_timeout; a long poll returns as soon as a message
# arrives.  There are no timing assertions: a call that ignored the
# interrupt would wait ten minutes and fail the test on its timeout.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $node = RmqTest::node('interrupts');
$node->safe_psql('postgres', "SELECT rmq_create_topic('tap_wait', 1)");
my $max = $node->safe_psql('postgres', "SELECT max_offset FROM rmq_queues('tap_wait')");

my $park = "SELECT count(*) FROM rmq_create_rdd('tap_g', ARRAY[rmq_offset_range('tap_wait', 'broker-a', 0, $max, "
  . ($max + 1) . ")], '{\"pull_timeout\": 600000}');\n";
my $parked = "SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Extension' "
  . "AND query LIKE '%rmq_create_rdd%' AND pid <> pg_backend_pid()";

# Cancel.
my $s = $node->background_psql('postgres', on_error_stop => 0);
$s->query_until(qr/parking/, "\\echo parking\n$park");
ok($node->poll_query_until('postgres', $parked), 'call is parked in the long poll');
$node->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%rmq_create_rdd%' AND pid <> pg_backend_pid()");
my ($out) = $s->query("SELECT 'alive'");
like($s->{stderr}, qr/canceling statement due to user request/, 'pg_cancel_backend stops the long poll');
is($out, 'alive', 'the session goes on after a cancel');
$s->{stderr} = '';

# The same session can read again (its broken connection was replaced).
$node->safe_psql('postgres', "SELECT rmq_send('tap_wait', 'one', NULL, NULL, NULL, '{\"queue_id\": 0}')");
is($s->query("SELECT count(*) FROM rmq_create_rdd('tap_g', ARRAY[rmq_offset_range('tap_wait', 'broker-a', 0, $max, "
	  . ($max + 1) . ")])"), '1', 'the cancelled session reads again');
$max++;
$s->quit;

# A long poll returns as soon as the awaited message arrives.
$s = $node->background_psql('postgres', on_error_stop => 0);
$park = "SELECT convert_from(body, 'UTF8') FROM rmq_create_rdd('tap_g', ARRAY[rmq_offset_range('tap_wait', 'broker-a', 0, $max, "
  . ($max + 1) . ")], '{\"pull_timeout\": 600000}');\n";
$s->query_until(qr/parking/, "\\echo parking\n$park");
ok($node->poll_query_until('postgres', $parked), 'waiting for the next message');
$node->safe_psql('postgres', "SELECT rmq_send('tap_wait', 'awaited', NULL, NULL, NULL, '{\"queue_id\": 0}')");
is($s->query("SELECT 'done'"), "awaited\ndone", 'the long poll delivers the new message');
$max++;
$s->quit;

# Terminate.
$park =~ s/convert_from\(body, 'UTF8'\)/count(*)/;
$park =~ s/0, \d+, \d+\)/0, $max, @{[$max + 1]})/;
$s = $node->background_psql('postgres', on_error_stop => 0);
$s->query_until(qr/parking/, "\\echo parking\n$park");
ok($node->poll_query_until('postgres', $parked), 'parked again');
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%rmq_create_rdd%' AND pid <> pg_backend_pid()");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE query LIKE '%rmq_create_rdd%' AND pid <> pg_backend_pid()"),
	'pg_terminate_backend ends the backend');
$s->{run}->finish;
like($s->{stderr}, qr/terminating connection due to administrator command/, 'the client is told why');

# statement_timeout.
my ($ret, $stdout, $stderr) = $node->psql('postgres', "SET statement_timeout = '1s'; $park");
like($stderr, qr/canceling statement due to statement timeout/, 'statement_timeout stops the long poll');

# A pull_timeout that runs out is a clear error, not a hang.
($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT count(*) FROM rmq_create_rdd('tap_g', ARRAY[rmq_offset_range('tap_wait', 'broker-a', 0, $max, "
	  . ($max + 1) . ")], '{\"pull_timeout\": 1000}')");
like($stderr, qr/offset $max of queue 0 of broker "broker-a" has not arrived within 1000 ms/,
	'an exhausted pull_timeout reports the missing offset');

# Fast shutdown while a backend is parked.
$s = $node->background_psql('postgres', on_error_stop => 0);
$s->query_until(qr/parking/, "\\echo parking\n$park");
ok($node->poll_query_until('postgres', $parked), 'parked before shutdown');
$node->stop('fast');
pass('fast shutdown completes while a backend waits on the broker');
$s->{run}->finish;

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC/, 'no backend crashed');
done_testing();
