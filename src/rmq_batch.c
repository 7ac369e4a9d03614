/*
 * rmq_batch.c — assembling a stream's batch: keep a pull out on every queue
 * (more, ahead, when there is a backlog), take the answers as they come from
 * every broker at once, and close the batch by rows, bytes, memory, time,
 * or once every queue has caught up.  A broker that cannot be reached makes
 * only its own queues sit out, with a back-off; the others go on.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"

#include "rmq_worker.h"

/*
 * A batch also closes once it holds this much memory (answers, decoded
 * messages): batch_bytes counts bodies only, and a peer sending answers of
 * large properties and tiny bodies must not grow a worker without end.
 */
#define BATCH_MEMORY_MAX ((Size) 256 * 1024 * 1024)

static void
on_message(RmqPullCtx *ctx, RmqCursor *c, const RmqMessage *m)
{
	Stream	   *s = (Stream *) ctx->arg;

	if (s->batch.rows == 0)
		s->batch.first_row_at = GetCurrentTimestamp();
	if (s->batch.nmsgs == s->batch.msgs_cap)
	{
		s->batch.msgs_cap = s->batch.msgs_cap ? s->batch.msgs_cap * 2 : 1024;
		s->batch.msgs = s->batch.msgs ? repalloc_huge(s->batch.msgs, sizeof(RmqBatchMsg) * s->batch.msgs_cap)
			: palloc_extended(sizeof(RmqBatchMsg) * s->batch.msgs_cap, MCXT_ALLOC_HUGE);
	}
	s->batch.msgs[s->batch.nmsgs].m = *m;
	s->batch.msgs[s->batch.nmsgs].cursor = c;
	s->batch.nmsgs++;
	s->batch.rows++;
	s->batch.bytes += m->body_len;
}

/*
 * A message that does not decode is a poison message like one the target
 * refuses: under "fail" its queue stops right before it; otherwise it goes
 * to rmq_dead_letter (raw record as body) when the batch commits.
 */
static bool
on_damaged(RmqPullCtx *ctx, RmqCursor *c, const RmqMessage *m)
{
	Stream	   *s = (Stream *) ctx->arg;

	if (strcmp(s->def.on_error, "fail") == 0)
	{
		if (s->batch.poison == NULL)
			s->batch.poison = psprintf("undecodable message at offset " INT64_FORMAT " of queue %d of broker \"%s\": %s",
								 m->queue_offset, c->queue_id, c->broker, m->damage);
		s->qs[c - s->cursors].stop_at = Max(m->queue_offset, c->next);
		return true;
	}
	s->batch.damaged = s->batch.damaged ? repalloc(s->batch.damaged, sizeof(RmqBatchMsg) * (s->batch.ndamaged + 1))
		: palloc(sizeof(RmqBatchMsg));
	s->batch.damaged[s->batch.ndamaged].m = *m;
	s->batch.damaged[s->batch.ndamaged].cursor = c;
	s->batch.ndamaged++;
	return false;
}

static void
on_loss(RmqPullCtx *ctx, RmqCursor *c, int64 from, int64 until)
{
	Stream	   *s = (Stream *) ctx->arg;

	ereport(WARNING,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("stream \"%s\" skips lost offsets [" INT64_FORMAT ", " INT64_FORMAT ") of queue %d of broker \"%s\"",
					s->def.name, from, until, c->queue_id, c->broker)));
	appendStringInfo(&s->batch.lost, "%s{\"broker\": \"%s\", \"queue_id\": %d, \"from\": " INT64_FORMAT
					 ", \"until\": " INT64_FORMAT "}", s->batch.lost.len ? ", " : "", c->broker, c->queue_id,
					 from, until);
}

/* Has every queue read up to the max offset the broker last reported? */
static bool
caught_up(Stream *s)
{
	for (int i = 0; i < s->ncursors; i++)
		if (!s->cursors[i].done && s->qs[i].down_until == 0 &&
			(s->cursors[i].broker_max < 0 || s->cursors[i].next < s->cursors[i].broker_max))
			return false;
	return true;
}

/*
 * Called in PG_CATCH when talking to the broker at addr failed.  If it could
 * not be reached (refused, reset, timed out), its queues sit out while the
 * other brokers' queues go on: one dead broker of a cluster must not stall
 * a stream until the name server notices (up to 2 minutes for a broker that
 * vanished without closing its sockets).  A refused or reset connection is
 * tried again every PROBE_MS: a connect to a broker that is down costs it
 * nothing, and the queues flow again within that of its return.  A broker
 * that accepts but does not answer is given a growing back-off, since every
 * try costs a whole timeout.  What the batch already holds from it stays.
 * Other errors propagate.
 */
#define PROBE_MS 250

static void
broker_down(Stream *s, const char *addr, MemoryContext cxt)
{
	ErrorData  *ed;
	int			failures = 0;
	long		wait_ms;
	int			held;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	if (ed->sqlerrcode != ERRCODE_CONNECTION_FAILURE)
		PG_RE_THROW();
	FlushErrorState();
	addr = pstrdup(addr);
	rmq_conn_discard_addr(addr);
	for (int j = 0; j < s->ncursors; j++)
		if (strcmp(s->cursors[j].addr, addr) == 0)
			failures = Max(failures, s->qs[j].down_failures + 1);
	wait_ms = rmq_conn_timed_out ? rmq_backoff_ms(failures - 1) : PROBE_MS;
	for (int j = 0; j < s->ncursors; j++)
	{
		RmqCursor  *c = &s->cursors[j];

		if (strcmp(c->addr, addr) != 0)
			continue;
		s->qs[j].conn = NULL;
		/*
		 * A broker that restarted forgot our locks (renew before
		 * committing) and maybe our last offsets (send them again).
		 */
		s->qs[j].lock_doubt = true;
		s->qs[j].at_broker = -1;
		rmq_cursor_drop(&s->pull, c);
		if (s->qs[j].down_failures == 0)
			s->qs[j].down_since = GetCurrentTimestamp();
		s->qs[j].down_failures = failures;
		s->qs[j].down_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	}
	if (rmq_warn_due(psprintf("%s %s", s->def.name, ed->message), &held))
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("stream \"%s\": broker at %s is unreachable; its queues sit out, the other brokers' go on",
						s->def.name, addr),
				 held ? errdetail("%s (%d more times since the last warning)", ed->message, held)
				 : errdetail("%s", ed->message)));
	rmq_stream_record_error(s, psprintf("broker at %s is unreachable: %s", addr, ed->message), false);
	MemoryContextSwitchTo(cxt);
	FreeErrorData(ed);
}

/* A broker answered: it is up, and once none is down the stream is healthy. */
static void
broker_up(Stream *s, RmqConn *conn)
{
	bool		was_down = false;
	TimestampTz since = 0;

	for (int j = 0; j < s->ncursors; j++)
		if (s->qs[j].conn == conn && s->qs[j].down_failures > 0)
		{
			was_down = true;
			since = s->qs[j].down_since;
			s->qs[j].down_until = 0;
			s->qs[j].down_failures = 0;
		}
	if (!was_down)
		return;
	ereport(LOG,
			(errmsg("stream \"%s\": broker at %s answers again after %ld ms",
					s->def.name, rmq_conn_addr(conn),
					TimestampDifferenceMilliseconds(since, GetCurrentTimestamp()))));
	for (int j = 0; j < s->ncursors; j++)
		if (s->qs[j].down_failures > 0)
			return;
	rmq_stream_record_healthy(s);
}

/* Keep cursor i's pulls going, unless its broker fails. */
static void
send_guarded(Stream *s, int i, int64 max_suspend_ms)
{
	MemoryContext cxt = CurrentMemoryContext;
	RmqCursor  *c = &s->cursors[i];

	PG_TRY();
	{
		if (s->qs[i].conn == NULL)
		{
			s->qs[i].conn = rmq_conn_get(c->addr, &s->def.opts.sec, s->def.opts.request_timeout_ms);
			for (int j = 0; j < s->ncursors; j++)
				if (s->qs[j].conn == NULL && strcmp(s->cursors[j].addr, c->addr) == 0)
					s->qs[j].conn = s->qs[i].conn;
		}
		rmq_cursor_send(&s->pull, s->qs[i].conn, c, max_suspend_ms);
	}
	PG_CATCH();
	{
		broker_down(s, c->addr, cxt);
	}
	PG_END_TRY();
}

/* An answer on conn: 1 got one, 0 not yet, -1 its broker failed. */
static int
recv_guarded(Stream *s, RmqConn *conn, TimestampTz soft, TimestampTz hard,
			 RmqCommand *resp)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int rc = 0;

	PG_TRY();
	{
		rc = rmq_conn_recv_soft(conn, soft, hard, resp) ? 1 : 0;
	}
	PG_CATCH();
	{
		const char *addr = NULL;

		for (int j = 0; j < s->ncursors && addr == NULL; j++)
			if (s->qs[j].conn == conn)
				addr = s->cursors[j].addr;
		broker_down(s, addr, cxt);
		rc = -1;
	}
	PG_END_TRY();
	return rc;
}

/* May cursor i pull now?  Not while its broker is sitting out. */
static bool
cursor_up(Stream *s, int i)
{
	return s->qs[i].down_until == 0 || GetCurrentTimestamp() >= s->qs[i].down_until;
}

/*
 * Take at most one answer from each broker connection with pulls out, or
 * none once the batch may close.  A batch with rows waits for more only
 * until every queue has caught up with the broker and `batch_linger` has
 * passed since its first row: a backlog fills batches, a trickle commits
 * within the linger.  With several brokers each connection is polled and
 * the worker sleeps on all of them at once, so a long poll held by one
 * broker never delays another's answer.
 */
static void
receive_answers(Stream *s, TimestampTz close_at)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz soft = close_at;
	TimestampTz linger_end = TimestampTzPlusMilliseconds(s->batch.first_row_at, s->def.batch_linger);
	TimestampTz wake = 0;
	RmqConn   **busy = palloc(sizeof(RmqConn *) * s->ncursors);
	int			nbusy = 0;
	bool		got = false;
	int			rc;

	if (s->batch.rows > 0 && linger_end > now)
		soft = Min(soft, linger_end);
	if (s->def.max_rate > 0)
		soft = Min(soft, TimestampTzPlusMilliseconds(now, 50));

	/* The distinct connections with pulls out, and their earliest deadline. */
	for (int i = 0; i < s->ncursors; i++)
	{
		bool		seen = s->qs[i].conn == NULL;

		for (int j = 0; j < nbusy && !seen; j++)
			seen = busy[j] == s->qs[i].conn;
		if (seen)
			continue;
		for (int j = 0; j < s->ncursors; j++)
			if (s->qs[j].conn == s->qs[i].conn && s->cursors[j].inflight)
			{
				busy[nbusy++] = s->qs[i].conn;
				break;
			}
	}
	for (int k = 0; k < nbusy; k++)
	{
		RmqCommand	resp;
		TimestampTz hard = 0;

		if (busy[k] == NULL)
			continue;
		for (int j = 0; j < s->ncursors; j++)
			if (s->qs[j].conn == busy[k] && s->cursors[j].inflight &&
				(hard == 0 || s->cursors[j].deadline < hard))
				hard = s->cursors[j].deadline;
		wake = (wake == 0 || hard < wake) ? hard : wake;
		/* One connection: sleep on it.  Several: only look (soft = now). */
		rc = recv_guarded(s, busy[k], nbusy == 1 ? soft : GetCurrentTimestamp(), hard, &resp);
		if (rc < 0)
		{
			/* Its broker's connections are gone: so is any other of them in the set. */
			for (int m = 0; m < nbusy; m++)
			{
				bool		used = false;

				for (int j = 0; j < s->ncursors && !used; j++)
					used = s->qs[j].conn == busy[m];
				if (!used)
					busy[m] = NULL;
			}
		}
		if (rc <= 0)
			continue;
		got = true;
		broker_up(s, busy[k]);
		for (int j = 0; j < s->ncursors; j++)
		{
			RmqCursor  *c = &s->cursors[j];

			if (s->qs[j].conn == busy[k] && rmq_cursor_owns(c, resp.opaque))
			{
				rmq_cursor_handle(&s->pull, c, &resp);
				break;
			}
		}
	}
	/* Brokers that just failed are gone from the set. */
	{
		int			live = 0;

		for (int k = 0; k < nbusy; k++)
			if (busy[k] != NULL)
				busy[live++] = busy[k];
		if (live < nbusy)
			got = true;			/* something changed: let the caller look */
		nbusy = live;
	}
	if (nbusy > 1 && !got)
		(void) rmq_conn_wait_any(busy, nbusy, Min(soft, wake));
	else if (nbusy == 0 && !got)
	{
		/*
		 * Nothing out (brokers sitting out, queues stopped, rate limit):
		 * sleep until the batch may close or a broker may be tried again.
		 */
		TimestampTz until = soft;

		for (int i = 0; i < s->ncursors; i++)
			if (s->qs[i].down_until != 0 && s->qs[i].down_until < until)
				until = s->qs[i].down_until;
		rmq_worker_wait(Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until), 1));
	}
	pfree(busy);
}

/* The pull callbacks come back to the stream; tag filter and options too. */
void
rmq_batch_init(Stream *s)
{
	memset(&s->pull, 0, sizeof(s->pull));
	s->pull.group = s->def.group;
	s->pull.opts = &s->def.opts;
	s->pull.stream = true;
	s->pull.on_message = on_message;
	s->pull.on_loss = on_loss;
	s->pull.on_damaged = on_damaged;
	s->pull.arg = s;
	rmq_tag_filter_parse(s->def.opts.tag_filter, &s->pull.filter);
	s->last_tick = GetCurrentTimestamp();
}

/*
 * Assemble one batch in batch_cxt (reset by the caller) until it closes;
 * returns why it closed.
 */
const char *
rmq_batch_fill(Stream *s, MemoryContext batch_cxt, TimestampTz close_at)
{
	const char *reason = NULL;

	initStringInfo(&s->batch.lost);
	s->batch.poison = NULL;
	s->batch.damaged = NULL;
	s->batch.ndamaged = 0;
	s->batch.msgs = NULL;
	s->batch.nmsgs = s->batch.msgs_cap = 0;
	s->batch.rows = s->batch.bytes = 0;
	for (int i = 0; i < s->ncursors; i++)
	{
		s->qs[i].from = s->cursors[i].next;
		s->qs[i].stop_at = PG_INT64_MAX;
		s->cursors[i].rows = s->cursors[i].bytes = 0;
	}
	while (reason == NULL)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		left = TimestampDifferenceMilliseconds(now, close_at);

		/* Rate limit: tokens per queue refill at max_rate_per_queue. */
		if (s->def.max_rate > 0)
		{
			double		dt = (double) (now - s->last_tick) / 1000000.0;

			for (int i = 0; i < s->ncursors; i++)
				s->qs[i].tokens = Min(s->qs[i].tokens + dt * s->def.max_rate, Max(s->def.max_rate, 1.0));
			s->last_tick = now;
		}
		for (int i = 0; i < s->ncursors; i++)
		{
			RmqCursor  *c = &s->cursors[i];
			int			saved = s->def.opts.pull_batch_size;

			if (c->inflight && s->def.max_rate > 0)
				continue;
			if (!cursor_up(s, i))
				continue;
			if (s->def.max_rate > 0)
			{
				if (s->qs[i].tokens < 1.0)
					continue;
				s->def.opts.pull_batch_size = (int) Min((double) saved, s->qs[i].tokens);
				s->qs[i].tokens -= s->def.opts.pull_batch_size;
			}
			send_guarded(s, i, Min(left, s->def.opts.pull_timeout_ms));
			s->def.opts.pull_batch_size = saved;
		}
		receive_answers(s, close_at);
		if (s->batch.rows >= s->def.batch_rows)
			reason = "rows";
		else if (s->batch.bytes >= s->def.batch_bytes)
			reason = "bytes";
		else if (MemoryContextMemAllocated(batch_cxt, true) >= BATCH_MEMORY_MAX)
			reason = "memory";
		else if (GetCurrentTimestamp() >= close_at)
			reason = s->batch.rows > 0 ? "time" : "idle";
		else if (s->batch.rows > 0 && caught_up(s) &&
				 TimestampDifferenceExceeds(s->batch.first_row_at, GetCurrentTimestamp(), s->def.batch_linger))
			reason = "caught_up";
		if (s->def.max_rate > 0 && reason == NULL)
			rmq_worker_wait(10);
		CHECK_FOR_INTERRUPTS();
	}
	return reason;
}

/*
 * After a batch closed: did any queue move?  Answers held out of order live
 * in the batch's memory, which is about to go: forget them.
 */
bool
rmq_batch_settle(Stream *s)
{
	bool		advanced = false;

	for (int i = 0; i < s->ncursors; i++)
	{
		RmqCursor  *c = &s->cursors[i];

		if (c->next != s->qs[i].from)
			advanced = true;
		for (int k = 0; k < c->npend; k++)
			if (c->pend[k].arrived)
			{
				rmq_cursor_drop(&s->pull, c);
				break;
			}
	}
	return advanced;
}
