# ALTER EXTENSION rocketmq_stream UPDATE from 0.1.0, with streams running:
#  - 0.1.0's catalog under this build's (0.2.0) library: streams of every
#    kind (message, handler, dead letters) with rows, offsets and batches;
#  - the UPDATE while messages keep coming and the workers commit;
#  - afterwards every message exactly once in every target, every poison
#    message exactly once in rmq_dead_letter, each queue's batch ranges
#    without gap or overlap across the update, health in rmq_stream_status,
#    what 0.2.0 added usable (rmq_create_stream's row, properties_raw);
#  - the upgraded catalog equals a fresh 0.2.0 install: pg_dump of both,
#    restricted to the extension's objects, after normalising what differs
#    between any two databases (see normalise()).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $node = RmqTest::stream_node('upgrade', version => '0.1.0');
my $opts = '{"batch_interval": 200, "batch_rows": 50}';

sub sql { return $node->safe_psql('postgres', $_[0]); }

is(sql("SELECT extversion FROM pg_extension WHERE extname = 'rocketmq_stream'"), '0.1.0', 'created at 0.1.0');

# The user's objects live in schema app, so that schema public holds only
# the extension's, which the catalog comparison below dumps.
my $T = RmqTest::uniq('t008_main');
my $D = RmqTest::uniq('t008_dl');
my ($gM, $gH, $gD) = map { RmqTest::uniq("g008_$_") } qw(msg handler dl);
is(sql("SELECT rmq_create_topic('$T', 4)"), '1', 'topic with 4 queues (0.1.0 signature of rmq_create_topic)');
sql("SELECT rmq_create_topic('$D', 2)");
sql("CREATE SCHEMA app");
sql(RmqTest::message_table('app.t_msg'));
sql(q{
CREATE TABLE app.t_h (broker text, queue_id integer, queue_offset bigint, body bytea);
CREATE FUNCTION app.h_collect(m rmq_message[], r rmq_offset_range[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO app.t_h SELECT x.broker, x.queue_id, x.queue_offset, x.body FROM unnest(m) x
$$;
-- A row whose body says "poison" is refused: its message goes to rmq_dead_letter.
CREATE TABLE app.t_dl (broker text, queue_id integer, queue_offset bigint, body bytea,
                       CHECK (position('poison' IN convert_from(body, 'UTF8')) = 0));
});
my $dl_body = q{convert_to(CASE WHEN s % 7 = 0 THEN 'poison ' ELSE 'ok ' END || s || '/' || q, 'UTF8')};
my $poison = q{convert_from(body, 'UTF8') LIKE 'poison%'};

sql("SELECT rmq_create_stream('s_msg', '$T', '$gM', 'app.t_msg', options => '$opts')");
sql("SELECT rmq_create_stream('s_h', '$T', '$gH', 'app.t_h', format => 'handler',
       handler => 'app.h_collect(rmq_message[], rmq_offset_range[])', options => '$opts')");
sql("SELECT rmq_create_stream('s_dl', '$D', '$gD', 'app.t_dl',
       options => '{\"batch_interval\": 200, \"on_error\": \"dead_letter\"}')");
RmqTest::produce($node, $T, per_queue => 25);
RmqTest::produce($node, $D, queues => [ 0, 1 ], per_queue => 20, body => $dl_body);

# --- 0.1.0's catalog, 0.2.0's library ----------------------------------------
RmqTest::wait_caught_up($node, 's_msg', $gM, $T);
RmqTest::wait_caught_up($node, 's_h', $gH, $T);
RmqTest::check_exact($node, table => 'app.t_msg', topic => $T, exp_cols => $RmqTest::all_columns,
	label => 'before the update: s_msg');
RmqTest::check_exact($node, table => 'app.t_h', topic => $T, label => 'before the update: s_h (handler)');
ok(sql("SELECT count(*) FROM rmq_batch WHERE stream = 's_msg'") > 0, 'before the update: batches recorded');

# What this build's library does on 0.1.0's catalog (the server restarted
# with it, ALTER EXTENSION ... UPDATE not yet run): the streams go on and
# write only what 0.1.0's tables have -- dead letters without
# properties_raw, errors and recoveries without the health columns.
ok($node->poll_query_until('postgres', "SELECT count(*) > 0 FROM rmq_dead_letter WHERE stream = 's_dl'"),
	'before the update: s_dl sets its poison messages aside in 0.1.0\'s rmq_dead_letter');
ok($node->poll_query_until('postgres', "SELECT count(*) > 0 FROM app.t_dl"),
	'before the update: s_dl writes its other messages');
{
	my @exits = grep { /rocketmq_stream worker[^:]*: ERROR:  column "(state_since|retrying_since|healthy_since|properties_raw)/ }
	  split /\n/, slurp_file($node->logfile);
	is(scalar(@exits), 0, 'before the update: no worker fails on a column 0.1.0 lacks')
	  or diag(scalar(@exits) . " such errors; first: $exits[0]");
}

# --- the update, while messages keep coming ----------------------------------
my $bg = $node->background_psql('postgres', on_error_stop => 1);
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
my $rows = sql("SELECT count(*) FROM app.t_msg");
ok($node->poll_query_until('postgres', "SELECT count(*) > $rows + 20 FROM app.t_msg"),
	'workers ingest what the producer sends');
my $update_pos = -s $node->logfile;
my $t0 = time;
sql("ALTER EXTENSION rocketmq_stream UPDATE");
note(sprintf('ALTER EXTENSION ... UPDATE took %.2f s', time - $t0));
is(sql("SELECT extversion FROM pg_extension WHERE extname = 'rocketmq_stream'"), '0.2.0', 'updated to 0.2.0');
my $after_update = sql("SELECT count(*) FROM app.t_msg");
ok($node->poll_query_until('postgres', "SELECT count(*) > $after_update FROM app.t_msg"),
	'workers commit after the update while the producer goes on');
$bg->query_safe("SELECT 'producer done'");
$bg->quit;

# --- afterwards: exactly once ------------------------------------------------
RmqTest::wait_caught_up($node, 's_msg', $gM, $T);
RmqTest::wait_caught_up($node, 's_h', $gH, $T);
RmqTest::wait_caught_up($node, 's_dl', $gD, $D);
my $n = 4 * 25 + 400;
RmqTest::check_exact($node, table => 'app.t_msg', topic => $T, group => $gM, expect => $n,
	exp_cols => $RmqTest::all_columns, label => 's_msg across the update');
RmqTest::check_exact($node, table => 'app.t_h', topic => $T, group => $gH, expect => $n,
	label => 's_h (handler) across the update');
RmqTest::check_exact($node, table => 'app.t_dl', topic => $D, group => $gD, filter => "NOT $poison",
	label => 's_dl: every other message in the target');
RmqTest::check_exact($node, topic => $D, filter => $poison, label => 's_dl: every poison message a dead letter',
	table => "(SELECT broker, queue_id, queue_offset, body FROM rmq_dead_letter WHERE stream = 's_dl') d");
is(sql("SELECT count(*) FROM rmq_dead_letter WHERE stream = 's_dl' AND (error NOT LIKE '%t_dl_body_check%' OR policy <> 'dead_letter')"),
	'0', 'each dead letter names the check it failed')
  or diag(sql("SELECT string_agg(DISTINCT policy || ': ' || error, '; ') FROM rmq_dead_letter"));

for my $s (qw(s_msg s_h s_dl))
{
	is(sql(qq{WITH r AS (SELECT r->>'broker' AS broker, (r->>'queue_id')::int AS queue_id, (r->>'from')::bigint AS f,
                               (r->>'until')::bigint AS u
                        FROM rmq_batch b, jsonb_array_elements(b.ranges) r WHERE b.stream = '$s')
             SELECT count(*) FROM (SELECT f, lag(u) OVER (PARTITION BY broker, queue_id ORDER BY f, u) AS pu FROM r) x
             WHERE pu IS NOT NULL AND pu <> f}),
		'0', "$s: its batches' ranges follow each other without gap or overlap, across the update");
}
ok($node->poll_query_until('postgres', "SELECT bool_and(state = 'running' AND last_error IS NULL AND health = 'healthy'
        AND health_since IS NOT NULL) FROM rmq_stream_status WHERE stream IN ('s_msg', 's_h', 's_dl')"),
	'rmq_stream_status after the update: every stream running, healthy, no error');

# What 0.2.0 added works on the upgraded catalog.
sql("CREATE TABLE app.t_new (queue_id integer, queue_offset bigint, body bytea, properties_raw bytea)");
is(sql("SELECT name || ' ' || owner || ' ' || state FROM rmq_create_stream('s_new', '$T', "
	  . "'" . RmqTest::uniq('g008_new') . "', 'app.t_new', options => '$opts')"),
	's_new ' . sql('SELECT current_user') . ' running', 'rmq_create_stream returns the new row');
ok($node->poll_query_until('postgres', "SELECT count(*) = $n FROM app.t_new"), 'a stream created after the update ingests');
is(sql("SELECT count(*) FROM rmq_create_rdd('g', ARRAY[rmq_offset_range('$T', 'broker-a', 0, 0, 5)]) WHERE properties_raw IS NULL"),
	'5', 'rmq_create_rdd has properties_raw');

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC|TRAP:/, 'no backend crashed');
my @errors = grep { /rocketmq_stream (worker|launcher)[^:]*: (ERROR|WARNING)/ } split /\n/, substr($log, $update_pos);
is(scalar(@errors), 0, 'after the update, workers and launcher report no error or warning')
  or diag(join("\n", @errors[0 .. ($#errors > 9 ? 9 : $#errors)]));

# --- the upgraded catalog equals a fresh install -----------------------------
# pg_dump leaves an extension's members to CREATE EXTENSION; in binary-upgrade
# mode (as pg_upgrade uses it) it dumps each member, its ACL, comment and
# membership.  What legitimately differs between two databases is dropped:
#  - \restrict / \unrestrict: a random key per dump;
#  - binary_upgrade_set_next_*: OIDs, relfilenodes and attribute versions
#    this cluster gave the objects;
#  - the extension's config table OIDs in binary_upgrade_create_empty_extension
#    (the tables are compared by name below);
#  - relfrozenxid/relminmxid and the OID of the relation they are set for;
#  - where the sequences stand (setval): data, not catalog.
sub normalise
{
	my ($dump) = @_;
	my @keep;
	for (split /\n/, $dump)
	{
		next if /^\\(un)?restrict /;
		next if /binary_upgrade_set_next_/;
		next if /^SET relfrozenxid = / || /^WHERE oid = '\d+';$/;
		next if /^SELECT pg_catalog\.setval\(/;
		s/'\{[0-9,]+\}'/'{config table OIDs}'/ if /binary_upgrade_create_empty_extension/;
		push @keep, $_;
	}
	return join("\n", @keep) . "\n";
}

sub dump_extension
{
	my ($db) = @_;
	my ($out, $err);
	IPC::Run::run([ 'pg_dump', '--schema-only', '--binary-upgrade', '--exclude-schema=app', '-d', $node->connstr($db) ],
		'>', \$out, '2>', \$err)
	  or die "pg_dump $db: $err";
	return normalise($out);
}

sql("CREATE DATABASE fresh");
$node->safe_psql('fresh', 'CREATE EXTENSION rocketmq_stream');
my ($upgraded, $fresh) = (dump_extension('postgres'), dump_extension('fresh'));
my $members = () = $fresh =~ /^ALTER EXTENSION rocketmq_stream ADD /mg;
cmp_ok($members, '>=', 30, "the dump holds the extension's members ($members)");
my $same = ok($upgraded eq $fresh, 'pg_dump of the upgraded extension equals that of a fresh 0.2.0 install');
unless ($same)
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	PostgreSQL::Test::Utils::append_to_file("$dir/upgraded.sql", $upgraded);
	PostgreSQL::Test::Utils::append_to_file("$dir/fresh.sql", $fresh);
	my ($diff) = PostgreSQL::Test::Utils::run_command([ 'diff', '-u', "$dir/fresh.sql", "$dir/upgraded.sql" ]);
	diag("fresh -> upgraded:\n$diff");
}
my $config = "SELECT array_agg(c::regclass::text || ':' || w ORDER BY c::regclass::text)
              FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(c, w) WHERE e.extname = 'rocketmq_stream'";
is(sql($config), $node->safe_psql('fresh', $config), 'the same tables are marked for pg_dump, with the same conditions');

$node->stop;
done_testing();
