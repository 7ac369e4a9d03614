# Controlling streams, and sharing offsets with user code:
#  - pause (workers stop, nothing more is ingested), resume (from the stored
#    offsets), reset while paused (to explicit offsets) and while running
#    (to a timestamp);
#  - parallelism 2 on 4 queues: two workers, no queue read by both, exact
#    counts; queue_map assigning queues to workers explicitly;
#  - format 'handler': a function keeping totals in the batch's
#    transaction; killed inside a batch, the totals still match exactly;
#  - rmq_commit_offsets from two sessions at once with overlapping ranges:
#    one of them fails, clearly; ranges not starting at the stored offset
#    are refused;
#  - rmq_drop_stream stops the workers (and drop_offsets forgets offsets).
# A control stream (s_ctl) reads the same topic throughout: once it has
# caught up, a paused or dropped stream had every chance to ingest.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RmqTest;
use Time::HiRes qw(usleep);

my $node = RmqTest::stream_node('stream_control');
sub sql { return $node->safe_psql('postgres', $_[0]); }
my $opts = '{"batch_interval": 200, "batch_rows": 30}';

my $C = RmqTest::uniq('t104_control');
my %g = map { $_ => RmqTest::uniq("g104_$_") } qw(ctl pr par qm h cc);
sql("SELECT rmq_create_topic('$C', 4)");
sub target { my ($t) = @_; sql("CREATE TABLE $t (broker text, queue_id integer, queue_offset bigint, body bytea)"); }
target($_) for qw(ctl_t pr_t par_t qm_t);
sql("SELECT rmq_create_stream('s_ctl', '$C', '$g{ctl}', 'ctl_t', options => '$opts')");
sql("SELECT rmq_create_stream('s_pr', '$C', '$g{pr}', 'pr_t', options => '$opts')");
my $n = RmqTest::produce($node, $C, per_queue => 25);
RmqTest::wait_caught_up($node, 's_ctl', $g{ctl}, $C);
RmqTest::wait_caught_up($node, 's_pr', $g{pr}, $C);
RmqTest::check_exact($node, table => 'pr_t', topic => $C, group => $g{pr}, expect => $n, label => 'before pausing');

# --- pause / resume ------------------------------------------------------------
sql("SELECT rmq_pause_stream('s_pr')");
is(sql("SELECT state FROM rmq_stream WHERE name = 's_pr'"), 'paused', 'pause: state paused');
RmqTest::wait_workers($node, 's_pr', 0, 'pause: the worker stops');
$n += RmqTest::produce($node, $C, per_queue => 25);
RmqTest::wait_caught_up($node, 's_ctl', $g{ctl}, $C);
is(sql("SELECT count(*) FROM pr_t"), '100', 'paused: nothing more ingested');
is(sql("SELECT string_agg(next_offset::text, ' ' ORDER BY queue_id) FROM rmq_offset WHERE consumer_group = '$g{pr}'"),
	'25 25 25 25', 'paused: stored offsets unchanged');
is(sql(RmqTest::workers_sql('s_pr')), '0', 'paused: the launcher does not restart the worker');
sql("SELECT rmq_resume_stream('s_pr')");
is(sql("SELECT state FROM rmq_stream WHERE name = 's_pr'"), 'running', 'resume: state running');
RmqTest::wait_caught_up($node, 's_pr', $g{pr}, $C);
RmqTest::check_exact($node, table => 'pr_t', topic => $C, group => $g{pr}, expect => $n, label => 'resumed');

# --- reset ------------------------------------------------------------------
sql("SELECT rmq_pause_stream('s_pr')");
RmqTest::wait_workers($node, 's_pr', 0);
my $gen = sql("SELECT generation FROM rmq_stream WHERE name = 's_pr'");
sql("TRUNCATE pr_t");
sql("SELECT rmq_reset_stream('s_pr', 'offsets',
       start_offsets => '{\"broker-a/0\": 10, \"broker-a/1\": 20, \"broker-a/2\": 30, \"broker-a/3\": 40}')");
is(sql("SELECT count(*) FROM rmq_offset WHERE consumer_group = '$g{pr}'"), '0', 'reset: stored offsets forgotten');
is(sql("SELECT state || ' ' || (generation > $gen) FROM rmq_stream WHERE name = 's_pr'"), 'paused true',
	'reset: a paused stream stays paused, with a new generation');
$n += RmqTest::produce($node, $C, per_queue => 5);    # max 55
RmqTest::wait_caught_up($node, 's_ctl', $g{ctl}, $C);
is(sql("SELECT count(*) FROM pr_t"), '0', 'reset while paused: nothing ingested');
sql("SELECT rmq_resume_stream('s_pr')");
RmqTest::wait_caught_up($node, 's_pr', $g{pr}, $C);
my $from = { 0 => 10, 1 => 20, 2 => 30, 3 => 40 };
RmqTest::check_exact($node, table => 'pr_t', topic => $C, group => $g{pr}, expect => 45 + 35 + 25 + 15,
	from => $from, label => 'reset to explicit offsets');

# While running, to a time after every message so far: only new ones come.
my $ts = sql("SELECT clock_timestamp()");
sql("SELECT rmq_reset_stream('s_pr', 'timestamp', start_time => '$ts')");
is(sql("SELECT state FROM rmq_stream WHERE name = 's_pr'"), 'running', 'reset while running: still running');
ok($node->poll_query_until('postgres', "SELECT clock_timestamp() > '$ts'::timestamptz + interval '20 ms'"),
	'clock past the reset time');
$n += RmqTest::produce($node, $C, per_queue => 5);    # max 60
RmqTest::wait_caught_up($node, 's_pr', $g{pr}, $C);
RmqTest::check_exact($node, table => 'pr_t', topic => $C, group => $g{pr}, expect => 50 + 40 + 30 + 20,
	from => $from, label => 'reset to a timestamp while running: only the new messages added');
sql("SELECT rmq_drop_stream('s_pr')");

# --- parallelism --------------------------------------------------------------
# The batches' ranges: each queue read by one worker only, ranges following
# each other, rows adding up to what the table holds.
sub check_ranges
{
	my ($stream, $table, $label) = @_;
	my $r = "SELECT b.worker, r->>'broker' AS broker, (r->>'queue_id')::int AS queue_id, (r->>'from')::bigint AS f,
                    (r->>'until')::bigint AS u, (r->>'rows')::bigint AS n
             FROM rmq_batch b, jsonb_array_elements(b.ranges) r WHERE b.stream = '$stream'";
	is(sql("SELECT count(*) FROM (SELECT broker, queue_id FROM ($r) r GROUP BY 1, 2 HAVING count(DISTINCT worker) > 1) x"),
		'0', "$label: no queue read by two workers");
	is(sql("SELECT count(*) FROM (SELECT f, lag(u) OVER (PARTITION BY broker, queue_id ORDER BY f, u) AS pu FROM ($r) r) x
            WHERE pu IS NOT NULL AND pu <> f"),
		'0', "$label: each queue's ranges follow each other");
	is(sql("SELECT string_agg(queue_id || ':' || n, ' ' ORDER BY queue_id) FROM (SELECT queue_id, sum(n) AS n FROM ($r) r GROUP BY 1) x"),
		sql("SELECT string_agg(queue_id || ':' || n, ' ' ORDER BY queue_id) FROM (SELECT queue_id, count(*) AS n FROM $table GROUP BY 1) x"),
		"$label: the ranges' rows add up to the table's");
	return sql("SELECT string_agg(queue_id || ':' || w, ' ' ORDER BY queue_id) FROM
                (SELECT queue_id, min(worker) AS w FROM ($r) r GROUP BY 1) x");
}

sql("SELECT rmq_create_stream('s_par', '$C', '$g{par}', 'par_t', parallelism => 2, options => '$opts')");
ok($node->poll_query_until('postgres',
		"SELECT string_agg(application_name, ' ' ORDER BY application_name) FROM pg_stat_activity
         WHERE backend_type = 'rocketmq_stream worker' AND application_name LIKE 'rocketmq_stream s_par/%'",
		'rocketmq_stream s_par/0 rocketmq_stream s_par/1'),
	'parallelism 2: workers s_par/0 and s_par/1');
$n += RmqTest::produce($node, $C, per_queue => 20);
RmqTest::wait_caught_up($node, 's_par', $g{par}, $C);
RmqTest::check_exact($node, table => 'par_t', topic => $C, group => $g{par}, expect => $n, label => 'parallelism 2');
my $assign = check_ranges('s_par', 'par_t', 'parallelism 2');
my %used = map { (split /:/)[1] => 1 } split / /, $assign;
is(join(',', sort keys %used), '0,1', "parallelism 2: both workers read queues ($assign)");

sql("SELECT rmq_create_stream('s_qm', '$C', '$g{qm}', 'qm_t', parallelism => 2,
       queue_map => '{\"broker-a/0\": 1, \"broker-a/1\": 1, \"broker-a/2\": 0, \"broker-a/3\": 1}', options => '$opts')");
$n += RmqTest::produce($node, $C, per_queue => 10);
RmqTest::wait_caught_up($node, 's_qm', $g{qm}, $C);
RmqTest::check_exact($node, table => 'qm_t', topic => $C, group => $g{qm}, expect => $n, label => 'queue_map');
is(check_ranges('s_qm', 'qm_t', 'queue_map'), '0:1 1:1 2:0 3:1', 'queue_map: each queue read by its worker');

# --- rmq_drop_stream stops the workers ----------------------------------------
RmqTest::wait_caught_up($node, 's_par', $g{par}, $C);
sql("SELECT rmq_drop_stream('s_par')");
RmqTest::wait_workers($node, 's_par', 0, 'drop: both workers stop');
is(sql("SELECT count(*) FROM rmq_offset WHERE consumer_group = '$g{par}'"), '4', 'drop: offsets kept by default');
sql("SELECT rmq_drop_stream('s_qm', drop_offsets => true)");
RmqTest::wait_workers($node, 's_qm', 0, 'drop with drop_offsets: workers stop');
is(sql("SELECT count(*) FROM rmq_offset WHERE consumer_group = '$g{qm}'"), '0', 'drop_offsets: offsets forgotten');
my $par_rows = sql("SELECT count(*) FROM par_t");
$n += RmqTest::produce($node, $C, per_queue => 5);
RmqTest::wait_caught_up($node, 's_ctl', $g{ctl}, $C);
is(sql("SELECT count(*) FROM par_t"), $par_rows, 'dropped: nothing more ingested');
is(sql("SELECT count(*) FROM rmq_stream WHERE name IN ('s_par', 's_qm')"), '0', 'dropped: gone from rmq_stream');

# --- format handler ------------------------------------------------------------
sql(q{
CREATE TABLE totals (queue_id integer PRIMARY KEY, n bigint NOT NULL, seq_sum bigint NOT NULL);
CREATE TABLE handler_ranges (topic text, broker text, queue_id integer, from_offset bigint, until_offset bigint);
CREATE TABLE hslow (delay float8 NOT NULL);
INSERT INTO hslow VALUES (0);
CREATE FUNCTION tally(msgs rmq_message[], ranges rmq_offset_range[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE d float8;
BEGIN
    INSERT INTO totals
    SELECT m.queue_id, count(*), sum((convert_from(m.body, 'UTF8')::jsonb->>'seq')::bigint)
    FROM unnest(msgs) m GROUP BY m.queue_id
    ON CONFLICT (queue_id) DO UPDATE SET n = totals.n + excluded.n, seq_sum = totals.seq_sum + excluded.seq_sum;
    INSERT INTO handler_ranges SELECT r.topic, r.broker, r.queue_id, r.from_offset, r.until_offset FROM unnest(ranges) r;
    SELECT delay INTO d FROM hslow;
    IF d > 0 THEN PERFORM pg_sleep(d); END IF;
END $$;
});
sql("SELECT rmq_create_stream('s_h', '$C', '$g{h}', 'totals', format => 'handler',
       handler => 'tally(rmq_message[], rmq_offset_range[])', options => '$opts')");
my $expected_totals = "SELECT string_agg(queue_id || ':' || n || ':' || s, ' ' ORDER BY queue_id) FROM
  (SELECT queue_id, count(*) AS n, sum((convert_from(body, 'UTF8')::jsonb->>'seq')::bigint) AS s
   FROM rmq_create_rdd('rmq_tap_check', (SELECT array_agg(rmq_offset_range('$C', broker, queue_id, min_offset, max_offset))
                                         FROM rmq_queues('$C'))) GROUP BY 1) x";
my $totals = "SELECT string_agg(queue_id || ':' || n || ':' || seq_sum, ' ' ORDER BY queue_id) FROM totals";
RmqTest::wait_caught_up($node, 's_h', $g{h}, $C);
is(sql($totals), sql($expected_totals), 'handler: totals match the topic exactly');

# Kill the worker inside the handler: its batch, totals included, rolls back.
sql("UPDATE hslow SET delay = 0.5");
$n += RmqTest::produce($node, $C, per_queue => 10);
my $pid = RmqTest::poll_value($node, "SELECT pid FROM pg_stat_activity WHERE application_name = 'rocketmq_stream s_h/0'
                                      AND wait_event = 'PgSleep'", 'the handler inside a batch');
is(sql("SELECT pg_terminate_backend($pid)"), 't', 'handler: worker terminated inside a batch');
sql("UPDATE hslow SET delay = 0");
$n += RmqTest::produce($node, $C, per_queue => 5);
RmqTest::wait_caught_up($node, 's_h', $g{h}, $C);
is(sql($totals), sql($expected_totals), 'handler: after the kill, totals still match exactly');
is(sql("SELECT sum(n) FROM totals"), $n, "handler: $n messages counted");
is(sql("SELECT count(*) FROM (SELECT from_offset, lag(until_offset) OVER (PARTITION BY broker, queue_id ORDER BY from_offset, until_offset) AS pu
                              FROM handler_ranges) x WHERE pu IS NOT NULL AND pu <> from_offset")
	  . ' ' . sql("SELECT string_agg(queue_id || ':' || f || '-' || u, ' ' ORDER BY queue_id) FROM
                   (SELECT queue_id, min(from_offset) AS f, max(until_offset) AS u FROM handler_ranges WHERE topic = '$C' GROUP BY 1) x"),
	'0 ' . sql("SELECT string_agg(queue_id || ':' || min_offset || '-' || max_offset, ' ' ORDER BY queue_id) FROM rmq_queues('$C')"),
	'handler: the ranges it was given cover every queue, contiguously');
sql("SELECT rmq_drop_stream('s_h')");

# --- rmq_commit_offsets from two sessions ---------------------------------------
my ($s1, $s2) = map { $node->background_psql('postgres', on_error_stop => 0) } 1 .. 2;
my $pid2 = $s2->query_safe('SELECT pg_backend_pid()');
sub range { my ($f, $u) = @_; return "ARRAY[rmq_offset_range('$C', 'broker-a', 0, $f, $u)]"; }

# Both sessions commit starting at the stored offset (the first commit: no
# row yet, then 10); the second waits for the first and must fail.
for my $case ([ 0, 10, 5, 'first commit of the queue' ], [ 10, 20, 15, 'stored offset 10' ])
{
	my ($f, $u1, $u2, $what) = @$case;
	$s1->query_safe("BEGIN; SELECT rmq_commit_offsets('$g{cc}', " . range($f, $u1) . ")");
	$s2->{stderr} = '';
	$s2->query_until(qr/committing/, "BEGIN;\n\\echo committing\nSELECT rmq_commit_offsets('$g{cc}', " . range($f, $u2) . ");\n");
	ok($node->poll_query_until('postgres', "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid2", 'Lock'),
		"$what: the second session waits for the first");
	$s1->query_safe('COMMIT');
	$s2->query('ROLLBACK');
	my $e = $s2->{stderr};
	like($e, qr/ERROR/, "$what: the second commit fails");
	like($e, qr/\b$u1\b/, "$what: the error gives the stored offset");
	unlike($e, qr/duplicate key|could not serialize|deadlock/, "$what: the error is the offsets' own: $e");
	$s2->{stderr} = '';
	is(sql("SELECT next_offset FROM rmq_offset WHERE consumer_group = '$g{cc}' AND topic = '$C' AND queue_id = 0"), $u1,
		"$what: the first session's offset is stored");
	ok($node->poll_query_until('postgres', "SELECT broker_offset FROM rmq_committed_offsets('$g{cc}', '$C') WHERE queue_id = 0", $u1),
		"$what: and is the broker's");
}
$s1->quit;
$s2->quit;
for my $bad ([ 5, 30, 'overlapping' ], [ 25, 30, 'leaving a gap' ])
{
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT rmq_commit_offsets('$g{cc}', " . range($bad->[0], $bad->[1]) . ")");
	isnt($ret, 0, "a range $bad->[2] the stored offset is refused");
	like($err, qr/\b20\b/, "and the error gives the stored offset: $err");
}
sql("BEGIN; SELECT rmq_commit_offsets('$g{cc}', " . range(20, 30) . "); ROLLBACK;");
is(sql("SELECT next_offset FROM rmq_offset WHERE consumer_group = '$g{cc}' AND queue_id = 0"), '20',
	'a rolled back commit leaves the stored offset');
sql("SELECT rmq_commit_offsets('$g{cc}', " . range(20, 30) . ")");
is(sql("SELECT next_offset FROM rmq_offset WHERE consumer_group = '$g{cc}' AND queue_id = 0"), '30',
	'a range starting at the stored offset is accepted');

# --- synchronous_commit --------------------------------------------------------------
# A trigger on the target records the setting the batch's transaction runs with.
my ($ret, $out, $err) = $node->psql('postgres', "SELECT rmq_create_stream('s_bad', '$C', 'g', 'ctl_t', "
	  . "options => '{\"synchronous_commit\": \"maybe\"}')");
like($err, qr/synchronous_commit must be on, off, local, remote_write or remote_apply/,
	'synchronous_commit: a bad value is refused');
my $gsc = RmqTest::uniq('g104_sc');
sql(RmqTest::message_table('sc_t', 'sc text'));
sql(q{CREATE FUNCTION sc_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.sc := current_setting('synchronous_commit'); RETURN NEW; END $$});
sql("CREATE TRIGGER sc_note BEFORE INSERT ON sc_t FOR EACH ROW EXECUTE FUNCTION sc_note()");
my $SC = RmqTest::uniq('t104_sc');
sql("SELECT rmq_create_topic('$SC', 2)");
# No option: off, as for a subscription's apply worker.
sql("SELECT rmq_create_stream('s_sc', '$SC', '$gsc', 'sc_t', options => '{\"auto_commit\": true}')");
RmqTest::produce($node, $SC, per_queue => 20, queues => [ 0, 1 ]);
RmqTest::wait_caught_up($node, 's_sc', $gsc, $SC);
RmqTest::check_exact($node, table => 'sc_t', topic => $SC, group => $gsc, label => 'synchronous_commit default');
is(sql("SELECT string_agg(DISTINCT sc, ',') FROM sc_t"), 'off', 'synchronous_commit: by default the batches run with off');
is(sql("SHOW synchronous_commit"), 'on', 'synchronous_commit: the server default is untouched');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM rmq_committed_offsets('$gsc', '$SC') "
	  . "WHERE next_offset IS DISTINCT FROM broker_offset"),
	'synchronous_commit off with auto_commit: the broker gets the flushed offsets');
sql("SELECT rmq_alter_stream('s_sc', '{\"synchronous_commit\": \"on\"}')");
RmqTest::produce($node, $SC, per_queue => 10, queues => [ 0, 1 ]);
RmqTest::wait_caught_up($node, 's_sc', $gsc, $SC);
RmqTest::check_exact($node, table => 'sc_t', topic => $SC, group => $gsc, label => 'synchronous_commit on');
is(sql("SELECT sc || ':' || count(*) FROM sc_t WHERE queue_offset >= 20 GROUP BY sc"), 'on:20',
	'synchronous_commit: set to on, the batches run with on');
sql("SELECT rmq_drop_stream('s_sc')");

# Dropped and created again at once under its name, on another topic: the
# old stream's worker must not go on with the old definition (generations
# are never reused; they were, and it did).
{
	my ($RA, $RB) = (RmqTest::uniq('t104_ra'), RmqTest::uniq('t104_rb'));
	sql("SELECT rmq_create_topic('$RA', 1)");
	sql("SELECT rmq_create_topic('$RB', 1)");
	sql(RmqTest::message_table('re_t'));
	my $gr = RmqTest::uniq('g104_re');
	sql("SELECT rmq_create_stream('s_re', '$RA', '$gr', 're_t')");
	RmqTest::produce($node, $RA, per_queue => 5, queues => [0]);
	ok($node->poll_query_until('postgres', "SELECT count(*) = 5 FROM re_t"), 're-create: the first stream ingests');
	sql("SELECT rmq_drop_stream('s_re'); SELECT rmq_create_stream('s_re', '$RB', '$gr', 're_t')");
	RmqTest::produce($node, $RB, per_queue => 5, queues => [0]);
	RmqTest::produce($node, $RA, per_queue => 5, queues => [0]);
	ok($node->poll_query_until('postgres', "SELECT count(*) = 5 FROM re_t WHERE topic = '$RB'"),
		're-create: the new stream reads its own topic');
	RmqTest::wait_caught_up($node, 's_re', $gr, $RB);
	usleep(1_500_000);    # time enough for an old worker to commit another batch
	is(sql("SELECT count(*) FROM re_t WHERE topic = '$RA'"), '5', 're-create: nothing more from the dropped stream\'s topic');
	sql("SELECT rmq_drop_stream('s_re')");
}

RmqTest::wait_caught_up($node, 's_ctl', $g{ctl}, $C);
RmqTest::check_exact($node, table => 'ctl_t', topic => $C, group => $g{ctl}, expect => $n, label => 'the control stream');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC|TRAP:/, 'no backend crashed');
$node->stop;
done_testing();
