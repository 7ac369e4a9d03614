# Shared set-up for the TAP tests: a PostgreSQL 15 node with rocketmq_stream
# preloaded and pointed at the test broker ($ENV{RMQ_NAMESRV}).
package RmqTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

sub node
{
	my ($name, %extra) = @_;
	die "RMQ_NAMESRV is not set" unless $ENV{RMQ_NAMESRV};
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'rocketmq_stream'
rocketmq_stream.namesrv_addr = '$ENV{RMQ_NAMESRV}'
});
	$node->append_conf('postgresql.conf', $extra{conf}) if $extra{conf};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION rocketmq_stream');
	return $node;
}

# Run one of test/java's programs; returns its stdout, dies on failure.
sub java
{
	my (@args) = @_;
	my $here = $ENV{RMQ_TEST_DIR} or die "RMQ_TEST_DIR is not set";
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ "$here/java/run.sh", @args ], '>', \$stdout, '2>', \$stderr);
	die "java @args failed:\n$stderr" unless $ok;
	return $stdout;
}

1;
