# Streams ingest a topic into tables, every message exactly once:
#  - two streams (different groups) on one 4-queue topic, messages produced
#    before and while they run; a target with triggers and an index, and a
#    partitioned target with a unique index; every column type of format
#    'message' equals what rmq_create_rdd reads;
#  - the launcher and the workers in pg_stat_activity, rmq_stream_status;
#  - each start position: earliest, latest, timestamp, explicit offsets, the
#    group's offset on the broker (set by rmq_commit_offsets, and by another
#    stream's auto_commit) and force_specific overriding it, offsets stored
#    in rmq_offset taking precedence over everything;
#  - auto_commit: the broker's committed offsets follow rmq_offset;
#  - a tag filter, with gaps of filtered messages at the end of the queues;
#  - format 'json' into a jsonb body.
# Exactness: every expected message once (count = distinct = expected, and
# the same rows as rmq_create_rdd returns), stored offsets = broker max.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RmqTest;

my $node = RmqTest::stream_node('stream_ingest');
my $opts = '{"batch_interval": 200, "batch_rows": 50}';

sub sql { return $node->safe_psql('postgres', $_[0]); }

# --- two streams, one topic -------------------------------------------------
my $T = RmqTest::uniq('t101_main');
my ($gA, $gB) = (RmqTest::uniq('g101_all'), RmqTest::uniq('g101_part'));
is(sql("SELECT rmq_create_topic('$T', 4)"), '1', 'topic with 4 queues created');
my $produced = RmqTest::produce($node, $T, per_queue => 25);

sql(RmqTest::message_table('t_all', "id bigserial, note text, ingested_at timestamptz NOT NULL DEFAULT now()"));
sql(q{
CREATE INDEX ON t_all (queue_id, queue_offset);
CREATE FUNCTION t_all_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := 'q' || NEW.queue_id || '@' || NEW.queue_offset; RETURN NEW; END $$;
CREATE TRIGGER t_all_before BEFORE INSERT ON t_all FOR EACH ROW EXECUTE FUNCTION t_all_before();
CREATE TABLE t_all_seen (queue_id integer, queue_offset bigint);
CREATE FUNCTION t_all_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO t_all_seen VALUES (NEW.queue_id, NEW.queue_offset); RETURN NULL; END $$;
CREATE TRIGGER t_all_after AFTER INSERT ON t_all FOR EACH ROW EXECUTE FUNCTION t_all_after();

CREATE TABLE t_part (queue_offset bigint, queue_id integer NOT NULL, broker text, body bytea, tags text,
                     got text DEFAULT 'dflt', UNIQUE (broker, queue_id, queue_offset)) PARTITION BY LIST (queue_id);
CREATE TABLE t_part_01 PARTITION OF t_part FOR VALUES IN (0, 1);
CREATE TABLE t_part_23 PARTITION OF t_part FOR VALUES IN (2, 3);
});
sql("SELECT rmq_create_stream('s_all', '$T', '$gA', 't_all', options => '$opts')");
sql("SELECT rmq_create_stream('s_part', '$T', '$gB', 't_part', options => '$opts')");
is(sql("SELECT string_agg(name || ':' || state || ':' || target, ' ' ORDER BY name) FROM rmq_stream"),
	's_all:running:public.t_all s_part:running:public.t_part', 'rmq_stream lists both streams, running');

ok($node->poll_query_until('postgres', "SELECT (SELECT count(*) FROM t_all) > 0 AND (SELECT count(*) FROM t_part) > 0"),
	'both streams ingest');
$produced += RmqTest::produce($node, $T, per_queue => 25);
ok($node->poll_query_until('postgres', "SELECT (SELECT count(*) FROM t_all) >= 150 AND (SELECT count(*) FROM t_part) >= 150"),
	'both streams ingest what was produced while they run');
$produced += RmqTest::produce($node, $T, per_queue => 50);
is($produced, 400, 'produced 400 messages');

RmqTest::wait_caught_up($node, 's_all', $gA, $T);
RmqTest::wait_caught_up($node, 's_part', $gB, $T);
RmqTest::check_exact($node, table => 't_all', topic => $T, group => $gA, expect => 400,
	exp_cols => $RmqTest::all_columns, label => 's_all (every message column)');
RmqTest::check_exact($node, table => 't_part', topic => $T, group => $gB, expect => 400,
	exp_cols => 'broker, queue_id, queue_offset, body, tags', label => 's_part (partitioned target)');

is(sql("SELECT count(*) FILTER (WHERE note = 'q' || queue_id || '\@' || queue_offset) || ' '
        || count(DISTINCT id) || ' ' || count(ingested_at) FROM t_all"),
	'400 400 400', 'BEFORE row trigger fired for every row; serial and now() defaults filled');
is(sql("SELECT count(*) || ' ' || count(DISTINCT (queue_id, queue_offset)) FROM t_all_seen"),
	'400 400', 'AFTER row trigger fired once per row');
is(sql("SELECT (SELECT count(*) FROM t_part_01 WHERE queue_id IN (0, 1)) || ' ' || (SELECT count(*) FROM t_part_01)
        || ' ' || (SELECT count(*) FROM t_part_23 WHERE queue_id IN (2, 3)) || ' ' || (SELECT count(*) FROM t_part_23)
        || ' ' || (SELECT count(*) FROM t_part WHERE got = 'dflt')"),
	'200 200 200 200 400', 'rows routed to their partitions; a column not named like a message field gets its default');
is(sql("SELECT count(*) FROM t_all WHERE topic <> '$T' OR broker <> 'broker-a' OR msg_id IS NULL OR unique_key IS NULL
        OR born_timestamp IS NULL OR store_timestamp IS NULL OR store_host IS NULL OR born_host IS NULL
        OR reconsume_times IS NULL OR properties IS NULL"),
	'0', 'message columns are filled');

is(sql("SELECT sum(rows) FROM rmq_batch WHERE stream = 's_all'"), '400', 'rmq_batch rows of s_all add up to 400');
is(sql(q{WITH r AS (SELECT r->>'broker' AS broker, (r->>'queue_id')::int AS queue_id, (r->>'from')::bigint AS f,
                           (r->>'until')::bigint AS u
                    FROM rmq_batch b, jsonb_array_elements(b.ranges) r WHERE b.stream = 's_all')
         SELECT count(*) FROM (SELECT f, lag(u) OVER (PARTITION BY broker, queue_id ORDER BY f, u) AS pu FROM r) x
         WHERE pu IS NOT NULL AND pu <> f}),
	'0', 'the batches\' ranges of each queue follow each other without gaps or overlaps');

# --- what pg_stat_activity and rmq_stream_status show -----------------------
ok($node->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'rocketmq_stream launcher' AND datname = 'postgres'", '1'),
	'one launcher, in database postgres');
ok($node->poll_query_until('postgres', "SELECT string_agg(application_name, ' ' ORDER BY application_name) FROM pg_stat_activity
        WHERE backend_type = 'rocketmq_stream worker' AND datname = 'postgres'",
		'rocketmq_stream s_all/0 rocketmq_stream s_part/0'),
	'one worker per stream, named stream/index');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 4 AND bool_and(lag = 0 AND next_offset = broker_max_offset AND state = 'running'
                                      AND last_error IS NULL AND topic = '$T' AND consumer_group = '$gA'
                                      AND last_batch_at IS NOT NULL AND messages_per_sec IS NOT NULL)
         FROM rmq_stream_status WHERE stream = 's_all'"),
	'rmq_stream_status: a row per queue, no lag, broker max offsets seen');
is(sql("SELECT string_agg(queue_id || ':' || broker_max_offset, ' ' ORDER BY queue_id) FROM rmq_stream_status WHERE stream = 's_part'"),
	sql("SELECT string_agg(queue_id || ':' || max_offset, ' ' ORDER BY queue_id) FROM rmq_queues('$T')"),
	'rmq_offset.broker_max_offset = the broker\'s max offsets');
# now() in a worker is the time of its batch, not of the worker's start:
# a row's "DEFAULT now()" and last_batch_at come after a mark the client
# takes once the workers have long been running.
my $mark = sql("SELECT now()");
my $late = sql("SELECT rmq_send('$T', convert_to('late', 'UTF8'))");
ok($node->poll_query_until('postgres', "SELECT count(*) FROM t_all WHERE unique_key = '$late'", '1'),
	'a message sent later is ingested');
is(sql("SELECT ingested_at > '$mark' FROM t_all WHERE unique_key = '$late'"), 't',
	'a target column DEFAULT now() holds the time of the batch, not of the worker\'s start');
ok($node->poll_query_until('postgres', "SELECT s.last_batch_at > '$mark' FROM rmq_stream_status s
        JOIN t_all t ON t.queue_id = s.queue_id AND t.unique_key = '$late' WHERE s.stream = 's_all'"),
	'rmq_stream_status.last_batch_at moves with each batch');
sql("SELECT rmq_drop_stream('s_all'); SELECT rmq_drop_stream('s_part')");
RmqTest::wait_workers($node, 's_all', 0, 'dropped streams leave no worker');
RmqTest::wait_workers($node, 's_part', 0);

# --- start positions ---------------------------------------------------------
my $S = RmqTest::uniq('t101_start');
sql("SELECT rmq_create_topic('$S', 4)");
RmqTest::produce($node, $S, per_queue => 10);    # 0..9: before any stream
sub target { my ($t) = @_; sql("CREATE TABLE $t (broker text, queue_id integer, queue_offset bigint, body bytea)"); }

# latest: only what comes after the stream started.  The worker stores the
# position it resolved at once, so a new message is after it once the
# stream's rmq_offset rows exist.
my $gL = RmqTest::uniq('g101_latest');
target('t_latest');
sql("SELECT rmq_create_stream('s_latest', '$S', '$gL', 't_latest', start_from => 'latest', options => '$opts')");
ok($node->poll_query_until('postgres', "SELECT count(*) FROM rmq_offset WHERE consumer_group = '$gL'", '4'),
	'latest: start position stored');
is(sql("SELECT string_agg(queue_id || ':' || next_offset, ' ' ORDER BY queue_id) FROM rmq_offset WHERE consumer_group = '$gL'"),
	'0:10 1:10 2:10 3:10', 'latest: starts at the max offsets');
RmqTest::produce($node, $S, per_queue => 10);    # 10..19
RmqTest::wait_caught_up($node, 's_latest', $gL, $S);
RmqTest::check_exact($node, table => 't_latest', topic => $S, group => $gL, expect => 40,
	from => { map { $_ => 10 } 0 .. 3 }, label => 'latest');
sql("SELECT rmq_drop_stream('s_latest')");

# timestamp: from the first message stored at or after start_time.  Wait
# (without sleeping a fixed time) until the clock is past the last stored
# message, then produce the ones the stream must start at.
my $last = sql("SELECT max(store_timestamp) FROM rmq_create_rdd('rmq_tap_check',
                 (SELECT array_agg(rmq_offset_range('$S', broker, queue_id, min_offset, max_offset)) FROM rmq_queues('$S')))");
ok($node->poll_query_until('postgres', "SELECT clock_timestamp() > '$last'::timestamptz + interval '50 ms'"),
	'clock past the last stored message');
RmqTest::produce($node, $S, per_queue => 5);     # 20..24
my $gT = RmqTest::uniq('g101_ts');
target('t_ts');
sql("SELECT rmq_create_stream('s_ts', '$S', '$gT', 't_ts', start_from => 'timestamp',
       start_time => '$last'::timestamptz + interval '1 ms', options => '$opts')");
RmqTest::produce($node, $S, per_queue => 5);     # 25..29
RmqTest::wait_caught_up($node, 's_ts', $gT, $S);
RmqTest::check_exact($node, table => 't_ts', topic => $S, group => $gT, expect => 40,
	from => { map { $_ => 20 } 0 .. 3 }, label => 'timestamp');
sql("SELECT rmq_drop_stream('s_ts')");

# explicit offsets
my $gO = RmqTest::uniq('g101_offsets');
target('t_off');
sql("SELECT rmq_create_stream('s_off', '$S', '$gO', 't_off', start_from => 'offsets',
       start_offsets => '{\"broker-a/0\": 3, \"broker-a/1\": 29, \"broker-a/2\": 0, \"broker-a/3\": 17}', options => '$opts')");
RmqTest::produce($node, $S, per_queue => 2);     # 30..31
RmqTest::wait_caught_up($node, 's_off', $gO, $S);
RmqTest::check_exact($node, table => 't_off', topic => $S, group => $gO, expect => 29 + 3 + 32 + 15,
	from => { 0 => 3, 1 => 29, 2 => 0, 3 => 17 }, label => 'offsets');
sql("SELECT rmq_drop_stream('s_off')");

# The group's offset on the broker, set through rmq_commit_offsets (which
# also records it in rmq_offset: that copy is deleted so that only the
# broker's remains).
my $gF = RmqTest::uniq('g101_broker');
sql("BEGIN; SELECT rmq_commit_offsets('$gF', ARRAY(SELECT rmq_offset_range('$S', broker, queue_id, 0, 7)
                                                   FROM rmq_queues('$S'))); COMMIT;");
is(sql("SELECT string_agg(queue_id || ':' || next_offset, ' ' ORDER BY queue_id) FROM rmq_offset WHERE consumer_group = '$gF'"),
	'0:7 1:7 2:7 3:7', 'rmq_commit_offsets records the offsets in rmq_offset');
ok($node->poll_query_until('postgres', "SELECT string_agg(queue_id || ':' || broker_offset, ' ' ORDER BY queue_id)
                                        FROM rmq_committed_offsets('$gF', '$S')", '0:7 1:7 2:7 3:7'),
	'and on the broker');
sql("DELETE FROM rmq_offset WHERE consumer_group = '$gF'");
target('t_bo');
sql("SELECT rmq_create_stream('s_bo', '$S', '$gF', 't_bo', start_from => 'earliest', options => '$opts')");
RmqTest::wait_caught_up($node, 's_bo', $gF, $S);
RmqTest::check_exact($node, table => 't_bo', topic => $S, group => $gF, expect => 4 * 25,
	from => { map { $_ => 7 } 0 .. 3 }, label => 'the broker\'s group offset beats start_from');
sql("SELECT rmq_drop_stream('s_bo', drop_offsets => true)");
is(sql("SELECT count(*) FROM rmq_offset WHERE consumer_group = '$gF'"), '0', 'drop_offsets forgets the stored offsets');
is(sql("SELECT string_agg(queue_id || ':' || broker_offset, ' ' ORDER BY queue_id) FROM rmq_committed_offsets('$gF', '$S')"),
	'0:7 1:7 2:7 3:7', 'without auto_commit the broker\'s offsets stay');

# force_specific: the start position wins over the broker's offset.
target('t_fs');
sql("SELECT rmq_create_stream('s_fs', '$S', '$gF', 't_fs', start_from => 'offsets', force_specific => true,
       start_offsets => '{\"broker-a/0\": 2, \"broker-a/1\": 2, \"broker-a/2\": 2, \"broker-a/3\": 2}', options => '$opts')");
RmqTest::wait_caught_up($node, 's_fs', $gF, $S);
RmqTest::check_exact($node, table => 't_fs', topic => $S, group => $gF, expect => 4 * 30,
	from => { map { $_ => 2 } 0 .. 3 }, label => 'force_specific');
sql("SELECT rmq_drop_stream('s_fs')");

# Offsets stored in rmq_offset beat both the broker's and start_from.
target('t_keep');
my $max = RmqTest::max_offsets($node, $S);
sql("SELECT rmq_create_stream('s_keep', '$S', '$gF', 't_keep', start_from => 'earliest', force_specific => true,
       options => '$opts')");
RmqTest::produce($node, $S, per_queue => 3);     # 32..34
RmqTest::wait_caught_up($node, 's_keep', $gF, $S);
RmqTest::check_exact($node, table => 't_keep', topic => $S, group => $gF, expect => 12, from => $max,
	label => 'stored offsets beat start_from and force_specific');
sql("SELECT rmq_drop_stream('s_keep', drop_offsets => true)");

# auto_commit: after each batch the broker gets the offsets rmq_offset has.
my $gC = RmqTest::uniq('g101_auto');
my $same_as_broker = "SELECT count(*) = 4 FROM rmq_committed_offsets('$gC', '$S') c JOIN rmq_offset o
                        ON o.consumer_group = '$gC' AND o.topic = '$S' AND o.broker = c.broker AND o.queue_id = c.queue_id
                      WHERE c.broker_offset = o.next_offset";
target('t_ac');
sql("SELECT rmq_create_stream('s_ac', '$S', '$gC', 't_ac',
       options => '{\"batch_interval\": 200, \"batch_rows\": 50, \"auto_commit\": true}')");
RmqTest::wait_caught_up($node, 's_ac', $gC, $S);
ok($node->poll_query_until('postgres', $same_as_broker), 'auto_commit: rmq_committed_offsets = rmq_offset');
RmqTest::produce($node, $S, per_queue => 4);     # 35..38
RmqTest::wait_caught_up($node, 's_ac', $gC, $S);
ok($node->poll_query_until('postgres', $same_as_broker), 'auto_commit: and again after more messages');
RmqTest::check_exact($node, table => 't_ac', topic => $S, group => $gC, expect => 4 * 39, label => 'auto_commit');
# A new stream of the group, its rmq_offset rows gone, starts where the
# broker's copy says.
sql("SELECT rmq_drop_stream('s_ac', drop_offsets => true)");
RmqTest::wait_workers($node, 's_ac', 0);
$max = RmqTest::max_offsets($node, $S);
target('t_ac2');
sql("SELECT rmq_create_stream('s_ac2', '$S', '$gC', 't_ac2', options => '$opts')");
RmqTest::produce($node, $S, per_queue => 4);     # 39..42
RmqTest::wait_caught_up($node, 's_ac2', $gC, $S);
RmqTest::check_exact($node, table => 't_ac2', topic => $S, group => $gC, expect => 16, from => $max,
	label => 'start at the offsets another stream auto-committed');
sql("SELECT rmq_drop_stream('s_ac2')");

# --- tag filter with gaps ----------------------------------------------------
my $G = RmqTest::uniq('t101_tags');
my $gG = RmqTest::uniq('g101_tags');
sql("SELECT rmq_create_topic('$G', 4)");
my $wanted = 0;
for my $part ([ 'TagA', 3 ], [ 'TagC', 2 ], [ 'TagB', 3 ], [ 'TagC', 4 ], [ 'TagA', 1 ], [ 'TagC', 3 ])
{
	my $n = RmqTest::produce($node, $G, per_queue => $part->[1], tags => $part->[0]);
	$wanted += $n unless $part->[0] eq 'TagC';
}
sql(RmqTest::message_table('t_tag'));
sql("SELECT rmq_create_stream('s_tag', '$G', '$gG', 't_tag',
       options => '{\"batch_interval\": 200, \"tag_filter\": \"TagA || TagB\"}')");
RmqTest::wait_caught_up($node, 's_tag', $gG, $G);
RmqTest::check_exact($node, table => 't_tag', topic => $G, group => $gG, expect => $wanted,
	exp_cols => $RmqTest::all_columns, filter => "tags IN ('TagA', 'TagB')", label => 'tag filter');
# Only filtered messages arrive: the offsets still move past them.
RmqTest::produce($node, $G, per_queue => 5, tags => 'TagC');
RmqTest::wait_caught_up($node, 's_tag', $gG, $G);
$wanted += RmqTest::produce($node, $G, per_queue => 2, tags => 'TagB');
RmqTest::wait_caught_up($node, 's_tag', $gG, $G);
RmqTest::check_exact($node, table => 't_tag', topic => $G, group => $gG, expect => $wanted,
	exp_cols => $RmqTest::all_columns, filter => "tags IN ('TagA', 'TagB')", label => 'tag filter, after a gap');
sql("SELECT rmq_drop_stream('s_tag')");

# --- format json ------------------------------------------------------------
my $J = RmqTest::uniq('t101_json');
my $gJ = RmqTest::uniq('g101_json');
sql("SELECT rmq_create_topic('$J', 2)");
my $jbody = q{convert_to(json_build_object('seq', s, 'q', q, 'name', 'no ' || s || ' "quoted" \\ x',
                                           'list', json_build_array(s, null, true, 1.5e3))::text, 'UTF8')};
my $nj = RmqTest::produce($node, $J, queues => [ 0, 1 ], per_queue => 30, body => $jbody);
sql("CREATE TABLE t_json (broker text, queue_id integer, queue_offset bigint, body jsonb, tags text,
                          ingested boolean DEFAULT true)");
sql("SELECT rmq_create_stream('s_json', '$J', '$gJ', 't_json', format => 'json', options => '$opts')");
$nj += RmqTest::produce($node, $J, queues => [ 0, 1 ], per_queue => 10, body => $jbody);
RmqTest::wait_caught_up($node, 's_json', $gJ, $J);
RmqTest::check_exact($node, table => 't_json', topic => $J, group => $gJ, expect => $nj,
	exp_cols => q{broker, queue_id, queue_offset, convert_from(body, 'UTF8')::jsonb AS body, tags},
	got_cols => 'broker, queue_id, queue_offset, body, tags', label => 'json');
is(sql("SELECT count(*) || ' ' || sum((body->>'seq')::int) || ' ' || count(*) FILTER (WHERE body->'list'->>2 = 'true'
        AND jsonb_typeof(body) = 'object' AND body->>'name' = 'no ' || (body->>'seq') || ' \"quoted\" \\ x' AND ingested) FROM t_json"),
	"$nj " . ($nj * ($nj + 1) / 2) . " $nj", 'json bodies are jsonb values');

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC|TRAP:/, 'no backend crashed');
# Nothing here should go wrong: a healthy broker, tables that accept every row.
my @errors = grep { /rocketmq_stream (worker|launcher)[^:]*: (ERROR|WARNING)/ } split /\n/, $log;
is(scalar(@errors), 0, 'workers and launcher report no error or warning') or diag(join("\n", @errors[0 .. ($#errors > 9 ? 9 : $#errors)]));
$node->stop;
done_testing();
