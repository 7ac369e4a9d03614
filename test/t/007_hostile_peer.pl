# A broken or hostile name server or broker must never crash PostgreSQL or
# blow up its memory (issue #9).  test/fake/fake_peer.py plays both, answers
# plausibly and misbehaves in one chosen way; every SQL function, and a
# stream, is driven against it.  Per case, in a fresh session (so VmHWM is
# that call's peak): (a) the call ends as expected (a clean ERROR, or success
# where success is right) within its time limit, (b) the postmaster did not
# restart and the session still answers, (c) the backend's VmHWM minus an
# idle session's stays under MEM_BOUND_MB.  Every case prints one report
# line (diag).  HOSTILE_ONLY=regex runs only the cases whose label matches;
# HOSTILE_PORT (default 41100) and the next port are the fake's.
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

# Must equal the per-backend memory cap the README documents.
use constant MEM_BOUND_MB => 256;
use constant REQUEST_TIMEOUT_MS => 2000;
use constant PULL_TIMEOUT_MS => 1000;
# Over the extension's own deadline: psql round trips, and scheduling on a
# loaded 2-core machine.
use constant SLACK_MS => 1500;
# rmq_pull.c's SUSPEND_GRACE_MS: a long poll may be held suspend +
# request_timeout + this before the client gives up.
use constant SUSPEND_GRACE_MS => 6000;
# Calls that may legitimately succeed on a big route (thousands of queues,
# one RPC each) get this long.
use constant BIG_LIMIT_MS => 60000;
# Not a bound: where the harness kills the peer so that a leak cannot take
# the machine down.  A case that gets there has already failed.
use constant SAFETY_MB => 1536;
use constant STREAM_WATCH_S => 10;

my $ns = "127.0.0.1:$HostilePeer::ns_port";
my $only = $ENV{HOSTILE_ONLY};
my $node = RmqTest::stream_node('hostile', conf => qq{
rocketmq_stream.namesrv_addr = '$ns'
rocketmq_stream.request_timeout = @{[REQUEST_TIMEOUT_MS]}
rocketmq_stream.pull_timeout = @{[PULL_TIMEOUT_MS]}
# As in production: a crashed backend makes the postmaster reinitialize,
# which is what the issue saw and what this test must notice.
restart_after_crash = on
log_statement = none
});
$HostilePeer::fake_log = "$PostgreSQL::Test::Utils::tmp_check/fake_peer.log";

my $pm_start = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $sentinel = HostilePeer::open_session($node);

# Baseline: the peak of a fresh idle session.
my $idle = HostilePeer::open_session($node);
my $base_kb = HostilePeer::vm_kb($idle->{pid}, 'VmHWM');
HostilePeer::close_session($idle);
diag(sprintf('baseline VmHWM of an idle session: %.1f MB; bound on the delta: %d MB',
		$base_kb / 1024, MEM_BOUND_MB));

my @report;

sub first_error
{
	my ($err) = @_;
	return $1 if $err =~ /^((?:ERROR|FATAL|PANIC):.*)$/m;
	return $1 if $err =~ /^(.*(?:server closed|connection to server).*)$/m;
	return '';
}

# Did the server crash or restart since log offset POS?  Also waits for it
# and re-opens the sentinel when it did, so the next case runs normally.
# pg_postmaster_start_time() alone would not do: a crash-restart
# (restart_after_crash) keeps it; the log and the sentinel session, which
# every crash-restart kills, do not miss one.
sub check_restart
{
	my ($pos) = @_;
	my @why = HostilePeer::crash_lines($node, $pos);
	my $r = HostilePeer::run_sql($sentinel, 'SELECT pg_backend_pid()', limit => 10);
	push @why, 'the sentinel session was lost'
	  unless $r->{done} && $r->{out} eq ($sentinel->{pid} // '');
	if (@why)
	{
		HostilePeer::ensure_up($node) or BAIL_OUT('server does not come back');
		HostilePeer::close_session($sentinel);
		$sentinel = HostilePeer::open_session($node);
	}
	my $now = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
	push @why, "postmaster started anew at $now" if $now ne $pm_start;
	$pm_start = $now;
	return join('; ', @why);
}

# Escalation for a call past its limit: cancel, then kill the peer, then
# terminate; false (give up) after that.
sub escalate
{
	my ($c, $pid, $over) = @_;
	my $steps = $c->{steps} //= [];
	if ($over >= 0 && !$steps->[0]++)
	{
		$node->psql('postgres', "SELECT pg_cancel_backend($pid)");
		$c->{intervened} .= 'cancelled at limit+10s; ';
	}
	if ($over >= 3 && !$steps->[1]++)
	{
		HostilePeer::stop_fake();
		$c->{intervened} .= 'peer killed; ';
	}
	if ($over >= 6 && !$steps->[2]++)
	{
		$node->psql('postgres', "SELECT pg_terminate_backend($pid)");
		$c->{intervened} .= 'terminated; ';
	}
	return $over < 12;
}

my %sql = (
	queues => "SELECT count(*) || ' rows, ' || count(DISTINCT (broker, queue_id)) || ' distinct' FROM rmq_queues('ht')",
	rdd => "SELECT count(*) FROM rmq_create_rdd('hg', ARRAY[rmq_offset_range('ht', 'broker-a', 0, 0, 8)])",
	offset_for_time => "SELECT rmq_offset_for_time('ht', 'broker-a', 0, now() - interval '30 minutes')",
	send => "SELECT rmq_send('ht', 'hello')",
	send_batch => "SELECT cardinality(rmq_send_batch('ht', ARRAY['a', 'b']::bytea[]))",
	committed_offsets => "SELECT count(*) || ' rows, ' || count(DISTINCT (broker, queue_id)) || ' distinct' FROM rmq_committed_offsets('hg', 'ht')",
	commit_offsets => "SELECT rmq_commit_offsets('hg_%d', ARRAY[rmq_offset_range('ht', 'broker-a', 0, 0, 1)])",
	create_topic => "SELECT rmq_create_topic('ht', 4)",
);
# What a sane peer gives (mode good).
my %good_out = (
	queues => qr/^4 rows, 4 distinct$/, rdd => qr/^8$/, offset_for_time => qr/^16$/,
	send => qr/^[0-9A-F]{32}$/, send_batch => qr/^2$/, committed_offsets => qr/^4 rows, 4 distinct$/,
	commit_offsets => qr/^$/, create_topic => qr/^1$/);

# One case: mode (misbehaving on request code `on`), a call, and what must
# happen: error | ok | any (success or a clean error).
my $ncase = 0;
sub run_case
{
	my (%c) = @_;
	my $label = $c{mode} . ($c{tag} // '') . ($c{on} ? "\@$c{on}" : '') . " $c{call}";
	return if defined $only && $label !~ /$only/;
	$ncase++;
	my $limit = $c{limit_ms} // (REQUEST_TIMEOUT_MS + SLACK_MS);
	HostilePeer::start_fake($c{mode}, $c{on}, $label, @{ $c{fake_args} // [] });
	my $pos = -s $node->logfile;
	my $s = HostilePeer::open_session($node);
	my $pid = $s->{pid} or BAIL_OUT("no session for $label");
	my $capped = 0;
	my $r = HostilePeer::run_sql($s, sprintf($sql{ $c{call} }, $ncase),
		limit => $limit / 1000 + 10,
		watch => $pid,
		on_rss => sub {
			return if $capped || $_[0] < SAFETY_MB * 1024;
			$capped = 1;
			HostilePeer::stop_fake();
			$c{intervened} .= sprintf('peer killed at the %d MB safety cap; ', SAFETY_MB);
		},
		on_overtime => sub { escalate(\%c, $pid, $_[0] - $limit / 1000 - 10) });
	my $hwm = HostilePeer::vm_kb($pid, 'VmHWM');
	my $hwm_note = defined $hwm ? '' : ' (backend gone: peak RSS seen)';
	$hwm //= $r->{peak_kb};
	# Alive: pg_stat_activity lists the backend idle, and it answers.
	my $listed = HostilePeer::run_sql($sentinel, "SELECT state FROM pg_stat_activity WHERE pid = $pid", limit => 10);
	my $alive = HostilePeer::run_sql($s, "SELECT 'alive'", limit => 10);
	HostilePeer::close_session($s);
	HostilePeer::stop_fake();
	my $restart = check_restart($pos);

	my $err = first_error($r->{err});
	my $clean_error = $err =~ /^ERROR:/ && $r->{err} !~ /server closed|connection to server|terminating connection/;
	my $dup = $r->{out} =~ /^(\d+) rows, (\d+) distinct$/ && $1 != $2;
	my $in_time = $r->{done} && !$c{intervened} && $r->{dur} * 1000 <= $limit;
	my $outcome =
	    !$r->{done} ? 'no answer'
	  : $clean_error ? 'error'
	  : $err ne '' ? 'broken'
	  : $dup ? 'wrong success (duplicate queues)'
	  : $c{expect_out} && $r->{out} !~ $c{expect_out} ? 'wrong success (unexpected output)'
	  : 'ok';
	my $want_ok = $c{expect} eq 'ok' ? $outcome eq 'ok'
	  : $c{expect} eq 'error' ? $outcome eq 'error'
	  : $outcome eq 'ok' || $outcome eq 'error';
	my $delta_mb = ($hwm - $base_kb) / 1024;
	my $pass_a = $in_time && $want_ok;
	my $pass_b = !$restart && $listed->{out} eq 'idle' && $alive->{done} && $alive->{out} eq 'alive';
	my $pass_c = $delta_mb < MEM_BOUND_MB;

	my @why;
	push @why, 'a clean error was expected' if $r->{done} && !$want_ok && $c{expect} eq 'error';
	push @why, 'success was expected' if $r->{done} && !$want_ok && $c{expect} eq 'ok';
	push @why, 'over the time limit' if $r->{done} && $r->{dur} * 1000 > $limit;
	push @why, "harness: " . ($c{intervened} =~ s/; $//r) if $c{intervened};
	push @why, "restart: $restart" if $restart;
	my $line = sprintf('%-4s %-42s %6.2fs/%4.1fs  dHWM %7.1f MB%s  restart %-3s %s%s',
		($pass_a && $pass_b && $pass_c ? 'pass' : 'FAIL'), $label, $r->{dur}, $limit / 1000,
		$delta_mb, $hwm_note, ($restart ? 'YES' : 'no'),
		($outcome eq 'ok' ? "ok: $r->{out}" : $outcome eq 'error' ? $err
			: $outcome =~ /^wrong/ ? "$outcome: $r->{out}" : "$outcome: $err"),
		(@why ? '  [' . join('; ', @why) . ']' : ''));
	$line =~ s/\n/ /g;
	push @report, $line;
	diag($line);
	ok($pass_a, "$label: " . ($c{expect} eq 'any' ? 'success or a clean error' : $c{expect} eq 'ok' ? 'succeeds' : 'a clean error')
		  . " within $limit ms");
	ok($pass_b, "$label: no restart, the session still answers");
	ok($pass_c, "$label: VmHWM delta under " . MEM_BOUND_MB . ' MB');
	return;
}

# --- a sane peer: the harness itself works --------------------------------
for my $call (sort keys %sql)
{
	run_case(mode => 'good', call => $call, expect => 'ok', expect_out => $good_out{$call},
		limit_ms => ($call eq 'rdd' ? PULL_TIMEOUT_MS : 0) + REQUEST_TIMEOUT_MS + SLACK_MS);
}

# --- routes ---------------------------------------------------------------
# A route whose queues cannot even be counted in an int (overflow_route) is
# hostile as a whole: every call must refuse it, also those that would only
# use its first queue.  route_to_self, route_port_0 and garbage_route are
# clean errors too, except that route_to_self and route_port_0 reach
# rmq_commit_offsets only after its transaction committed, where a failure
# is a WARNING by design.  many_queues may succeed, within BIG_LIMIT_MS and
# without listing a queue twice; a route naming a broker twice is refused.
for my $mode (qw(overflow_route many_queues duplicate_brokers route_to_self route_port_0 garbage_route))
{
	for my $call (sort keys %sql)
	{
		my $expect = $mode eq 'many_queues' ? 'any'
		  : $call eq 'commit_offsets' && $mode =~ /^route_(to_self|port_0)$/ ? 'any'
		  : 'error';
		my $limit = $expect eq 'any' ? BIG_LIMIT_MS
		  : REQUEST_TIMEOUT_MS + SLACK_MS + ($call eq 'rdd' ? PULL_TIMEOUT_MS + SUSPEND_GRACE_MS : 0);
		run_case(mode => $mode, call => $call, expect => $expect, limit_ms => $limit);
	}
}

# --- frames -----------------------------------------------------------------
# Each mode against the request of each call that it can spoil: the name
# server (105, 106) and each broker request.  rmq_commit_offsets talks to
# the broker after its transaction committed: it must succeed with a WARNING.
my @targets = (
	[ queues => 105 ], [ queues => 30 ], [ rdd => 11 ], [ offset_for_time => 29 ],
	[ send => 310 ], [ send_batch => 320 ], [ committed_offsets => 14 ],
	[ commit_offsets => 15 ], [ create_topic => 106 ], [ create_topic => 17 ]);
for my $mode (qw(silent trickle truncated_frame reset_mid_frame length_2gib header_past_frame
	garbage_json huge_json_header answer_other_request foreign_opaque_flood oneway_flood))
{
	for my $t (@targets)
	{
		my ($call, $on) = @$t;
		my $limit = REQUEST_TIMEOUT_MS + SLACK_MS
		  + ($on == 11 ? PULL_TIMEOUT_MS + SUSPEND_GRACE_MS : 0);
		run_case(mode => $mode, on => $on, call => $call, limit_ms => $limit,
			expect => $call eq 'commit_offsets' ? 'ok' : 'error');
	}
}
# Zip bombs at the per-body limit: five overrun the per-answer budget (an
# error), four fill it exactly (success is legitimate, but memory must stay
# under the bound all the same).
run_case(mode => 'bomb_answer', tag => '/5', on => 11, call => 'rdd', expect => 'error',
	fake_args => [ '--bomb-records', 5 ],
	limit_ms => REQUEST_TIMEOUT_MS + SLACK_MS + PULL_TIMEOUT_MS + SUSPEND_GRACE_MS);
run_case(mode => 'bomb_answer', tag => '/4', on => 11, call => 'rdd', expect => 'any',
	fake_args => [ '--bomb-records', 4 ],
	limit_ms => REQUEST_TIMEOUT_MS + SLACK_MS + PULL_TIMEOUT_MS + SUSPEND_GRACE_MS);

# --- streams ----------------------------------------------------------------
sub workers_pids
{
	my ($name) = @_;
	my ($ret, $out) = $node->psql('postgres', "SELECT pid FROM pg_stat_activity WHERE "
		  . "backend_type = 'rocketmq_stream worker' AND application_name LIKE 'rocketmq_stream $name/%'");
	return $ret == 0 ? grep { /^\d+$/ } split /\n/, $out : ();
}

# Query that may meet a server in crash recovery: retried for a while.
sub query_retry
{
	my ($q) = @_;
	for (1 .. 100)
	{
		my ($ret, $out) = $node->psql('postgres', $q);
		return $out if $ret == 0;
		usleep(300_000);
	}
	return '(could not query)';
}

# A stream against the peer for STREAM_WATCH_S: the postmaster must not
# restart, its workers' VmHWM (minus the idle baseline) stays under the
# bound, and rmq_stream.last_error gives the reason.  With the good peer,
# and one that lists its broker twice, every message arrives exactly once.
sub stream_case
{
	my ($mode, $on) = @_;
	my $label = "stream $mode" . ($on ? "\@$on" : '');
	return if defined $only && $label !~ /$only/;
	my ($name, $table) = ("hs_$mode", "hs_${mode}_t");
	HostilePeer::start_fake($mode, $on, $label);
	my $pos = -s $node->logfile;
	$node->safe_psql('postgres', "CREATE TABLE $table (queue_id integer, queue_offset bigint, body bytea)");
	$node->safe_psql('postgres', "SELECT rmq_create_stream('$name', 'ht', 'hsg_$mode', '$table', "
		  . "options => '{\"batch_interval\": 500}')");
	my (%hwm, @pids, $capped, $intervened);
	my ($t0, $listed) = (time, 0);
	while (time - $t0 < STREAM_WATCH_S)
	{
		if (time - $listed > 1)
		{
			my %seen = map { $_ => 1 } @pids, workers_pids($name);
			@pids = keys %seen;
			$listed = time;
		}
		for my $pid (@pids)
		{
			my $kb = HostilePeer::vm_kb($pid, 'VmHWM') // next;
			$hwm{$pid} = $kb;
			if (!$capped && (HostilePeer::vm_kb($pid, 'VmRSS') // 0) > SAFETY_MB * 1024)
			{
				$capped = 1;
				HostilePeer::stop_fake();
				$intervened = sprintf('peer killed at the %d MB safety cap', SAFETY_MB);
			}
		}
		usleep(50_000);
	}
	my $status = query_retry("SELECT state || ', last_error: ' || coalesce(last_error, '(none)') "
		  . "FROM rmq_stream WHERE name = '$name'");
	my $rows = query_retry("SELECT count(*) || '/' || count(DISTINCT (queue_id, queue_offset)) FROM $table");
	# The peer goes first, so that a crashing worker cannot crash again.
	HostilePeer::stop_fake();
	query_retry("SELECT rmq_drop_stream('$name', true)");
	$node->poll_query_until('postgres', RmqTest::workers_sql($name), 0);
	my $restart = check_restart($pos);
	my @crashes = grep { /terminated by signal/ } HostilePeer::crash_lines($node, $pos);
	my ($peak) = sort { $b <=> $a } values %hwm;
	my $delta_mb = (($peak // 0) - $base_kb) / 1024;
	my $sane = $mode eq 'good';
	my $reason_ok = $sane ? $rows eq '64/64' : $status =~ /last_error: (?!\(none\))\S/;
	my $pass = !$restart && $delta_mb < MEM_BOUND_MB && $reason_ok && !$intervened;
	my $line = sprintf('%-4s %-40s %d s, %d worker pid(s), peak dHWM %7.1f MB, %d crash(es), %s rows/distinct, %s%s',
		$pass ? 'pass' : 'FAIL', $label, STREAM_WATCH_S, scalar(keys %hwm), $delta_mb,
		scalar(@crashes), $rows, $status, $intervened ? "  [harness: $intervened]" : '');
	push @report, $line;
	diag($line);
	ok(!$restart, "$label: the postmaster did not restart") or diag($restart);
	ok($delta_mb < MEM_BOUND_MB && !$intervened, "$label: workers' VmHWM delta under " . MEM_BOUND_MB . ' MB');
	ok($reason_ok, $sane ? "$label: all 64 messages arrive, each once" : "$label: last_error says why");
	return;
}

stream_case('good');
stream_case('duplicate_brokers');
stream_case('overflow_route');
stream_case('oneway_flood', 11);
stream_case('foreign_opaque_flood', 11);
stream_case('bomb_answer', 11);

# A start time no broker can look up is refused up front: accepted, the
# worker fails every second while the stream shows running, last_error empty.
if (!defined $only || 'stream start_time infinity' =~ /$only/)
{
	HostilePeer::start_fake('good', undef, 'stream start_time infinity');
	$node->safe_psql('postgres', 'CREATE TABLE hs_inf_t (body bytea)');
	for my $t ('infinity', '-infinity')
	{
		my $pos = -s $node->logfile;
		my ($ret, $out, $err) = $node->psql('postgres', "SELECT rmq_create_stream('hs_inf', 'ht', 'hsg_inf', "
			  . "'hs_inf_t', start_from => 'timestamp', start_time => '$t')");
		my $line = "start_time => '$t': " . ($ret != 0 ? 'refused: ' . first_error($err) : 'accepted');
		if ($ret == 0)
		{
			sleep 4;
			my $exits = () = slurp_file($node->logfile, $pos) =~ /rocketmq_stream worker.*exited with exit code/g;
			$line .= sprintf('; after 4 s: %s; %d worker exit(s) in the log',
				query_retry("SELECT state || ', last_error: ' || coalesce(last_error, '(none)') FROM rmq_stream WHERE name = 'hs_inf'"),
				$exits);
			query_retry("SELECT rmq_drop_stream('hs_inf', true)");
			$node->poll_query_until('postgres', RmqTest::workers_sql('hs_inf'), 0);
		}
		push @report, ($ret != 0 ? 'pass ' : 'FAIL ') . $line;
		diag($line);
		ok($ret != 0 && $err =~ /ERROR/, "rmq_create_stream refuses start_time => '$t'");
	}
	HostilePeer::stop_fake();
}

# --- pg_cancel_backend on a call stuck on a silent or trickling peer --------
sub cancel_case
{
	my ($mode, $on, $sql, $accept) = @_;
	$accept //= qr/canceling statement due to user request/;
	my $label = "cancel $mode\@$on";
	return if defined $only && $label !~ /$only/;
	HostilePeer::start_fake($mode, $on, $label);
	my $pos = -s $node->logfile;
	my $s = HostilePeer::open_session($node);
	my $pid = $s->{pid};
	my $t_cancel;
	# Stuck for 1.5 s, then cancelled; given up 10 s after the cancel.
	my $r = HostilePeer::run_sql($s, $sql, limit => 1.5, on_overtime => sub {
			if (!$t_cancel)
			{
				$t_cancel = time;
				HostilePeer::run_sql($sentinel, "SELECT pg_cancel_backend($pid)", limit => 5);
			}
			return time - $t_cancel < 10;
		});
	my $after = $t_cancel ? time - $t_cancel : 0;
	# Still stuck: the peer goes, so that the session can be asked whether
	# it survived.
	HostilePeer::stop_fake() unless $r->{done};
	my $alive = HostilePeer::run_sql($s, "SELECT 'alive'", limit => 10);
	HostilePeer::close_session($s);
	HostilePeer::stop_fake();
	my $restart = check_restart($pos);
	my $cancelled = $r->{done} && $t_cancel && $r->{err} =~ $accept;
	my $pass = $cancelled && $after < 1.0 && !$restart && $alive->{out} eq 'alive';
	my $line = sprintf('%-4s %-40s %s', $pass ? 'pass' : 'FAIL', $label,
		!$t_cancel ? 'ended before the cancel: ' . (first_error($r->{err}) || $r->{out})
		: sprintf('%.3f s after pg_cancel_backend: %s', $after,
			$r->{done} ? first_error($r->{err}) || ($r->{err} =~ /^(WARNING:.*)$/m ? $1 : "ok: $r->{out}")
			: 'still running, given up'));
	push @report, $line;
	diag($line);
	ok($cancelled && $after < 1.0, "$label: pg_cancel_backend stops the call within 1 s");
	ok(!$restart && $alive->{out} eq 'alive', "$label: no restart, the session still answers");
	return;
}

my $long = '{"request_timeout": 60000, "pull_timeout": 60000}';
for my $mode (qw(silent trickle))
{
	cancel_case($mode, 105, "SELECT count(*) FROM rmq_queues('ht', '$long')");
	cancel_case($mode, 11, "SELECT count(*) FROM rmq_create_rdd('hg', "
		  . "ARRAY[rmq_offset_range('ht', 'broker-a', 0, 0, 8)], '$long')");
	cancel_case($mode, 310, "SELECT rmq_send('ht', 'hello', options => '$long')");
	# Its broker call comes after COMMIT, where an error cannot undo
	# anything: the cancel may only cut it short, with a WARNING.
	cancel_case($mode, 15, "SELECT rmq_commit_offsets('hg_cancel_$mode', "
		  . "ARRAY[rmq_offset_range('ht', 'broker-a', 0, 0, 1)], '$long')",
		qr/canceling statement due to user request|WARNING/);
}

diag("\n=== report ===\n" . join("\n", @report) . "\n") if @report;

done_testing();
