# pg_dump of a database whose streams are running, pg_restore into a new
# cluster: the streams come back and go on from the restored offsets.
#  - the dump (taken while a producer sends and workers commit) is one
#    snapshot: per queue the target holds exactly the messages below the
#    stored offset, and dead letters exactly the poison ones below it;
#  - restored into the launcher's database of a new node (with the streams'
#    owner role, as pg_dumpall --globals-only would bring it), the streams
#    run again as their owner, their first batches start exactly at the
#    restored offsets, and restored rows plus what they ingest afterwards
#    are every message exactly once; new dead letters join the restored ones.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $src = RmqTest::stream_node('source');
my $opts = '{"batch_interval": 200, "batch_rows": 50}';
my $T = RmqTest::uniq('t009_main');
my $D = RmqTest::uniq('t009_dl');
my ($gM, $gD) = map { RmqTest::uniq("g009_$_") } qw(msg dl);
my $poison = q{convert_from(body, 'UTF8') LIKE 'poison%'};

$src->safe_psql('postgres', qq{
SELECT rmq_create_topic('$T', 4);
SELECT rmq_create_topic('$D', 2);
CREATE ROLE rmq_app LOGIN;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO rmq_app;
@{[ RmqTest::message_table('app.t_msg') ]};
-- A row whose body says "poison" is refused: its message becomes a dead letter.
CREATE TABLE app.t_dl (broker text, queue_id integer, queue_offset bigint, body bytea,
                       CHECK (position('poison' IN convert_from(body, 'UTF8')) = 0));
GRANT SELECT, INSERT ON app.t_msg, app.t_dl TO rmq_app;
SET ROLE rmq_app;
SELECT rmq_create_stream('s_msg', '$T', '$gM', 'app.t_msg', options => '$opts');
SELECT rmq_create_stream('s_dl', '$D', '$gD', 'app.t_dl',
                         options => '{"batch_interval": 200, "batch_rows": 50, "on_error": "dead_letter"}');
});
RmqTest::produce($src, $T, per_queue => 20);
RmqTest::produce($src, $D, queues => [ 0, 1 ], per_queue => 20,
	body => q{convert_to(CASE WHEN s % 7 = 0 THEN 'poison ' ELSE 'ok ' END || s || '/' || q, 'UTF8')});
RmqTest::wait_caught_up($src, 's_msg', $gM, $T);
RmqTest::wait_caught_up($src, 's_dl', $gD, $D);

# --- the dump, while a producer sends and the workers commit ----------------
my $bg = $src->background_psql('postgres', on_error_stop => 1);
$bg->query_until(qr/producing/, qq{\\echo producing
DO \$\$ BEGIN
    FOR s IN 1..400 LOOP
        PERFORM rmq_send('$T', convert_to(json_build_object('bg', s)::text, 'UTF8'));
        IF s % 4 = 0 THEN
            PERFORM rmq_send('$D', convert_to(CASE WHEN s % 28 = 0 THEN 'poison bg ' ELSE 'ok bg ' END || s, 'UTF8'));
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END \$\$;
});
my $rows = $src->safe_psql('postgres', 'SELECT count(*) FROM app.t_msg');
ok($src->poll_query_until('postgres', "SELECT count(*) > $rows + 40 FROM app.t_msg"), 'the streams ingest while the producer sends');
my $dump = PostgreSQL::Test::Utils::tempdir() . '/postgres.dump';
my ($out, $err);
ok(IPC::Run::run([ 'pg_dump', '-Fc', '-f', $dump, '-d', $src->connstr('postgres') ], '>', \$out, '2>', \$err),
	'pg_dump -Fc of the database with running streams') or diag($err);
$bg->query_safe("SELECT 'producer done'");
$bg->quit;
$src->stop;

my $dst = RmqTest::stream_node('restored', extension => 0);
sub dsql { return $dst->safe_psql($_[1] // 'postgres', $_[0]); }
# Roles are not in a database's dump: pg_dumpall --globals-only's part.
dsql('CREATE ROLE rmq_app LOGIN');

# --- what the dump holds: one snapshot ---------------------------------------
# Restored first where no launcher runs streams, to look at it as it is.
dsql('CREATE DATABASE inspect');
ok(IPC::Run::run([ 'pg_restore', '--exit-on-error', '-d', $dst->connstr('inspect'), $dump ], '>', \$out, '2>', \$err),
	'pg_restore into a database of the new node') or diag($err);
my %restored = map { split /\|/ } split /\n/,
  dsql("SELECT queue_id, next_offset FROM rmq_offset WHERE consumer_group = '$gM'", 'inspect');
is(scalar(keys %restored), 4, 'the dump holds the offsets of every queue');
# The topic is new: a queue's messages are [0, max).
is(dsql(qq{SELECT count(*) FROM rmq_offset o, LATERAL (
             SELECT count(*) FILTER (WHERE t.queue_offset < o.next_offset) AS below,
                    count(DISTINCT t.queue_offset) FILTER (WHERE t.queue_offset < o.next_offset) AS distinct_below,
                    count(*) FILTER (WHERE t.queue_offset >= o.next_offset) AS above
             FROM app.t_msg t WHERE t.queue_id = o.queue_id) x
           WHERE o.consumer_group = '$gM'
             AND (x.below <> o.next_offset OR x.distinct_below <> o.next_offset OR x.above > 0)}, 'inspect'),
	'0', 'per queue, the dumped target holds exactly the messages below the dumped offset: one snapshot');
is(dsql(qq{SELECT count(*) FROM rmq_dead_letter d JOIN rmq_offset o ON o.consumer_group = '$gD'
             AND o.broker = d.broker AND o.queue_id = d.queue_id AND d.queue_offset >= o.next_offset}, 'inspect'),
	'0', 'dead letters in the dump are all below the dumped offsets');
cmp_ok(dsql('SELECT count(*) FROM rmq_dead_letter', 'inspect'), '>', 0, 'the dump holds dead letters');
is(dsql("SELECT string_agg(name || ':' || state || ':' || owner, ' ' ORDER BY name) FROM rmq_stream", 'inspect'),
	's_dl:running:rmq_app s_msg:running:rmq_app', 'the dump holds the streams, running, with their owner');

# --- restored into the launcher's database: the streams go on ----------------
ok(IPC::Run::run([ 'pg_restore', '--exit-on-error', '-d', $dst->connstr('postgres'), $dump ], '>', \$out, '2>', \$err),
	'pg_restore into the launcher\'s database') or diag($err);
my $final_max = RmqTest::max_offsets($dst, $T);
my ($at_dump, $at_end) = (0, 0);
$at_dump += $_ for values %restored;
$at_end += $_ for values %$final_max;
ok($at_dump > 4 * 20 && $at_dump < $at_end, "the dump was taken mid-stream ($at_dump of $at_end messages)");
RmqTest::wait_workers($dst, 's_msg', 1, 's_msg: running again after the restore');
RmqTest::wait_workers($dst, 's_dl', 1, 's_dl: running again after the restore');
is(dsql("SELECT string_agg(DISTINCT usename, ' ') FROM pg_stat_activity WHERE backend_type = 'rocketmq_stream worker'"),
	'rmq_app', 'the workers run as the streams\' owner');
RmqTest::wait_caught_up($dst, 's_msg', $gM, $T);
RmqTest::wait_caught_up($dst, 's_dl', $gD, $D);
is(dsql(qq{SELECT string_agg(queue_id || ':' || f, ' ' ORDER BY queue_id) FROM (
             SELECT (r->>'queue_id')::int AS queue_id, min((r->>'from')::bigint) AS f
             FROM rmq_batch b, jsonb_array_elements(b.ranges) r WHERE b.stream = 's_msg' GROUP BY 1) x}),
	join(' ', map { "$_:$restored{$_}" } sort keys %restored),
	'the restored stream\'s first batches start exactly at the restored offsets');
RmqTest::check_exact($dst, table => 'app.t_msg', topic => $T, group => $gM, expect => $at_end,
	exp_cols => $RmqTest::all_columns, label => 'restored rows + what the restored stream ingested');
RmqTest::check_exact($dst, table => 'app.t_dl', topic => $D, group => $gD, filter => "NOT $poison",
	label => 's_dl: restored rows + ingested after');
RmqTest::check_exact($dst, topic => $D, filter => $poison, label => 's_dl: restored dead letters + new ones',
	table => "(SELECT broker, queue_id, queue_offset, body FROM rmq_dead_letter WHERE stream = 's_dl') d");
ok($dst->poll_query_until('postgres', "SELECT bool_and(state = 'running' AND health = 'healthy' AND last_error IS NULL)
        FROM rmq_stream_status WHERE stream IN ('s_msg', 's_dl')"), 'rmq_stream_status: both healthy on the new node');

my $log = slurp_file($dst->logfile);
unlike($log, qr/terminated by signal|PANIC|TRAP:/, 'no backend crashed');
my @errors = grep { /rocketmq_stream (worker|launcher)[^:]*: (ERROR|WARNING)/ } split /\n/, $log;
is(scalar(@errors), 0, 'workers and launcher of the new node report no error or warning')
  or diag(join("\n", @errors[0 .. ($#errors > 9 ? 9 : $#errors)]));
$dst->stop;
done_testing();
