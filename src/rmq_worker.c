/*
 * rmq_worker.c — a stream's ingest worker: the process (signals, the
 * stream owner's role, retries with back-off, recording why a run ended)
 * and its loop: plan the queues, resolve where they start, then batch after
 * batch, each assembled (rmq_batch.c) and committed in one transaction
 * with its offsets (rmq_commit.c).  Errors never move offsets: a failed
 * batch is rolled back and either retried (broker or connection trouble)
 * or the stream is marked failed until someone resumes it.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "rmq_worker.h"

#define CONF_CHECK_MS 2000
/*
 * How often a worker asks the name server for the topic's route: queues
 * come and go with brokers (a restarted broker is missing from the route
 * for a while) and with topic updates.  The Java client polls every 30 s.
 */
#define ROUTE_CHECK_MS 5000
/* A member with no queues: how often it hears from the group. */
#define MEMBER_IDLE_MS 500

/* Runs batches until the stream stops being this worker's to run. */
static void
run_stream(Stream *s, MemoryContext stream_cxt)
{
	MemoryContext batch_cxt;
	TimestampTz last_check = GetCurrentTimestamp();
	TimestampTz last_route = last_check;

	MemoryContextSwitchTo(stream_cxt);
	if (!rmq_stream_load(s, stream_cxt))
		return;
	/*
	 * off is safe for exactly-once: a batch's rows and offsets commit or
	 * vanish together, and what a crash takes back is read again.
	 */
	SetConfigOption("synchronous_commit", s->def.synchronous_commit, PGC_USERSET, PGC_S_SESSION);
	MemoryContextSwitchTo(stream_cxt);
	/* The queues to read: the group's share for a member, else ours to deal out. */
	if (s->def.membership)
		s->ncursors = rmq_member_assign(s, &s->cursors);
	else
		rmq_plan_assign(s);
	s->qs = palloc0(mul_size(sizeof(QueueState), Max(s->ncursors, 1)));
	if (s->ncursors == 0)
	{
		/* More workers than queues: wait for a change of plan. */
		while (rmq_stream_current(s))
		{
			rmq_worker_wait(s->def.membership ? MEMBER_IDLE_MS : ROUTE_CHECK_MS);
			if (s->def.membership ? !rmq_member_tick(s) : !rmq_plan_current(s))
			{
				s->replan = true;
				if (!s->def.membership)
					s->replan_why = "its share of the topic's queues changed";
				return;
			}
		}
		return;
	}
	rmq_plan_resolve_starts(s);
	MemoryContextSwitchTo(stream_cxt);
	rmq_batch_init(s);
	batch_cxt = AllocSetContextCreate(stream_cxt, "rocketmq_stream batch", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz started = GetCurrentTimestamp();
		const char *reason;

		MemoryContextReset(batch_cxt);
		MemoryContextSwitchTo(batch_cxt);
		reason = rmq_batch_fill(s, batch_cxt, TimestampTzPlusMilliseconds(started, s->def.batch_interval));
		/* A poison message alone on its queue still fails the stream. */
		if (rmq_batch_settle(s) || s->batch.rows > 0 || s->batch.poison)
		{
			if (!rmq_commit_batch(s, started, reason))
				return;
			last_check = GetCurrentTimestamp();
		}
		else if (TimestampDifferenceExceeds(last_check, GetCurrentTimestamp(), CONF_CHECK_MS))
		{
			if (!rmq_stream_current(s))
				return;
			last_check = GetCurrentTimestamp();
		}
		/*
		 * Between batches: the new run starts from the stored offsets, and
		 * answers still in flight die with the connections.
		 */
		if (s->def.membership)
		{
			if (!rmq_member_tick(s))
			{
				s->replan = true;
				return;
			}
		}
		else if (TimestampDifferenceExceeds(last_route, GetCurrentTimestamp(), ROUTE_CHECK_MS))
		{
			if (!rmq_plan_current(s))
			{
				s->replan = true;
				s->replan_why = "its share of the topic's queues changed";
				return;
			}
			last_route = GetCurrentTimestamp();
		}
		/* A foreign server or user mapping changed: resolve it again. */
		if (s->epoch != rmq_profile_epoch)
		{
			s->replan = true;
			s->replan_why = "a foreign server or user mapping changed";
			return;
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * One run of the stream; the error that ended it, or NULL.  An error that
 * stops the stream is logged as the ERROR it is; one that will be retried
 * is left to the caller to log as a (rate-limited) warning.
 */
static ErrorData *
try_run(Stream *s, MemoryContext stream_cxt)
{
	ErrorData  *volatile ed = NULL;

	PG_TRY();
	{
		run_stream(s, stream_cxt);
		/* Paused, dropped or reset: a member leaves its group. */
		if (!s->replan)
			rmq_member_leave(s);
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		rmq_member_end_run(s);
		MemoryContextSwitchTo(TopMemoryContext);
		ed = CopyErrorData();
		if (!rmq_error_is_transient(ed->sqlerrcode))
			EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
		rmq_conn_reset_all();
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();
	return ed;
}

/*
 * Before the next run: a broker or name server that went away is waited
 * for by asking whether it is back every PROBE_EVERY_MS (a route request and
 * a connect), so the stream starts again within that of its return; the
 * back-off only caps how long one wait lasts.  Other trouble is simply
 * waited out.
 */
#define PROBE_EVERY_MS 500

static void
wait_to_retry(Stream *s, int sqlerrcode, long wait_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

	if (sqlerrcode != ERRCODE_CONNECTION_FAILURE && sqlerrcode != ERRCODE_UNDEFINED_OBJECT)
	{
		rmq_worker_wait(wait_ms);
		return;
	}
	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		if (left <= 0)
			return;
		rmq_worker_wait(Min(left, PROBE_EVERY_MS));
		if (rmq_plan_probe(s))
			return;
	}
}

void
rmq_worker_main(Datum arg)
{
	RmqWorkerArgs wa;
	Stream		s;
	MemoryContext stream_cxt;
	int			failures = 0;

	memcpy(&wa, MyBgworkerEntry->bgw_extra, sizeof(wa));
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	/*
	 * As the stream's owner: rows are written with its privileges, and it
	 * may update its own stream's row (row-level security) to say why it
	 * stopped.
	 */
	BackgroundWorkerInitializeConnectionByOid(wa.dboid, wa.owner, 0);
	pgstat_report_appname(psprintf("rocketmq_stream %s/%d", wa.stream, DatumGetInt32(arg)));

	stream_cxt = AllocSetContextCreate(TopMemoryContext, "rocketmq_stream stream", ALLOCSET_DEFAULT_SIZES);
	/* The row may still say a worker before this one was retrying. */
	s.retrying = true;
	for (;;)
	{
		ErrorData  *ed;
		bool		fail;
		bool		retrying = s.retrying;
		int			held;

		memset(&s, 0, sizeof(s));
		s.def.name = wa.stream;
		s.def.index = DatumGetInt32(arg);
		s.def.generation = wa.generation;
		s.retrying = retrying;
		MemoryContextReset(stream_cxt);
		ed = try_run(&s, stream_cxt);
		MemoryContextSwitchTo(stream_cxt);
		if (s.def.membership)
			rmq_member_remember(&s);
		if (ed == NULL && s.replan)
		{
			ereport(LOG,
					(errmsg("stream \"%s\": worker %d starts again: %s",
							s.def.name, s.def.index, s.replan_why)));
			/* A member keeps its group's connections: closing them is leaving. */
			if (s.def.membership)
				rmq_member_hand_back(&s);
			else
				rmq_conn_reset_all();
			rmq_member_end_run(&s);
			failures = 0;
			continue;
		}
		if (ed == NULL)
			break;				/* paused, dropped, reset: the launcher decides */
		fail = !rmq_error_is_transient(ed->sqlerrcode);
		if (s.def.schema == NULL)
			break;				/* the extension is gone: nothing to run */
		if (!fail && rmq_warn_due(psprintf("run %s", ed->message), &held))
			ereport(WARNING,
					(errcode(ed->sqlerrcode),
					 errmsg("stream \"%s\" will retry: %s", s.def.name, ed->message),
					 held ? errdetail("%d more times since the last warning.", held)
					 : ed->detail ? errdetail("%s", ed->detail) : 0));
		rmq_stream_record_error(&s, ed->message, fail);
		if (fail)
			break;
		/* A run that committed was healthy: back-off starts over. */
		if (s.committed)
			failures = 0;
		wait_to_retry(&s, ed->sqlerrcode, rmq_backoff_ms(failures));
		FreeErrorData(ed);
		failures++;
	}
	proc_exit(0);
}
