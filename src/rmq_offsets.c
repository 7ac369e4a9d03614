/*
 * rmq_offsets.c — a consumer group's offsets on the broker.
 *
 * rmq_commit_offsets() records offsets in the caller's transaction and
 * sends them to the broker only once that transaction has committed: a
 * rolled-back transaction (or subtransaction) never moves the broker's
 * offsets.  The broker's copy is advisory; what it gets is `until`, the
 * next offset to read, never `until - 1`.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "rmq_client.h"
#include "rmq_sql.h"

typedef struct PendingCommit
{
	char	   *group;
	RmqRange	r;
	char	   *addr;
	RmqOptions	opts;
	int			nest_level;
	struct PendingCommit *next;
} PendingCommit;

/* Lives in TopTransactionContext; forgotten at end of transaction. */
static PendingCommit *pending = NULL;

/*
 * The transaction is already committed: an error here must not escape (it
 * would become a PANIC).  Catch it, restore the interrupt holdoff that
 * errfinish() cleared, and report a warning instead.
 */
static void
flush_one(PendingCommit *p, int timeout_ms)
{
	uint32		save_holdoff = InterruptHoldoffCount;
	uint32		save_cancel_holdoff = QueryCancelHoldoffCount;
	MemoryContext cxt = CurrentMemoryContext;
	RmqOptions	o = p->opts;

	o.request_timeout_ms = timeout_ms;
	PG_TRY();
	{
		rmq_update_consumer_offset(&o, p->addr, p->group, p->r.topic, p->r.broker,
								   p->r.queue_id, p->r.until);
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		FlushErrorState();
		/* Still inside this (committed) transaction: drop what it left busy. */
		rmq_conn_release_aborted(GetCurrentTransactionNestLevel());
		InterruptHoldoffCount = save_holdoff;
		QueryCancelHoldoffCount = save_cancel_holdoff;
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not commit offset " INT64_FORMAT " of queue %d of broker \"%s\" for group \"%s\" to RocketMQ",
						p->r.until, p->r.queue_id, p->r.broker, p->group),
				 errdetail("%s", ed->message)));
	}
	PG_END_TRY();
}

static void
flush_pending(void)
{
	PendingCommit *list = pending;
	PendingCommit *rev = NULL;

	pending = NULL;
	/* The list was built newest first; send oldest first so the last wins. */
	while (list)
	{
		PendingCommit *nx = list->next;

		list->next = rev;
		rev = list;
		list = nx;
	}
	/*
	 * Interrupts are held while a transaction commits: one request_timeout
	 * for them all, and a cancel or terminate cuts them short (rmq_conn
	 * notices it), so a dead broker cannot hold the session long.  What is
	 * not sent only leaves the broker's advisory copy behind.
	 */
	{
		TimestampTz deadline = rev ? rmq_deadline(rev->opts.request_timeout_ms) : 0;
		int			skipped = 0;

		for (PendingCommit *p = rev; p; p = p->next)
		{
			long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

			if (left <= 0 || QueryCancelPending || ProcDiePending)
				skipped++;
			else
				flush_one(p, (int) left);
		}
		if (skipped > 0)
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("%d offset commit(s) to RocketMQ were not sent", skipped),
					 errdetail("They ran out of time, or the session was cancelled; PostgreSQL has the offsets, the broker's copy is behind.")));
	}
}

static void
xact_cb(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (pending)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has committed RocketMQ offsets")));
			break;
		case XACT_EVENT_COMMIT:
			if (pending)
				flush_pending();
			break;
		case XACT_EVENT_ABORT:
			/* Only what the transaction took: a worker's pulls outlive its batches. */
			rmq_conn_release_aborted(1);
			pending = NULL;
			break;
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			pending = NULL;
			break;
		default:
			break;
	}
}

static void
subxact_cb(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	PendingCommit **pp = &pending;

	if (event == SUBXACT_EVENT_ABORT_SUB)
		rmq_conn_release_aborted(level);
	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	while (*pp)
	{
		PendingCommit *p = *pp;

		if (p->nest_level >= level)
		{
			if (event == SUBXACT_EVENT_ABORT_SUB)
			{
				*pp = p->next;
				continue;
			}
			p->nest_level = level - 1;
		}
		pp = &p->next;
	}
}

void
rmq_offsets_init(void)
{
	RegisterXactCallback(xact_cb, NULL);
	RegisterSubXactCallback(subxact_cb, NULL);
}

/*
 * Record [from, until) in rmq_offset in the caller's transaction.  The range
 * must start where the stored offset ends; the row stays locked until the
 * transaction ends, so of two transactions committing overlapping ranges
 * the second sees the first's offset and fails.  A queue seen for the first
 * time accepts any start.
 */
static void
store_range(const char *group, const RmqRange *r)
{
	Oid			t[6] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID, INT8OID};
	Datum		v[6] = {CStringGetTextDatum(group), CStringGetTextDatum(r->topic),
	CStringGetTextDatum(r->broker), Int32GetDatum(r->queue_id), Int64GetDatum(r->until),
	Int64GetDatum(r->from)};
	char	   *schema;

	SPI_connect();
	if (SPI_execute("SELECT quote_ident(n.nspname) FROM pg_catalog.pg_extension e "
					"JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
					"WHERE e.extname = 'rocketmq_stream'", true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "rocketmq_stream is not installed in this database");
	schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (SPI_execute_with_args(psprintf("INSERT INTO %s.rmq_offset AS o (consumer_group, topic, broker, queue_id, "
									   "next_offset) VALUES ($1, $2, $3, $4, $5) "
									   "ON CONFLICT (consumer_group, topic, broker, queue_id) DO UPDATE "
									   "SET next_offset = EXCLUDED.next_offset, updated_at = now() "
									   "WHERE o.next_offset = $6 RETURNING 1", schema),
							  6, t, v, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not store offsets");
	if (SPI_processed != 1)
	{
		int64		stored = -1;

		if (SPI_execute_with_args(psprintf("SELECT next_offset FROM %s.rmq_offset WHERE consumer_group = $1 "
										   "AND topic = $2 AND broker = $3 AND queue_id = $4", schema),
								  4, t, v, NULL, false, 1) == SPI_OK_SELECT && SPI_processed == 1)
			stored = strtoll(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), NULL, 10);
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("offset range [" INT64_FORMAT ", " INT64_FORMAT ") of queue %d of broker \"%s\" does not start where group \"%s\" stopped",
						r->from, r->until, r->queue_id, r->broker, group),
				 errdetail("The stored next offset is " INT64_FORMAT ".", stored),
				 errhint("Each committed range must begin at the stored offset: ranges may be neither repeated nor skipped.")));
	}
	SPI_finish();
}

PG_FUNCTION_INFO_V1(rmq_commit_offsets);
Datum
rmq_commit_offsets(PG_FUNCTION_ARGS)
{
	char	   *group = rmq_text_arg(fcinfo, 0, "consumer_group");
	RmqRange   *ranges;
	RmqOptions	o;
	int			n;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("offset ranges must not be null")));
	rmq_options_init(&o, PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2));
	ranges = rmq_ranges_from_array(PG_GETARG_ARRAYTYPE_P(1), &n);
	for (int i = 0; i < n; i++)
	{
		const char *addr = rmq_broker_addr(&o, ranges[i].topic, ranges[i].broker);
		const RmqQueueData *qd = rmq_route_queue(rmq_route(&o, ranges[i].topic, false), ranges[i].broker);
		MemoryContext old;
		PendingCommit *p;

		if (qd == NULL || ranges[i].queue_id >= qd->read_queue_nums)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("queue %d of broker \"%s\" does not exist for topic \"%s\"",
							ranges[i].queue_id, ranges[i].broker, ranges[i].topic)));
		store_range(group, &ranges[i]);
		old = MemoryContextSwitchTo(TopTransactionContext);
		p = palloc0(sizeof(PendingCommit));
		p->group = pstrdup(group);
		p->r.topic = pstrdup(ranges[i].topic);
		p->r.broker = pstrdup(ranges[i].broker);
		p->r.queue_id = ranges[i].queue_id;
		p->r.from = ranges[i].from;
		p->r.until = ranges[i].until;
		p->addr = pstrdup(addr);
		p->opts = o;
		p->opts.namesrv_addr = pstrdup(o.namesrv_addr);
		p->opts.tag_filter = NULL;
		p->nest_level = GetCurrentTransactionNestLevel();
		p->next = pending;
		pending = p;
		MemoryContextSwitchTo(old);
	}
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(rmq_committed_offsets);
Datum
rmq_committed_offsets(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *group = rmq_text_arg(fcinfo, 0, "consumer_group");
	char	   *topic = rmq_text_arg(fcinfo, 1, "topic");
	RmqOptions	o;
	RmqRoute   *route;
	MemoryContext per_queue;

	rmq_options_init(&o, PG_NARGS() > 2 && !PG_ARGISNULL(2) ? PG_GETARG_JSONB_P(2) : NULL);
	InitMaterializedSRF(fcinfo, 0);
	route = rmq_route(&o, topic, true);
	per_queue = AllocSetContextCreate(CurrentMemoryContext, "rmq_broker_offsets answers", ALLOCSET_SMALL_SIZES);
	for (int i = 0; i < route->nqueues; i++)
	{
		const RmqQueueData *qd = &route->queues[i];
		const char *addr = rmq_route_broker_addr(route, qd->broker_name);

		if (addr == NULL || !(qd->perm & RMQ_PERM_READ))
			continue;
		addr = pstrdup(addr);
		for (int q = 0; q < qd->read_queue_nums; q++)
		{
			Datum		v[3];
			bool		nulls[3] = {false};
			int64		off;
			bool		found;
			MemoryContext old = MemoryContextSwitchTo(per_queue);

			found = rmq_query_consumer_offset(&o, addr, group, topic, qd->broker_name, q, &off);
			MemoryContextSwitchTo(old);
			MemoryContextReset(per_queue);
			v[0] = CStringGetTextDatum(qd->broker_name);
			v[1] = Int32GetDatum(q);
			v[2] = Int64GetDatum(found ? off : 0);
			nulls[2] = !found;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
		}
	}
	return (Datum) 0;
}
