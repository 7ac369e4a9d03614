# The extension's lifecycle with streams running: DROP EXTENSION and
# DROP DATABASE of the launcher's database return and succeed, a fast
# shutdown completes, and creating a stream without the library preloaded
# or in another database is a clear error.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $node = PostgreSQL::Test::Cluster->new('lifecycle');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'rocketmq_stream'
rocketmq_stream.namesrv_addr = '$ENV{RMQ_NAMESRV}'
rocketmq_stream.database = 'streams'
max_worker_processes = 16
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE streams');
my $setup = q{
CREATE EXTENSION rocketmq_stream;
SELECT rmq_create_topic('tap_life', 2);
CREATE TABLE sink (queue_offset bigint, body bytea);
SELECT rmq_send('tap_life', 'one');
SELECT rmq_create_stream('life', 'tap_life', 'tap_life_g', 'sink', options => '{"batch_interval": 100}');
};
$node->safe_psql('streams', $setup);
ok($node->poll_query_until('streams',
		"SELECT count(*) = (SELECT sum(max_offset) FROM rmq_queues('tap_life')) AND count(*) > 0 FROM sink"),
	'the stream ingests the whole topic');
ok($node->poll_query_until('streams',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'rocketmq_stream worker' "
		. "AND application_name = 'rocketmq_stream life/0'"), 'its worker is visible');

# Streams belong to the launcher's database.
$node->safe_psql('postgres', 'CREATE EXTENSION rocketmq_stream; CREATE TABLE t (body bytea)');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT rmq_create_stream('x', 'tap_life', 'g', 't')");
like($err, qr/streams run in database "streams", not in this one/, 'streams elsewhere are refused');

# DROP EXTENSION with a running stream: returns, workers go away.
($ret, $out, $err) = $node->psql('streams', 'DROP EXTENSION rocketmq_stream CASCADE');
is($ret, 0, 'DROP EXTENSION succeeds while a stream runs');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'rocketmq_stream worker'"),
	'its workers stop');

# DROP DATABASE of the launcher's database, with a stream running again.
$node->safe_psql('streams', $setup =~ s/SELECT rmq_send[^;]*;//r =~ s/CREATE TABLE sink[^;]*;/TRUNCATE sink;/r);
ok($node->poll_query_until('streams',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'rocketmq_stream worker'"),
	'a stream runs again');
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE streams');
is($ret, 0, 'DROP DATABASE of the launcher\'s database succeeds') or diag($err);

$node->stop('fast');
pass('fast shutdown completes');
unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC/, 'nothing crashed');

# Without shared_preload_libraries, streams are refused with a hint.
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->append_conf('postgresql.conf', "rocketmq_stream.namesrv_addr = '$ENV{RMQ_NAMESRV}'");
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION rocketmq_stream; CREATE TABLE t (body bytea)');
($ret, $out, $err) = $plain->psql('postgres', "SELECT rmq_create_stream('x', 'tap_life', 'g', 't')");
like($err, qr/streams need rocketmq_stream in shared_preload_libraries/, 'a clear error without preloading');
is($plain->safe_psql('postgres', "SELECT count(*) FROM rmq_queues('tap_life')"), '2',
	'the ad hoc API works without preloading');
$plain->stop('fast');
done_testing();
