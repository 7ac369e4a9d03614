# Shared set-up for the TAP tests: a PostgreSQL 15 node with rocketmq_stream
# preloaded and pointed at the test broker ($ENV{RMQ_NAMESRV}).
package RmqTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

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
	# version => '0.1.0': an older catalog under this build's library;
	# extension => 0: none yet (pg_restore will create it).
	my $version = $extra{version} ? " VERSION '$extra{version}'" : '';
	$node->safe_psql('postgres', "CREATE EXTENSION rocketmq_stream$version") if $extra{extension} // 1;
	return $node;
}

# Run one of test/java's programs; returns its stdout, dies on failure, and
# on a program still running after 10 minutes (it is killed): a wedged JVM
# must fail the test, not hang the suite.
sub java
{
	my (@args) = @_;
	my $here = $ENV{RMQ_TEST_DIR} or die "RMQ_TEST_DIR is not set";
	my ($stdout, $stderr);
	my $ok = eval {
		IPC::Run::run([ "$here/java/run.sh", @args ], '>', \$stdout, '2>', \$stderr, IPC::Run::timeout(600));
	};
	die "java @args: " . ($@ =~ /timeout/i ? 'still running after 600 s, killed' : $@) . "\n" . ($stderr // '')
	  unless defined $ok;
	die "java @args failed:\n$stderr" unless $ok;
	return $stdout;
}

# ---------------------------------------------------------------------------
# Streams (test/t/1xx_stream_*.pl)
# ---------------------------------------------------------------------------

use Time::HiRes qw(usleep);

# Topics and consumer groups outlive a test run on the broker (offsets a
# group committed there, messages of an earlier run): names carry a suffix
# unique to this run, so reruns against the same broker start clean.
our $run_id = sprintf('%x%03x', time, $$ % 4096);

sub uniq { my ($base) = @_; return "${base}_$run_id"; }

# A node for streams: the launcher in database postgres, room for workers.
sub stream_node
{
	my ($name, %extra) = @_;
	my $conf = qq{
max_worker_processes = 20
rocketmq_stream.database = 'postgres'
log_line_prefix = '%m [%p] %b %a: '
};
	$conf .= $extra{conf} if $extra{conf};
	return node($name, conf => $conf, version => $extra{version}, extension => $extra{extension});
}

# CREATE TABLE with every standard message column (and EXTRA columns).
sub message_table
{
	my ($name, $extra) = @_;
	$extra = $extra ? ", $extra" : '';
	return "CREATE TABLE $name (topic text, broker text, queue_id integer, queue_offset bigint, "
	  . "msg_id text, unique_key text, keys text[], tags text, body bytea, properties jsonb, "
	  . "born_timestamp timestamptz, born_host text, store_timestamp timestamptz, store_host text, "
	  . "reconsume_times integer$extra)";
}

our $all_columns = 'topic, broker, queue_id, queue_offset, msg_id, unique_key, keys, tags, body, '
  . 'properties, born_timestamp, born_host, store_timestamp, store_host, reconsume_times';

# The fields test/java/InteropDump prints, as JSON, from rmq_create_rdd's
# columns (or a stream's table with the same names): compare with canon().
our $row_json = q{jsonb_build_object('topic', topic, 'broker', broker, 'queue_id', queue_id,
    'queue_offset', queue_offset, 'msg_id', msg_id, 'unique_key', unique_key, 'keys', to_jsonb(keys),
    'tags', tags, 'body_md5', md5(body), 'body_len', length(body), 'properties', properties,
    'born_ms', (extract(epoch FROM born_timestamp) * 1000)::bigint, 'born_host', born_host,
    'store_ms', (extract(epoch FROM store_timestamp) * 1000)::bigint, 'store_host', store_host,
    'reconsume_times', reconsume_times, 'lossy', properties_raw IS NOT NULL)};

# JSON lines, canonical and sorted, so that field order and escaping do not matter.
sub canon
{
	my ($text) = @_;
	my $json = JSON::PP->new->canonical->utf8;
	return [ sort map { $json->encode($json->decode($_)) } grep { $_ ne '' } split /\n/, $text ];
}

# produce($node, $topic, per_queue => N, queues => [0..3], tags => 'TagA',
#         body => SQL expression of s (sequence number) and q (queue)):
# sends N messages to each queue, in batches pinned to the queue, and
# returns how many were sent.  Default bodies are JSON objects
# {"seq": s, "q": q} with s unique per topic within this run.
my %seq;
sub produce
{
	my ($node, $topic, %o) = @_;
	my $queues = $o{queues} // [ 0 .. 3 ];
	my $n = $o{per_queue} // 1;
	my $tags = defined $o{tags} ? "'$o{tags}'" : 'NULL';
	my $body = $o{body} // q{convert_to(json_build_object('seq', s, 'q', q)::text, 'UTF8')};
	my $sql = '';
	my $sent = 0;
	for my $q (@$queues)
	{
		my $left = $n;
		while ($left > 0)
		{
			my $k = $left > 32 ? 32 : $left;
			my $from = ($seq{$topic} // 0) + 1;
			my $to = $from + $k - 1;
			$seq{$topic} = $to;
			$sql .= "SELECT cardinality(rmq_send_batch('$topic', ARRAY(SELECT $body FROM generate_series($from, $to) s, "
			  . "(VALUES ($q)) v(q) ORDER BY s), $tags, NULL, NULL, '{\"queue_id\": $q}'));\n";
			$left -= $k;
			$sent += $k;
		}
	}
	my $out = $node->safe_psql('postgres', $sql);
	my $got = 0;
	$got += $_ for grep { /^\d+$/ } split /\n/, $out;
	die "produce: sent $got of $sent messages" unless $got == $sent;
	return $sent;
}

# SQL: true when the group's offsets stored in rmq_offset equal the broker's
# max offset of every queue of the topic.
sub caught_up_sql
{
	my ($group, $topic) = @_;
	return "SELECT count(*) = 0 FROM rmq_queues('$topic') q LEFT JOIN rmq_offset o "
	  . "ON o.consumer_group = '$group' AND o.topic = '$topic' AND o.broker = q.broker AND o.queue_id = q.queue_id "
	  . "WHERE o.next_offset IS DISTINCT FROM q.max_offset";
}

sub offsets_report
{
	my ($node, $group, $topic) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT string_agg(q.broker || '/' || q.queue_id || ' max ' || q.max_offset || ' stored ' "
		  . "|| coalesce(o.next_offset::text, 'none'), ', ' ORDER BY q.broker, q.queue_id) "
		  . "FROM rmq_queues('$topic') q LEFT JOIN rmq_offset o ON o.consumer_group = '$group' "
		  . "AND o.topic = '$topic' AND o.broker = q.broker AND o.queue_id = q.queue_id");
	return $ret == 0 ? $out : "(could not read offsets: $err)";
}

sub stream_report
{
	my ($node, $stream) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT state || ' gen ' || generation || ' last_error: ' || coalesce(last_error, '(none)') "
		  . "FROM rmq_stream WHERE name = '$stream'");
	return $ret == 0 ? ($out eq '' ? '(no such stream)' : $out) : "(could not read rmq_stream: $err)";
}

# Wait until the stream's group has stored the broker's max offsets.
sub wait_caught_up
{
	my ($node, $stream, $group, $topic) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $ok = $node->poll_query_until('postgres', caught_up_sql($group, $topic));
	ok($ok, "$stream: stored offsets reach the broker's max offsets");
	diag("$stream: " . offsets_report($node, $group, $topic) . '; ' . stream_report($node, $stream))
	  unless $ok;
	return $ok;
}

# check_exact($node, table => T, topic => TOPIC, label => L, group => G,
#             from => {queue => offset}, filter => SQL on the expected rows,
#             expect => N, exp_cols => ..., got_cols => ...)
# The table holds exactly the messages of [from (default the queue's min
# offset), max offset) of every queue (that pass filter), each once, as
# rmq_create_rdd reads them; if group is given, the group's stored offsets
# equal the broker's max offsets.
sub check_exact
{
	my ($node, %a) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $t = $a{topic};
	my $label = $a{label} // $a{table};
	my $from = 'q.min_offset';
	if ($a{from})
	{
		$from = 'CASE q.queue_id '
		  . join(' ', map { "WHEN $_ THEN $a{from}{$_}" } sort keys %{ $a{from} })
		  . ' ELSE q.min_offset END';
	}
	my $where = $a{filter} ? "WHERE $a{filter}" : '';
	my $exp_cols = $a{exp_cols} // 'broker, queue_id, queue_offset, body';
	my $got_cols = $a{got_cols} // $exp_cols;
	my $exp = "SELECT $exp_cols FROM rmq_create_rdd('rmq_tap_check', (SELECT array_agg("
	  . "rmq_offset_range('$t', q.broker, q.queue_id, $from, q.max_offset)) FROM rmq_queues('$t') q)) r $where";
	my $got = "SELECT $got_cols FROM $a{table}";
	my $out = $node->safe_psql('postgres', qq{
WITH exp AS MATERIALIZED ($exp), got AS MATERIALIZED ($got)
SELECT (SELECT count(*) FROM got) || ' ' ||
       (SELECT count(DISTINCT (broker, queue_id, queue_offset)) FROM $a{table}) || ' ' ||
       (SELECT count(*) FROM exp) || ' ' ||
       (SELECT count(*) FROM (TABLE exp EXCEPT ALL TABLE got) x) || ' ' ||
       (SELECT count(*) FROM (TABLE got EXCEPT ALL TABLE exp) y)});
	my ($n, $distinct, $nexp, $missing, $extra) = split / /, $out;
	my $want = $a{expect} // $nexp;
	my $ok = is("rows $n, distinct $distinct, expected $nexp, missing $missing, unexpected $extra",
		"rows $want, distinct $want, expected $want, missing 0, unexpected 0",
		"$label: every message exactly once");
	unless ($ok)
	{
		diag("missing (first 10): "
			  . $node->safe_psql('postgres', qq{
WITH exp AS MATERIALIZED ($exp), got AS MATERIALIZED ($got)
SELECT string_agg(queue_id || '\@' || queue_offset, ' ') FROM (SELECT * FROM (TABLE exp EXCEPT ALL TABLE got) x ORDER BY queue_id, queue_offset LIMIT 10) y}));
		diag("unexpected (first 10): "
			  . $node->safe_psql('postgres', qq{
WITH exp AS MATERIALIZED ($exp), got AS MATERIALIZED ($got)
SELECT string_agg(queue_id || '\@' || queue_offset, ' ') FROM (SELECT * FROM (TABLE got EXCEPT ALL TABLE exp) x ORDER BY queue_id, queue_offset LIMIT 10) y}));
	}
	if ($a{group})
	{
		is($node->safe_psql('postgres', caught_up_sql($a{group}, $t)), 't',
			"$label: stored offsets equal the broker's max offsets")
		  or diag(offsets_report($node, $a{group}, $t));
	}
	return $ok;
}

# The workers of a stream, as pg_stat_activity shows them.
sub workers_sql
{
	my ($stream) = @_;
	return "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'rocketmq_stream worker' "
	  . "AND application_name LIKE 'rocketmq_stream $stream/%'";
}

sub wait_workers
{
	my ($node, $stream, $n, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return ok($node->poll_query_until('postgres', workers_sql($stream), $n),
		$label // "$stream: $n worker(s) running");
}

sub wait_state
{
	my ($node, $stream, $state, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $ok = $node->poll_query_until('postgres', "SELECT state FROM rmq_stream WHERE name = '$stream'", $state);
	ok($ok, $label // "$stream: state $state");
	diag(stream_report($node, $stream)) unless $ok;
	return $ok;
}

# Poll SQL until it returns a non-empty result (returned), or die after
# the default timeout.
sub poll_value
{
	my ($node, $sql, $what) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		my ($ret, $out, $err) = $node->psql('postgres', $sql);
		return $out if $ret == 0 && $out ne '';
		usleep(100_000);
	}
	die "timed out waiting for $what";
}

# {queue_id => max_offset} of a topic's queues.
sub max_offsets
{
	my ($node, $topic) = @_;
	my %m = map { split /\|/ } split /\n/,
	  $node->safe_psql('postgres', "SELECT queue_id, max_offset FROM rmq_queues('$topic')");
	return \%m;
}

# Can this test stop and start the broker in $RMQ_NAMESRV?  Only if the
# environment describes it (run-all.sh does: RMQ_HOME, RMQ_*_PORT) and its
# pid file is ours to read; otherwise broker.sh would act on another one.
sub broker_controllable
{
	my $port = $ENV{RMQ_NAMESRV_PORT} // '';
	return $port ne '' && ($ENV{RMQ_BROKER_PORT} // '') ne '' && $ENV{RMQ_HOME}
	  && ($ENV{RMQ_NAMESRV} // '') eq "127.0.0.1:$port" && -r "$ENV{RMQ_HOME}/broker.pid";
}

# The test broker (test/broker/broker.sh with the environment run-tap.sh
# passes on): stop, start, kill broker|namesrv, revive.
sub broker
{
	my (@cmd) = @_;
	my $dir = $ENV{RMQ_TEST_DIR} or die "RMQ_TEST_DIR is not set";
	my ($stdout, $stderr);
	IPC::Run::run([ 'bash', "$dir/broker/broker.sh", @cmd ], '>', \$stdout, '2>', \$stderr)
	  or die "broker.sh @cmd failed:\n$stdout$stderr";
	note("broker.sh @cmd: $stderr");
	return;
}

# Pids of the processes whose parent is $pid (from /proc).
sub children_of
{
	my ($pid) = @_;
	my @kids;
	for my $stat (glob '/proc/[0-9]*/stat')
	{
		open(my $fh, '<', $stat) or next;
		my $line = <$fh>;
		close $fh;
		next unless defined $line;
		# pid (comm) state ppid ...: comm may hold spaces and parentheses.
		push @kids, $1 if $line =~ /^(\d+) \(.*\) \S+ (\d+) / && $2 == $pid;
	}
	return @kids;
}

1;
