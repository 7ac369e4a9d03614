# Helpers for 007_hostile_peer.pl: the fake peer (test/fake/fake_peer.py),
# psql sessions driven without blocking (so a call can be timed, watched for
# memory and interrupted), /proc memory readings and server health.
package HostilePeer;

use strict;
use warnings;
use IPC::Run;
use POSIX ();
use Time::HiRes qw(time usleep);
use Test::More;
use FindBin;

# The name server's port; the broker listens on the next one.
our $ns_port = $ENV{HOSTILE_PORT} // 41100;
our $fake_script = "$FindBin::Bin/../fake/fake_peer.py";
our $fake_log;
my $fake_pid;

# Start the fake peer in MODE (misbehaving on request codes ON, if given,
# with more arguments EXTRA); any previous one is stopped first.
sub start_fake
{
	my ($mode, $on, $label, @extra) = @_;
	stop_fake();
	my $ready = "$PostgreSQL::Test::Utils::tmp_check/fake_peer.ready";
	unlink $ready;
	if (open(my $fh, '>>', $fake_log))
	{
		print $fh "----- $label\n";
		close $fh;
	}
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		exec('python3', $fake_script, '--port', $ns_port, '--mode', $mode,
			($on ? ('--on', $on) : ()), '--ready-file', $ready, '--log', $fake_log, @extra)
		  or POSIX::_exit(127);
	}
	$fake_pid = $pid;
	my $deadline = time + 20;
	usleep(20_000) until -e $ready || time > $deadline;
	die "fake peer ($mode) did not start" unless -e $ready;
	return $pid;
}

# Stopping the peer is also how the harness ends a flood that has gone on
# past the safety cap: the call then sees the connection close.
sub stop_fake
{
	return unless $fake_pid;
	kill 'KILL', $fake_pid;
	waitpid($fake_pid, 0);
	$fake_pid = undef;
}

END { stop_fake() }

# A field of /proc/PID/status in kB (VmHWM, VmRSS), undef if gone.
sub vm_kb
{
	my ($pid, $field) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	while (<$fh>)
	{
		return $1 if /^$field:\s+(\d+) kB/;
	}
	return undef;
}

# ---------------------------------------------------------------------------
# Sessions: psql reading from a pipe, pumped by hand.

sub open_session
{
	my ($node) = @_;
	my $s = { in => '', out => '', err => '', n => 0 };
	$s->{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr('postgres') ],
		'<', \$s->{in}, '>', \$s->{out}, '2>', \$s->{err});
	my $r = run_sql($s, 'SELECT pg_backend_pid()', limit => 30);
	$s->{pid} = $r->{done} && $r->{out} =~ /^(\d+)$/ ? $1 : undef;
	return $s;
}

sub close_session
{
	my ($s) = @_;
	eval {
		$s->{h}->pump_nb;
		if ($s->{h}->pumpable)
		{
			$s->{in} .= "\\q\n";
			$s->{h}->finish;
		}
		else
		{
			$s->{h}->kill_kill(grace => 1);
		}
	};
	eval { $s->{h}->kill_kill(grace => 1) } if $@;
	return;
}

# Run SQL in a session.  Options: limit (s, default 60) after which
# on_overtime->(elapsed) is called every loop until the call ends (it
# escalates); watch => pid whose VmRSS is sampled (peak_kb), on_rss =>
# sub(kB) called on every sample.  Returns {done, out, err, dur, peak_kb}.
sub run_sql
{
	my ($s, $sql, %o) = @_;
	my $n = ++$s->{n};
	my $mark = "__end_${n}__";
	my $limit = $o{limit} // 60;
	my $r = { done => 0, peak_kb => 0 };
	$s->{out} = $s->{err} = '';
	$s->{in} .= "$sql;\n\\echo $mark\n\\warn $mark\n";
	my $t0 = time;
	for (;;)
	{
		my $alive = eval { $s->{h}->pump_nb; $s->{h}->pumpable };
		if ($s->{out} =~ /$mark\n/ && $s->{err} =~ /$mark\n/)
		{
			$r->{done} = 1;
			last;
		}
		last unless $alive;
		if ($o{watch})
		{
			my $rss = vm_kb($o{watch}, 'VmRSS') // 0;
			$r->{peak_kb} = $rss if $rss > $r->{peak_kb};
			$o{on_rss}->($rss) if $o{on_rss};
		}
		my $el = time - $t0;
		if ($el > $limit)
		{
			last unless $o{on_overtime} && $o{on_overtime}->($el);
		}
		usleep(10_000);
	}
	$r->{dur} = time - $t0;
	($r->{out} = $s->{out}) =~ s/\n?$mark\n//;
	($r->{err} = $s->{err}) =~ s/\n?$mark\n//;
	$s->{dead} = 1 unless $r->{done};
	return $r;
}

# ---------------------------------------------------------------------------
# Server health.

sub postmaster_pid
{
	my ($node) = @_;
	open(my $fh, '<', $node->data_dir . '/postmaster.pid') or return undef;
	my $pid = <$fh>;
	chomp $pid if defined $pid;
	return $pid && kill(0, $pid) ? $pid : undef;
}

# Wait until the server answers again, starting it if the postmaster is gone.
sub ensure_up
{
	my ($node) = @_;
	my $deadline = time + 120;
	while (time < $deadline)
	{
		my ($ret) = $node->psql('postgres', 'SELECT 1');
		return 1 if $ret == 0;
		if (!postmaster_pid($node))
		{
			diag('postmaster is gone: starting it again');
			$node->{_pid} = undef;	# start() refuses a node it thinks runs
			$node->start(fail_ok => 1);
		}
		usleep(300_000);
	}
	return 0;
}

# Lines of the server log after byte offset POS that mean a crash.
sub crash_lines
{
	my ($node, $pos) = @_;
	open(my $fh, '<', $node->logfile) or return ();
	seek($fh, $pos, 0);
	my @crash = grep { /terminated by signal|reinitializing|PANIC|was terminated/ } <$fh>;
	chomp @crash;
	return @crash;
}

1;
