/*
 * rmq_queue_plan.c — which of the topic's queues a stream worker reads, and
 * where each starts.  The queues sorted by broker and id are dealt
 * round-robin over the stream's workers (PreferConsistent) except those the
 * queue map pins (PreferFixed); the route is asked for again every few
 * seconds so the plan follows brokers that leave and return.  A queue
 * starts at its offset stored in PostgreSQL, else the group's on the broker,
 * else the stream's start strategy, and that start is stored at once.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "rmq_worker.h"

/* Queue order as Java's MessageQueue.compareTo: topic, broker, queue id. */
int
rmq_plan_cmp_cursor(const void *a, const void *b)
{
	const RmqCursor *x = a,
			   *y = b;
	int			c = strcmp(x->topic, y->topic);

	if (c == 0)
		c = strcmp(x->broker, y->broker);
	return c != 0 ? c : x->queue_id - y->queue_id;
}

/* The topic's readable queues in the route, sorted. */
int
rmq_plan_topic_queues(Stream *s, const char *topic, RmqRoute *route, RmqCursor **out)
{
	RmqCursor  *all;
	int			n = 0;

	/* The route parser bounds these: at most RMQ_MAX_TOPIC_QUEUES in all. */
	for (int i = 0; i < route->nqueues; i++)
		n += route->queues[i].read_queue_nums;
	all = palloc0(mul_size(sizeof(RmqCursor), Max(n, 1)));
	n = 0;
	for (int i = 0; i < route->nqueues; i++)
	{
		const RmqQueueData *qd = &route->queues[i];
		const char *addr = rmq_route_broker_addr(route, qd->broker_name);

		if (!(qd->perm & RMQ_PERM_READ) || addr == NULL)
			continue;
		for (int q = 0; q < qd->read_queue_nums; q++)
		{
			all[n].topic = pstrdup(topic);
			all[n].broker = pstrdup(qd->broker_name);
			all[n].queue_id = q;
			all[n].addr = pstrdup(addr);
			all[n].until = PG_INT64_MAX;
			all[n].broker_max = -1;
			n++;
		}
	}
	qsort(all, n, sizeof(RmqCursor), rmq_plan_cmp_cursor);
	*out = all;
	return n;
}

/*
 * The queues this worker owns: the readable queues sorted by broker and id,
 * dealt round-robin over the workers (PreferConsistent), except those the
 * queue map assigns explicitly (PreferFixed).  A member of its group gets
 * its share from rmq_member_share.c instead.
 */
static int
plan_queues(Stream *s, RmqCursor **out)
{
	RmqCursor  *all;
	RmqCursor  *mine;
	int			nmine = 0;
	int			n,
				k = 0;

	n = rmq_plan_topic_queues(s, s->def.topic, rmq_route(&s->def.opts, s->def.topic, true), &all);
	mine = palloc0(mul_size(sizeof(RmqCursor), Max(n, 1)));
	for (int i = 0; i < n; i++)
	{
		const char *mapped = s->def.queue_map
			? rmq_jsonb_text(s->def.queue_map, psprintf("%s/%d", all[i].broker, all[i].queue_id)) : NULL;
		int			owner = mapped ? atoi(mapped) : (k++) % s->def.parallelism;

		if (owner == s->def.index)
			mine[nmine++] = all[i];
	}
	*out = mine;
	return nmine;
}

/* This worker's queues: its share of the topic's readable queues. */
void
rmq_plan_assign(Stream *s)
{
	s->ncursors = plan_queues(s, &s->cursors);
}

/*
 * Does a fresh route give this worker the queues it has?  Queues that are
 * new, or whose broker moved, mean a new plan at once.  Queues that only
 * left the route stay in the plan: a broker that restarts leaves the route
 * for seconds (the whole route goes if it held the topic alone), and
 * keeping its queues, which sit out while their pulls fail, is what lets
 * the stream flow again the moment the broker answers.  Only after
 * VANISHED_MS does the plan drop them.  A name server that cannot be
 * reached, or has no route, leaves the queues as they are too.
 */
#define VANISHED_MS 120000

bool
rmq_plan_current(Stream *s)
{
	MemoryContext cxt = CurrentMemoryContext;
	/* Called between batches, where the current context is long-lived. */
	MemoryContext tmp = AllocSetContextCreate(TopMemoryContext, "rocketmq_stream route check",
											  ALLOCSET_DEFAULT_SIZES);
	RmqCursor  *volatile now = NULL;
	volatile int n = -1;
	bool		added = false;
	int			kept = 0;

	MemoryContextSwitchTo(tmp);
	PG_TRY();
	{
		RmqCursor  *got;

		n = plan_queues(s, &got);
		now = got;
	}
	PG_CATCH();
	{
		ErrorData  *ed;
		int			held;

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		if (ed->sqlerrcode != ERRCODE_CONNECTION_FAILURE && ed->sqlerrcode != ERRCODE_UNDEFINED_OBJECT)
		{
			MemoryContextDelete(tmp);
			PG_RE_THROW();
		}
		FlushErrorState();
		if (rmq_warn_due(ed->message, &held))
			ereport(WARNING,
					(errcode(ed->sqlerrcode),
					 errmsg("stream \"%s\" could not refresh the route of topic \"%s\"; it keeps its queues",
							s->def.name, s->def.topic),
					 held ? errdetail("%s (%d more times since the last warning)", ed->message, held)
					 : errdetail("%s", ed->message)));
		FreeErrorData(ed);
		MemoryContextDelete(tmp);
		if (s->vanished_since == 0)
			s->vanished_since = GetCurrentTimestamp();
		return !TimestampDifferenceExceeds(s->vanished_since, GetCurrentTimestamp(), VANISHED_MS);
	}
	PG_END_TRY();

	/* Both lists are sorted by broker and queue id. */
	for (int i = 0; i < n && !added; i++)
	{
		bool		found = false;

		for (int j = 0; j < s->ncursors && !found; j++)
			if (now[i].queue_id == s->cursors[j].queue_id &&
				strcmp(now[i].broker, s->cursors[j].broker) == 0)
			{
				found = true;
				added = strcmp(now[i].addr, s->cursors[j].addr) != 0;	/* moved */
				kept++;
			}
		if (!found)
			added = true;
	}
	MemoryContextSwitchTo(cxt);
	MemoryContextDelete(tmp);
	if (added)
		return false;
	if (kept == s->ncursors)
	{
		s->vanished_since = 0;
		return true;
	}
	if (s->vanished_since == 0)
		s->vanished_since = GetCurrentTimestamp();
	return !TimestampDifferenceExceeds(s->vanished_since, GetCurrentTimestamp(), VANISHED_MS);
}

/*
 * Would a run start now?  The name server has a route for the topic and
 * every broker in it accepts a connection.  Cheap (one route request and a
 * connect per broker), so a worker waiting out trouble can ask often and
 * start again the moment things are back instead of sleeping blind.
 */
bool
rmq_plan_probe(Stream *s)
{
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext tmp;
	volatile bool ok = true;

	if (s->def.topic == NULL)
		return true;			/* nothing known to probe: just try */
	tmp = AllocSetContextCreate(TopMemoryContext, "rocketmq_stream probe", ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(tmp);
	PG_TRY();
	{
		RmqRoute   *r = rmq_route(&s->def.opts, s->def.topic, true);

		for (int i = 0; i < r->nqueues; i++)
		{
			const char *addr = rmq_route_broker_addr(r, r->queues[i].broker_name);

			if (addr != NULL && (r->queues[i].perm & RMQ_PERM_READ))
				rmq_conn_done(rmq_conn_get(addr, &s->def.opts.sec, s->def.opts.request_timeout_ms));
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		rmq_conn_release_aborted(0);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	MemoryContextDelete(tmp);
	return ok;
}

/*
 * Where each queue starts: offsets stored in PostgreSQL, else the group's
 * offset on the broker (unless force_specific), else the start strategy.
 * The result is stored at once, so a restart before the first batch does
 * not move a "latest" start forward.
 *
 * A member of its group takes queues over from other members, which commit
 * what they consumed to the broker before they let a queue go: there the
 * later of the two offsets wins.  The broker's is ahead when another
 * member read on after us (our stored offset is old news, and everything
 * below the broker's is in that member's hands); ours is ahead when we
 * crashed between a commit here and its copy to the broker (what we
 * committed is ours).  The jump is logged and stored.
 */
void
rmq_plan_resolve_starts(Stream *s)
{
	Oid			t[6] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID, TEXTOID};

	rmq_xact_begin();
	/* Start offsets are durable whatever the stream's synchronous_commit. */
	rmq_spi_exec("SET LOCAL synchronous_commit = on", 0, NULL, NULL, false);
	/* What an earlier run of this member held is marked again below. */
	if (s->def.membership)
	{
		Datum		hv[2] = {rmq_text_datum(s->def.group), rmq_text_datum(s->member.client_id)};

		rmq_spi_exec(psprintf("UPDATE %s.rmq_offset SET held_by = NULL WHERE consumer_group = $1 AND held_by = $2",
							  s->def.schema), 2, t + 1, hv, false);
	}
	for (int i = 0; i < s->ncursors; i++)
	{
		RmqCursor  *c = &s->cursors[i];
		Datum		v[6] = {rmq_text_datum(s->def.group), rmq_text_datum(c->topic), rmq_text_datum(c->broker),
			Int32GetDatum(c->queue_id), 0,
		s->def.membership ? rmq_text_datum(s->member.client_id) : (Datum) 0};
		char		nulls[6] = {' ', ' ', ' ', ' ', ' ', s->def.membership ? ' ' : 'n'};
		int64		off = -1;
		int64		stored = -1;
		int64		at_broker = -1;
		bool		has_broker;

		rmq_spi_exec(psprintf("SELECT next_offset FROM %s.rmq_offset WHERE consumer_group = $1 AND topic = $2 "
						  "AND broker = $3 AND queue_id = $4", s->def.schema), 4, t, v, true);
		if (SPI_processed == 1)
			stored = strtoll(rmq_spi_text(0, 1), NULL, 10);
		if (stored >= 0 && !s->def.membership)
		{
			c->next = stored;
			continue;
		}
		has_broker = !s->def.force_specific &&
			rmq_query_consumer_offset(&s->def.opts, c->addr, s->def.group, c->topic, c->broker, c->queue_id, &at_broker);
		if (s->def.membership)
			s->qs[i].at_broker = has_broker ? at_broker : -1;
		if (stored >= 0 && (!has_broker || at_broker <= stored))
			off = stored;
		else if (has_broker)
		{
			off = at_broker;
			if (stored >= 0)
				ereport(LOG,
						(errmsg("stream \"%s\": queue %d of broker \"%s\" continues at " INT64_FORMAT
								", where another member of group \"%s\" left it",
								s->def.name, c->queue_id, c->broker, off, s->def.group),
						 errdetail("Its offset stored here was " INT64_FORMAT ".", stored)));
		}
		else if (strcmp(s->def.start_from, "latest") == 0)
			off = rmq_queue_offset(&s->def.opts, c->addr, RMQ_GET_MAX_OFFSET, c->topic, c->broker, c->queue_id);
		else if (strcmp(s->def.start_from, "timestamp") == 0)
			off = rmq_search_offset(&s->def.opts, c->addr, c->topic, c->broker, c->queue_id, s->def.start_ms);
		else if (strcmp(s->def.start_from, "offsets") == 0 && s->def.start_offsets &&
				 rmq_jsonb_text(s->def.start_offsets, psprintf("%s/%d", c->broker, c->queue_id)))
			off = strtoll(rmq_jsonb_text(s->def.start_offsets, psprintf("%s/%d", c->broker, c->queue_id)), NULL, 10);
		else
			off = rmq_queue_offset(&s->def.opts, c->addr, RMQ_GET_MIN_OFFSET, c->topic, c->broker, c->queue_id);
		v[4] = Int64GetDatum(Max(off, 0));
		/*
		 * Not read-only: the SELECT must see what the INSERT just did.  A
		 * member stores the start it took over and that it holds the queue.
		 */
		if (s->def.membership &&
			SPI_execute_with_args(psprintf("INSERT INTO %s.rmq_offset AS o (consumer_group, topic, broker, queue_id, "
										   "next_offset, held_by) VALUES ($1, $2, $3, $4, $5, $6) "
										   "ON CONFLICT (consumer_group, topic, broker, queue_id) DO UPDATE "
										   "SET next_offset = EXCLUDED.next_offset, held_by = EXCLUDED.held_by, "
										   "updated_at = CASE WHEN o.next_offset = EXCLUDED.next_offset "
										   "THEN o.updated_at ELSE now() END",
										   s->def.schema), 6, t, v, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not store the start of queue %d of broker \"%s\"", c->queue_id, c->broker);
		else if (!s->def.membership)
			rmq_spi_exec(psprintf("INSERT INTO %s.rmq_offset (consumer_group, topic, broker, queue_id, next_offset) "
							  "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", s->def.schema), 5, t, v, false);
		rmq_spi_exec(psprintf("SELECT next_offset FROM %s.rmq_offset WHERE consumer_group = $1 AND topic = $2 "
						  "AND broker = $3 AND queue_id = $4", s->def.schema), 4, t, v, false);
		c->next = strtoll(rmq_spi_text(0, 1), NULL, 10);
	}
	rmq_xact_commit();
	for (int i = 0; i < s->ncursors; i++)
		s->qs[i].stored = s->cursors[i].next;
}
