/*
 * rmq_worker.c — a stream's ingest worker.
 *
 * Pulls its queues into micro-batches and commits each batch — rows, the
 * next offsets and a batch record — in one transaction, where each queue's
 * range must start exactly where its stored offset ends.  Errors never move
 * offsets: a failed batch is rolled back, its reason recorded, and either
 * retried with back-off (broker or connection trouble) or the stream is
 * marked failed (target gone, permission revoked, data lost, poison message
 * under the "fail" policy) until someone resumes it.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "rmq_sql.h"
#include "rmq_stream.h"

#define MAX_BACKOFF_MS 30000
#define CONF_CHECK_MS 2000
/*
 * How often a worker asks the name server for the topic's route: queues
 * come and go with brokers (a restarted broker is missing from the route
 * for a while) and with topic updates.  The Java client polls every 30 s.
 */
#define ROUTE_CHECK_MS 5000
#define BATCH_HISTORY 1000
/*
 * A batch also closes once it holds this much memory (answers, decoded
 * messages): batch_bytes counts bodies only, and a peer sending answers of
 * large properties and tiny bodies must not grow a worker without end.
 */
#define BATCH_MEMORY_MAX ((Size) 256 * 1024 * 1024)

typedef struct Stream
{
	const char *name;
	int			index;
	int32		generation;
	char	   *schema;			/* the extension's, quoted */
	char	   *topic;
	char	   *group;
	char	   *target;
	RmqFormat	fmt;
	Oid			handler;
	char	   *start_from;
	int64		start_ms;
	Jsonb	   *start_offsets;
	bool		force_specific;
	int			parallelism;
	Jsonb	   *queue_map;
	RmqOptions	opts;
	int64		batch_rows;
	int64		batch_bytes;
	int			batch_interval;
	int			batch_linger;
	double		max_rate;
	bool		auto_commit;
	char	   *synchronous_commit;
	char	   *on_error;

	/* the batch being assembled */
	RmqCursor  *cursors;
	int			ncursors;
	int64	   *from;			/* per cursor: offset at batch start */
	double	   *tokens;			/* per cursor: rate limiter */
	RmqBatchMsg *msgs;
	int			nmsgs;
	int			msgs_cap;
	int64		rows;
	int64		bytes;
	TimestampTz first_row_at;
	StringInfoData lost;		/* JSON objects of skipped lost ranges */
	char	   *poison;			/* under on_error = fail: what stopped us */
	int64	   *stop_at;		/* per cursor: under fail, nothing from here on */
	RmqBatchMsg *damaged;		/* messages that did not decode, set aside */
	int			ndamaged;
	/* per cursor: its broker could not be reached; retry at down_until */
	TimestampTz *down_until;
	int		   *down_failures;
	uint64		batches;
	bool		replan;			/* the route changed: run again, at once */
	RmqPullCtx *pull;
} Stream;

static int64
opt_int(Jsonb *o, const char *key, int64 def)
{
	const char *s = rmq_jsonb_text(o, key);

	return s ? strtoll(s, NULL, 10) : def;
}

static bool
opt_bool(Jsonb *o, const char *key, bool def)
{
	const char *s = rmq_jsonb_text(o, key);

	return s ? strcmp(s, "true") == 0 : def;
}

static Datum
text_arg(const char *s)
{
	return CStringGetTextDatum(s);
}

static Datum
bytea_datum(const char *p, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), p, len);
	return PointerGetDatum(b);
}

/* SPI must be connected.  Runs a query with text/int parameters. */
static int
spi_exec(const char *sql, int nargs, Oid *types, Datum *vals, bool readonly)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, vals, NULL, readonly, 0);

	if (rc < 0)
		elog(ERROR, "SPI failed (%s) for: %s", SPI_result_code_string(rc), sql);
	return rc;
}

static char *
spi_text(int row, int col)
{
	if ((uint64) row >= SPI_processed || SPI_tuptable == NULL)
		elog(ERROR, "rocketmq_stream: expected a row from SPI, got %d", (int) SPI_processed);
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/*
 * Read the stream's definition.  False if it no longer exists, is not
 * running, or was reset/resumed since this worker started.
 */
static bool
load_stream(Stream *s, MemoryContext cxt)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {text_arg(s->name)};
	bool		ok = false;
	MemoryContext old;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	spi_exec("SELECT quote_ident(n.nspname) FROM pg_catalog.pg_extension e "
			 "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'rocketmq_stream'",
			 0, NULL, NULL, true);
	if (SPI_processed == 1)
	{
		char	   *schema = spi_text(0, 1);

		/* Known before anything else can fail, so the error can be recorded. */
		s->schema = MemoryContextStrdup(cxt, schema);
		spi_exec(psprintf("SELECT topic, consumer_group, target, format, handler::oid, start_from, "
						  "(extract(epoch FROM start_time) * 1000)::bigint, start_offsets, force_specific, "
						  "parallelism, queue_map, options, state, generation "
						  "FROM %s.rmq_stream WHERE name = $1", schema),
				 1, t, v, true);
		if (SPI_processed == 1 && strcmp(spi_text(0, 13), "running") == 0 &&
			atoi(spi_text(0, 14)) == s->generation)
		{
			char	   *fmt = spi_text(0, 4);
			char	   *so = spi_text(0, 8);
			char	   *qm = spi_text(0, 11);
			char	   *opts = spi_text(0, 12);
			char	   *h = spi_text(0, 5);
			char	   *st = spi_text(0, 7);
			Jsonb	   *o;

			old = MemoryContextSwitchTo(cxt);
			s->topic = pstrdup(spi_text(0, 1));
			s->group = pstrdup(spi_text(0, 2));
			s->target = pstrdup(spi_text(0, 3));
			s->fmt = strcmp(fmt, "json") == 0 ? RMQ_FORMAT_JSON
				: strcmp(fmt, "handler") == 0 ? RMQ_FORMAT_HANDLER : RMQ_FORMAT_MESSAGE;
			s->handler = h ? (Oid) strtoul(h, NULL, 10) : InvalidOid;
			s->start_from = pstrdup(spi_text(0, 6));
			s->start_ms = st ? strtoll(st, NULL, 10) : 0;
			s->start_offsets = so ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(so))) : NULL;
			s->force_specific = strcmp(spi_text(0, 9), "t") == 0;
			s->parallelism = atoi(spi_text(0, 10));
			s->queue_map = qm ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(qm))) : NULL;
			o = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(opts)));
			rmq_options_init(&s->opts, NULL);
			if (rmq_jsonb_text(o, "namesrv_addr"))
				s->opts.namesrv_addr = pstrdup(rmq_jsonb_text(o, "namesrv_addr"));
			s->opts.pull_batch_size = (int) opt_int(o, "pull_batch_size", s->opts.pull_batch_size);
			s->opts.request_timeout_ms = (int) opt_int(o, "request_timeout", s->opts.request_timeout_ms);
			s->opts.check_crc = opt_bool(o, "check_crc", s->opts.check_crc);
			s->opts.fail_on_data_loss = opt_bool(o, "fail_on_data_loss", true);
			s->opts.tag_filter = rmq_jsonb_text(o, "tag_filter") ? pstrdup(rmq_jsonb_text(o, "tag_filter")) : NULL;
			s->batch_rows = Max(opt_int(o, "batch_rows", 10000), 1);
			s->batch_bytes = Max(opt_int(o, "batch_bytes", 16 * 1024 * 1024), 1);
			s->batch_interval = (int) Max(opt_int(o, "batch_interval", 1000), 1);
			s->batch_linger = (int) Max(opt_int(o, "batch_linger", 10), 0);
			s->opts.pull_timeout_ms = (int) opt_int(o, "pull_timeout", s->opts.pull_timeout_ms);
			s->max_rate = (double) opt_int(o, "max_rate_per_queue", 0);
			s->auto_commit = opt_bool(o, "auto_commit", false);
			/*
			 * Off unless asked otherwise, like a subscription's apply worker,
			 * and for the same reason: what a crash takes back is read again.
			 */
			s->synchronous_commit = pstrdup(rmq_jsonb_text(o, "synchronous_commit")
											? rmq_jsonb_text(o, "synchronous_commit") : "off");
			s->on_error = pstrdup(rmq_jsonb_text(o, "on_error") ? rmq_jsonb_text(o, "on_error") : "fail");
			MemoryContextSwitchTo(old);
			ok = true;
		}
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	return ok;
}

static int
cmp_queue(const void *a, const void *b)
{
	const RmqCursor *x = a,
			   *y = b;
	int			c = strcmp(x->broker, y->broker);

	return c != 0 ? c : x->queue_id - y->queue_id;
}

/*
 * The queues this worker owns: the readable queues sorted by broker and id,
 * dealt round-robin over the workers (PreferConsistent), except those the
 * queue map assigns explicitly (PreferFixed).
 */
static int
plan_queues(Stream *s, RmqCursor **out)
{
	RmqRoute   *route = rmq_route(&s->opts, s->topic, true);
	RmqCursor  *all;
	RmqCursor  *mine;
	int			nmine = 0;
	int			n = 0,
				k = 0;

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
			all[n].topic = s->topic;
			all[n].broker = pstrdup(qd->broker_name);
			all[n].queue_id = q;
			all[n].addr = pstrdup(addr);
			all[n].until = PG_INT64_MAX;
			all[n].broker_max = -1;
			n++;
		}
	}
	qsort(all, n, sizeof(RmqCursor), cmp_queue);
	mine = palloc0(mul_size(sizeof(RmqCursor), Max(n, 1)));
	for (int i = 0; i < n; i++)
	{
		const char *mapped = s->queue_map
			? rmq_jsonb_text(s->queue_map, psprintf("%s/%d", all[i].broker, all[i].queue_id)) : NULL;
		int			owner = mapped ? atoi(mapped) : (k++) % s->parallelism;

		if (owner == s->index)
			mine[nmine++] = all[i];
	}
	*out = mine;
	return nmine;
}

/* This worker's queues: its share of the topic's readable queues. */
static void
assign_queues(Stream *s)
{
	s->ncursors = plan_queues(s, &s->cursors);
}

/*
 * Does a fresh route give this worker the queues it has?  An unreachable
 * name server is not a reason to stop pulling from reachable brokers: the
 * queues stay as they are (a WARNING at most once a minute).  A failed
 * connection has been discarded by then, so nothing is left busy.
 */
static bool
route_current(Stream *s)
{
	static TimestampTz last_warning = 0;
	MemoryContext cxt = CurrentMemoryContext;
	/* Called between batches, where the current context is long-lived. */
	MemoryContext tmp = AllocSetContextCreate(TopMemoryContext, "rocketmq_stream route check",
											  ALLOCSET_DEFAULT_SIZES);
	RmqCursor  *volatile now = NULL;
	volatile int n = -1;
	bool		current = true;

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

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		if (ed->sqlerrcode != ERRCODE_CONNECTION_FAILURE)
		{
			MemoryContextDelete(tmp);
			PG_RE_THROW();
		}
		FlushErrorState();
		if (TimestampDifferenceExceeds(last_warning, GetCurrentTimestamp(), 60000))
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("stream \"%s\" could not refresh the route of topic \"%s\"; it keeps its queues",
							s->name, s->topic),
					 errdetail("%s", ed->message)));
			last_warning = GetCurrentTimestamp();
		}
		FreeErrorData(ed);
		MemoryContextDelete(tmp);
		return true;
	}
	PG_END_TRY();
	if (n != s->ncursors)
		current = false;
	for (int i = 0; current && i < n; i++)
		if (now[i].queue_id != s->cursors[i].queue_id || strcmp(now[i].broker, s->cursors[i].broker) != 0 ||
			strcmp(now[i].addr, s->cursors[i].addr) != 0)
			current = false;
	MemoryContextSwitchTo(cxt);
	MemoryContextDelete(tmp);
	return current;
}

/*
 * Where each queue starts: offsets stored in PostgreSQL, else the group's
 * offset on the broker (unless force_specific), else the start strategy.
 * The result is stored at once, so a restart before the first batch does
 * not move a "latest" start forward.
 */
static void
resolve_starts(Stream *s)
{
	Oid			t[5] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID};

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	/* Start offsets are durable whatever the stream's synchronous_commit. */
	spi_exec("SET LOCAL synchronous_commit = on", 0, NULL, NULL, false);
	for (int i = 0; i < s->ncursors; i++)
	{
		RmqCursor  *c = &s->cursors[i];
		Datum		v[5] = {text_arg(s->group), text_arg(s->topic), text_arg(c->broker),
		Int32GetDatum(c->queue_id), 0};
		int64		off = -1;

		spi_exec(psprintf("SELECT next_offset FROM %s.rmq_offset WHERE consumer_group = $1 AND topic = $2 "
						  "AND broker = $3 AND queue_id = $4", s->schema), 4, t, v, true);
		if (SPI_processed == 1)
		{
			c->next = strtoll(spi_text(0, 1), NULL, 10);
			continue;
		}
		if (!s->force_specific &&
			rmq_query_consumer_offset(&s->opts, c->addr, s->group, s->topic, c->broker, c->queue_id, &off))
			;
		else if (strcmp(s->start_from, "latest") == 0)
			off = rmq_queue_offset(&s->opts, c->addr, RMQ_GET_MAX_OFFSET, s->topic, c->broker, c->queue_id);
		else if (strcmp(s->start_from, "timestamp") == 0)
			off = rmq_search_offset(&s->opts, c->addr, s->topic, c->broker, c->queue_id, s->start_ms);
		else if (strcmp(s->start_from, "offsets") == 0 && s->start_offsets &&
				 rmq_jsonb_text(s->start_offsets, psprintf("%s/%d", c->broker, c->queue_id)))
			off = strtoll(rmq_jsonb_text(s->start_offsets, psprintf("%s/%d", c->broker, c->queue_id)), NULL, 10);
		else
			off = rmq_queue_offset(&s->opts, c->addr, RMQ_GET_MIN_OFFSET, s->topic, c->broker, c->queue_id);
		v[4] = Int64GetDatum(Max(off, 0));
		/* Not read-only: the SELECT must see what the INSERT just did. */
		spi_exec(psprintf("INSERT INTO %s.rmq_offset (consumer_group, topic, broker, queue_id, next_offset) "
						  "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", s->schema), 5, t, v, false);
		spi_exec(psprintf("SELECT next_offset FROM %s.rmq_offset WHERE consumer_group = $1 AND topic = $2 "
						  "AND broker = $3 AND queue_id = $4", s->schema), 4, t, v, false);
		c->next = strtoll(spi_text(0, 1), NULL, 10);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

static void
on_message(RmqPullCtx *ctx, RmqCursor *c, const RmqMessage *m)
{
	Stream	   *s = (Stream *) ctx->arg;

	if (s->rows == 0)
		s->first_row_at = GetCurrentTimestamp();
	if (s->nmsgs == s->msgs_cap)
	{
		s->msgs_cap = s->msgs_cap ? s->msgs_cap * 2 : 1024;
		s->msgs = s->msgs ? repalloc_huge(s->msgs, sizeof(RmqBatchMsg) * s->msgs_cap)
			: palloc_extended(sizeof(RmqBatchMsg) * s->msgs_cap, MCXT_ALLOC_HUGE);
	}
	s->msgs[s->nmsgs].m = *m;
	s->msgs[s->nmsgs].cursor = c;
	s->nmsgs++;
	s->rows++;
	s->bytes += m->body_len;
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

	if (strcmp(s->on_error, "fail") == 0)
	{
		if (s->poison == NULL)
			s->poison = psprintf("undecodable message at offset " INT64_FORMAT " of queue %d of broker \"%s\": %s",
								 m->queue_offset, c->queue_id, c->broker, m->damage);
		s->stop_at[c - s->cursors] = Max(m->queue_offset, c->next);
		return true;
	}
	s->damaged = s->damaged ? repalloc(s->damaged, sizeof(RmqBatchMsg) * (s->ndamaged + 1))
		: palloc(sizeof(RmqBatchMsg));
	s->damaged[s->ndamaged].m = *m;
	s->damaged[s->ndamaged].cursor = c;
	s->ndamaged++;
	return false;
}

static void
on_loss(RmqPullCtx *ctx, RmqCursor *c, int64 from, int64 until)
{
	Stream	   *s = (Stream *) ctx->arg;

	ereport(WARNING,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("stream \"%s\" skips lost offsets [" INT64_FORMAT ", " INT64_FORMAT ") of queue %d of broker \"%s\"",
					s->name, from, until, c->queue_id, c->broker)));
	appendStringInfo(&s->lost, "%s{\"broker\": \"%s\", \"queue_id\": %d, \"from\": " INT64_FORMAT
					 ", \"until\": " INT64_FORMAT "}", s->lost.len ? ", " : "", c->broker, c->queue_id,
					 from, until);
}

/* Errors that stop a stream whatever its poison-message policy. */
static bool
is_stream_error(int code)
{
	return code == ERRCODE_UNDEFINED_TABLE || code == ERRCODE_UNDEFINED_COLUMN ||
		code == ERRCODE_INSUFFICIENT_PRIVILEGE || code == ERRCODE_DATATYPE_MISMATCH ||
		code == ERRCODE_FEATURE_NOT_SUPPORTED || code == ERRCODE_UNDEFINED_FUNCTION ||
		code == ERRCODE_WRONG_OBJECT_TYPE || code == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		code == ERRCODE_T_R_DEADLOCK_DETECTED || code == ERRCODE_LOCK_NOT_AVAILABLE ||
		code == ERRCODE_QUERY_CANCELED || code == ERRCODE_OUT_OF_MEMORY;
}

/*
 * Errors worth retrying: the broker or the network, or a lost race.  A topic
 * or broker missing from the route counts too: while a broker restarts the
 * name server briefly knows no route for its topics.
 */
static bool
is_transient(int code)
{
	return code == ERRCODE_CONNECTION_FAILURE || code == ERRCODE_EXTERNAL_ROUTINE_EXCEPTION ||
		code == ERRCODE_UNDEFINED_OBJECT ||
		code == ERRCODE_PROTOCOL_VIOLATION || code == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		code == ERRCODE_T_R_DEADLOCK_DETECTED || code == ERRCODE_LOCK_NOT_AVAILABLE ||
		code == ERRCODE_OUT_OF_MEMORY || code == ERRCODE_QUERY_CANCELED;
}

static void
dead_letter(Stream *s, const RmqBatchMsg *bm, const char *error)
{
	Oid			t[13] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, BYTEAOID, TEXTOID, TEXTOID, BYTEAOID};
	Datum		v[13];
	char		nulls[13];
	bool		keep_body = strcmp(s->on_error, "dead_letter") == 0;
	const RmqMessage *m = &bm->m;
	StringInfoData props;

	initStringInfo(&props);
	appendStringInfoChar(&props, '{');
	for (int i = 0; i < m->nprops; i++)
	{
		if (i)
			appendStringInfoString(&props, ", ");
		escape_json(&props, m->prop_keys[i]);
		appendStringInfoString(&props, ": ");
		escape_json(&props, m->prop_values[i]);
	}
	appendStringInfoChar(&props, '}');
	memset(nulls, ' ', sizeof(nulls));
	v[0] = text_arg(s->name);
	v[1] = text_arg(s->topic);
	v[2] = text_arg(bm->cursor->broker);
	v[3] = Int32GetDatum(m->queue_id);
	v[4] = Int64GetDatum(m->queue_offset);
	v[5] = m->msg_id[0] ? text_arg(m->msg_id) : (Datum) 0;
	nulls[5] = m->msg_id[0] ? ' ' : 'n';
	v[6] = rmq_msg_prop(m, "UNIQ_KEY") ? text_arg(rmq_msg_prop(m, "UNIQ_KEY")) : (Datum) 0;
	nulls[6] = rmq_msg_prop(m, "UNIQ_KEY") ? ' ' : 'n';
	v[7] = rmq_msg_prop(m, "TAGS") ? text_arg(rmq_msg_prop(m, "TAGS")) : (Datum) 0;
	nulls[7] = rmq_msg_prop(m, "TAGS") ? ' ' : 'n';
	v[8] = rmq_msg_prop(m, "KEYS") ? text_arg(rmq_msg_prop(m, "KEYS")) : (Datum) 0;
	nulls[8] = rmq_msg_prop(m, "KEYS") ? ' ' : 'n';
	v[9] = keep_body ? bytea_datum(m->body, m->body_len) : (Datum) 0;
	nulls[9] = keep_body ? ' ' : 'n';
	v[10] = text_arg(error);
	v[11] = text_arg(s->on_error);
	v[12] = m->props_lossy ? bytea_datum(m->props_raw, m->props_len) : (Datum) 0;
	nulls[12] = m->props_lossy ? ' ' : 'n';
	if (SPI_execute_with_args(psprintf("INSERT INTO %s.rmq_dead_letter (stream, topic, broker, queue_id, "
									   "queue_offset, msg_id, unique_key, tags, keys, body, error, policy, "
									   "properties_raw, properties) "
									   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, %s::jsonb)",
									   s->schema, quote_literal_cstr(props.data)),
							  13, t, v, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record a dead letter");
}

/* One COPY in a subtransaction; the error, or NULL. */
static ErrorData *
try_copy(Stream *s, RmqBatchMsg *msgs, int n)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile ed = NULL;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		rmq_sink_copy(s->target, s->fmt, msgs, n);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ed;
}

/*
 * COPY the batch.  If that fails on a message's data, redo it message by
 * message, each in a subtransaction.  Under "skip" and "dead_letter" a
 * failing message is set aside; under "fail" its queue stops right before
 * it (the rest of the batch still commits: other queues, and this queue's
 * earlier messages) and the stream fails after the commit, naming the first
 * such message.  *withheld counts messages not written because their queue
 * stopped.
 */
static int
sink_batch(Stream *s, int *withheld)
{
	ErrorData  *ed;
	int			skipped = 0;
	bool		fail = strcmp(s->on_error, "fail") == 0;

	*withheld = 0;
	if (s->nmsgs == 0)
		return 0;
	ed = try_copy(s, s->msgs, s->nmsgs);
	if (ed == NULL)
		return 0;
	if (is_stream_error(ed->sqlerrcode))
		ReThrowError(ed);
	for (int i = 0; i < s->nmsgs; i++)
	{
		RmqBatchMsg *bm = &s->msgs[i];
		int64	   *stop = &s->stop_at[bm->cursor - s->cursors];
		ErrorData  *one;

		/* A queue's messages come in offset order: all later ones wait. */
		if (bm->m.queue_offset >= *stop)
		{
			bm->cursor->rows--;
			(*withheld)++;
			continue;
		}
		one = try_copy(s, bm, 1);
		if (one == NULL)
			continue;
		if (is_stream_error(one->sqlerrcode))
			ReThrowError(one);
		if (fail)
		{
			if (s->poison == NULL)
				s->poison = psprintf("poison message at offset " INT64_FORMAT " of queue %d of broker \"%s\" (msg_id %s): %s%s%s",
									 bm->m.queue_offset, bm->m.queue_id, bm->cursor->broker,
									 bm->m.msg_id, one->message,
									 one->detail ? ": " : "", one->detail ? one->detail : "");
			*stop = bm->m.queue_offset;
			bm->cursor->next = bm->m.queue_offset;
			bm->cursor->rows--;
			(*withheld)++;
			continue;
		}
		dead_letter(s, bm, one->message);
		skipped++;
	}
	return skipped;
}

/*
 * Commit the batch.  Returns false (and commits nothing) if the stream was
 * paused, dropped, reset or resumed meanwhile.
 */
static bool
commit_batch(Stream *s, TimestampTz started, const char *reason)
{
	StringInfoData ranges;
	int			skipped = 0;
	int			withheld = 0;
	bool		current;
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {text_arg(s->name)};

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	/* Serialises with rmq_reset_stream/rmq_pause_stream, which update it. */
	spi_exec(psprintf("SELECT state = 'running' AND generation = %d FROM %s.rmq_stream "
					  "WHERE name = $1 FOR SHARE", s->generation, s->schema), 1, t, v, false);
	current = SPI_processed == 1 && strcmp(spi_text(0, 1), "t") == 0;
	if (!current)
	{
		PopActiveSnapshot();
		SPI_finish();
		AbortCurrentTransaction();
		return false;
	}

	if (s->fmt == RMQ_FORMAT_HANDLER)
	{
		RmqBatchRange *br = palloc(sizeof(RmqBatchRange) * Max(s->ncursors, 1));
		int			nbr = 0;

		for (int i = 0; i < s->ncursors; i++)
			if (s->cursors[i].next != s->from[i])
			{
				br[nbr].cursor = &s->cursors[i];
				br[nbr].from = s->from[i];
				nbr++;
			}
		rmq_sink_handler(s->handler, s->msgs, s->nmsgs, br, nbr);
	}
	else
		skipped = sink_batch(s, &withheld);
	for (int i = 0; i < s->ndamaged; i++)
	{
		RmqBatchMsg *bm = &s->damaged[i];

		dead_letter(s, bm, psprintf("could not decode message: %s", bm->m.damage));
	}

	initStringInfo(&ranges);
	appendStringInfoChar(&ranges, '[');
	for (int i = 0; i < s->ncursors; i++)
	{
		RmqCursor  *c = &s->cursors[i];
		Oid			ot[7] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID, INT8OID, INT8OID};
		Datum		ov[7] = {text_arg(s->group), text_arg(s->topic), text_arg(c->broker),
		Int32GetDatum(c->queue_id), Int64GetDatum(c->next), Int64GetDatum(c->broker_max),
		Int64GetDatum(s->from[i])};

		if (c->next == s->from[i] && c->broker_max < 0)
			continue;
		spi_exec(psprintf("INSERT INTO %s.rmq_offset AS o (consumer_group, topic, broker, queue_id, next_offset, "
						  "broker_max_offset) VALUES ($1, $2, $3, $4, $5, nullif($6, -1)) "
						  "ON CONFLICT (consumer_group, topic, broker, queue_id) DO UPDATE "
						  "SET next_offset = EXCLUDED.next_offset, "
						  "broker_max_offset = coalesce(EXCLUDED.broker_max_offset, o.broker_max_offset), "
						  "updated_at = now() WHERE o.next_offset = $7 RETURNING 1", s->schema),
				 7, ot, ov, false);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("stored offset of queue %d of broker \"%s\" for group \"%s\" is no longer " INT64_FORMAT,
							c->queue_id, c->broker, s->group, s->from[i]),
					 errdetail("Someone else committed offsets of this queue; the batch is read again.")));
		if (c->next != s->from[i])
			appendStringInfo(&ranges, "%s{\"broker\": \"%s\", \"queue_id\": %d, \"from\": " INT64_FORMAT
							 ", \"until\": " INT64_FORMAT ", \"rows\": " INT64_FORMAT "}",
							 ranges.len > 1 ? ", " : "", c->broker, c->queue_id, s->from[i], c->next, c->rows);
	}
	if (s->lost.len)
		appendStringInfo(&ranges, "%s{\"lost\": [%s]}", ranges.len > 1 ? ", " : "", s->lost.data);
	appendStringInfoChar(&ranges, ']');
	{
		Oid			bt[7] = {TEXTOID, INT4OID, TIMESTAMPTZOID, INT8OID, INT8OID, INT4OID, TEXTOID};
		Datum		bv[7] = {text_arg(s->name), Int32GetDatum(s->index), TimestampTzGetDatum(started),
		Int64GetDatum(s->rows - skipped - withheld), Int64GetDatum(s->bytes),
		Int32GetDatum(skipped + s->ndamaged), text_arg(reason)};

		spi_exec(psprintf("INSERT INTO %s.rmq_batch (stream, worker, started_at, rows, bytes, skipped, ranges, "
						  "end_reason) VALUES ($1, $2, $3, $4, $5, $6, %s::jsonb, $7)",
						  s->schema, quote_literal_cstr(ranges.data)), 7, bt, bv, false);
		if (++s->batches % 100 == 0)
			spi_exec(psprintf("DELETE FROM %s.rmq_batch WHERE stream = $1 AND id <= "
							  "(SELECT id FROM %s.rmq_batch WHERE stream = $1 ORDER BY id DESC OFFSET %d LIMIT 1)",
							  s->schema, s->schema, BATCH_HISTORY), 1, t, v, false);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	if (s->poison)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s", s->poison),
				 errhint("Fix the cause, or set on_error to skip or dead_letter with rmq_alter_stream(); then rmq_resume_stream().")));

	/*
	 * Advisory copy for the broker's own tools; PostgreSQL stays the truth.
	 * Never ahead of what is durable here: with synchronous_commit off a
	 * crash may take the last batches back, and a restart with no stored
	 * offset would start from the broker's.
	 */
	if (s->auto_commit && strcmp(s->synchronous_commit, "off") == 0)
		XLogFlush(XactLastCommitEnd);
	if (s->auto_commit)
		for (int i = 0; i < s->ncursors; i++)
		{
			RmqCursor  *c = &s->cursors[i];

			if (c->next == s->from[i])
				continue;
			PG_TRY();
			{
				rmq_update_consumer_offset(&s->opts, c->addr, s->group, s->topic, c->broker,
										   c->queue_id, c->next);
			}
			PG_CATCH();
			{
				EmitErrorReport();
				FlushErrorState();
			}
			PG_END_TRY();
		}
	return true;
}

static bool
conf_current(Stream *s)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {text_arg(s->name)};
	bool		current;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	spi_exec(psprintf("SELECT state = 'running' AND generation = %d FROM %s.rmq_stream WHERE name = $1",
					  s->generation, s->schema), 1, t, v, true);
	current = SPI_processed == 1 && strcmp(spi_text(0, 1), "t") == 0;
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	return current;
}

static void
idle_wait(long ms)
{
	int			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   ms, PG_WAIT_EXTENSION);

	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* Has every queue read up to the max offset the broker last reported? */
static bool
caught_up(Stream *s)
{
	for (int i = 0; i < s->ncursors; i++)
		if (!s->cursors[i].done && s->down_until[i] == 0 &&
			(s->cursors[i].broker_max < 0 || s->cursors[i].next < s->cursors[i].broker_max))
			return false;
	return true;
}

static void record_error(Stream *s, const char *msg, bool fail);

/* 1 s, doubling per consecutive failure, at most MAX_BACKOFF_MS. */
static long
backoff_ms(int failures)
{
	return Min(1000L << Min(failures, 5), MAX_BACKOFF_MS);
}

/*
 * Called in PG_CATCH when talking to the broker at addr failed.  If it could
 * not be reached (refused, reset, timed out), its queues sit out with a
 * growing back-off while the other brokers' queues go on: one dead broker
 * of a cluster must not stall a stream until the name server notices (up
 * to 2 minutes for a broker that vanished without closing its sockets).
 * What the batch already holds from it stays.  Other errors propagate.
 */
static void
broker_down(Stream *s, RmqConn **conns, const char *addr, MemoryContext cxt)
{
	ErrorData  *ed;
	int			failures = 0;
	long		wait_ms;
	char	   *msg;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	if (ed->sqlerrcode != ERRCODE_CONNECTION_FAILURE)
		PG_RE_THROW();
	FlushErrorState();
	addr = pstrdup(addr);
	rmq_conn_discard_addr(addr);
	for (int j = 0; j < s->ncursors; j++)
		if (strcmp(s->cursors[j].addr, addr) == 0)
			failures = Max(failures, s->down_failures[j] + 1);
	wait_ms = backoff_ms(failures - 1);
	for (int j = 0; j < s->ncursors; j++)
	{
		RmqCursor  *c = &s->cursors[j];

		if (strcmp(c->addr, addr) != 0)
			continue;
		conns[j] = NULL;
		rmq_cursor_drop(s->pull, c);
		s->down_failures[j] = failures;
		s->down_until[j] = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	}
	msg = psprintf("broker at %s is unreachable; its queues wait %ld ms, the other brokers' go on: %s",
				   addr, wait_ms, ed->message);
	ereport(WARNING,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("stream \"%s\": %s", s->name, msg)));
	record_error(s, msg, false);
	MemoryContextSwitchTo(cxt);
	FreeErrorData(ed);
}

/* A broker answered: it is up. */
static void
broker_up(Stream *s, RmqConn **conns, RmqConn *conn)
{
	for (int j = 0; j < s->ncursors; j++)
		if (conns[j] == conn)
			s->down_until[j] = 0, s->down_failures[j] = 0;
}

/* Keep cursor i's pulls going, unless its broker fails. */
static void
send_guarded(Stream *s, RmqPullCtx *ctx, RmqConn **conns, int i, int64 max_suspend_ms)
{
	MemoryContext cxt = CurrentMemoryContext;
	RmqCursor  *c = &s->cursors[i];

	PG_TRY();
	{
		if (conns[i] == NULL)
		{
			conns[i] = rmq_conn_get(c->addr, s->opts.request_timeout_ms);
			for (int j = 0; j < s->ncursors; j++)
				if (conns[j] == NULL && strcmp(s->cursors[j].addr, c->addr) == 0)
					conns[j] = conns[i];
		}
		rmq_cursor_send(ctx, conns[i], c, max_suspend_ms);
	}
	PG_CATCH();
	{
		broker_down(s, conns, c->addr, cxt);
	}
	PG_END_TRY();
}

/* An answer on conn: 1 got one, 0 not yet, -1 its broker failed. */
static int
recv_guarded(Stream *s, RmqConn **conns, RmqConn *conn, TimestampTz soft, TimestampTz hard,
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
			if (conns[j] == conn)
				addr = s->cursors[j].addr;
		broker_down(s, conns, addr, cxt);
		rc = -1;
	}
	PG_END_TRY();
	return rc;
}

/* May cursor i pull now?  Not while its broker is sitting out. */
static bool
cursor_up(Stream *s, int i)
{
	return s->down_until[i] == 0 || GetCurrentTimestamp() >= s->down_until[i];
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
receive_answers(Stream *s, RmqPullCtx *ctx, RmqConn **conns, TimestampTz close_at)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz soft = close_at;
	TimestampTz linger_end = TimestampTzPlusMilliseconds(s->first_row_at, s->batch_linger);
	TimestampTz wake = 0;
	RmqConn   **busy = palloc(sizeof(RmqConn *) * s->ncursors);
	int			nbusy = 0;
	bool		got = false;
	int			rc;

	if (s->rows > 0 && linger_end > now)
		soft = Min(soft, linger_end);
	if (s->max_rate > 0)
		soft = Min(soft, TimestampTzPlusMilliseconds(now, 50));

	/* The distinct connections with pulls out, and their earliest deadline. */
	for (int i = 0; i < s->ncursors; i++)
	{
		bool		seen = conns[i] == NULL;

		for (int j = 0; j < nbusy && !seen; j++)
			seen = busy[j] == conns[i];
		if (seen)
			continue;
		for (int j = 0; j < s->ncursors; j++)
			if (conns[j] == conns[i] && s->cursors[j].inflight)
			{
				busy[nbusy++] = conns[i];
				break;
			}
	}
	for (int k = 0; k < nbusy; k++)
	{
		RmqCommand	resp;
		TimestampTz hard = 0;

		for (int j = 0; j < s->ncursors; j++)
			if (conns[j] == busy[k] && s->cursors[j].inflight &&
				(hard == 0 || s->cursors[j].deadline < hard))
				hard = s->cursors[j].deadline;
		wake = (wake == 0 || hard < wake) ? hard : wake;
		/* One connection: sleep on it.  Several: only look (soft = now). */
		rc = recv_guarded(s, conns, busy[k], nbusy == 1 ? soft : GetCurrentTimestamp(), hard, &resp);
		if (rc < 0)
			busy[k] = NULL;
		if (rc <= 0)
			continue;
		got = true;
		broker_up(s, conns, busy[k]);
		for (int j = 0; j < s->ncursors; j++)
		{
			RmqCursor  *c = &s->cursors[j];

			if (conns[j] == busy[k] && rmq_cursor_owns(c, resp.opaque))
			{
				rmq_cursor_handle(ctx, c, &resp);
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
			if (s->down_until[i] != 0 && s->down_until[i] < until)
				until = s->down_until[i];
		idle_wait(Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until), 1));
	}
	pfree(busy);
}

/* Runs batches until the stream stops being this worker's to run. */
static void
run_stream(Stream *s, MemoryContext stream_cxt)
{
	MemoryContext batch_cxt;
	RmqPullCtx	ctx;
	RmqConn   **conns;
	TimestampTz last_check = GetCurrentTimestamp();
	TimestampTz last_route = last_check;
	TimestampTz last_tick;

	MemoryContextSwitchTo(stream_cxt);
	if (!load_stream(s, stream_cxt))
		return;
	/*
	 * off is safe for exactly-once: a batch's rows and offsets commit or
	 * vanish together, and what a crash takes back is read again.
	 */
	SetConfigOption("synchronous_commit", s->synchronous_commit, PGC_USERSET, PGC_S_SESSION);
	MemoryContextSwitchTo(stream_cxt);
	assign_queues(s);
	if (s->ncursors == 0)
	{
		/* More workers than queues: wait for a change of plan. */
		while (conf_current(s))
		{
			idle_wait(ROUTE_CHECK_MS);
			if (!route_current(s))
			{
				s->replan = true;
				return;
			}
		}
		return;
	}
	resolve_starts(s);
	MemoryContextSwitchTo(stream_cxt);
	s->from = palloc0(sizeof(int64) * s->ncursors);
	s->tokens = palloc0(sizeof(double) * s->ncursors);
	s->stop_at = palloc(sizeof(int64) * s->ncursors);
	s->down_until = palloc0(sizeof(TimestampTz) * s->ncursors);
	s->down_failures = palloc0(sizeof(int) * s->ncursors);
	conns = palloc0(sizeof(RmqConn *) * s->ncursors);
	memset(&ctx, 0, sizeof(ctx));
	ctx.group = s->group;
	ctx.opts = &s->opts;
	ctx.stream = true;
	ctx.on_message = on_message;
	ctx.on_loss = on_loss;
	ctx.on_damaged = on_damaged;
	ctx.arg = s;
	s->pull = &ctx;
	rmq_tag_filter_parse(s->opts.tag_filter, &ctx.filter);
	batch_cxt = AllocSetContextCreate(stream_cxt, "rocketmq_stream batch", ALLOCSET_DEFAULT_SIZES);
	last_tick = GetCurrentTimestamp();

	for (;;)
	{
		TimestampTz started = GetCurrentTimestamp();
		TimestampTz close_at = TimestampTzPlusMilliseconds(started, s->batch_interval);
		const char *reason = NULL;
		bool		advanced = false;

		MemoryContextReset(batch_cxt);
		MemoryContextSwitchTo(batch_cxt);
		initStringInfo(&s->lost);
		s->poison = NULL;
		s->damaged = NULL;
		s->ndamaged = 0;
		s->msgs = NULL;
		s->nmsgs = s->msgs_cap = 0;
		s->rows = s->bytes = 0;
		for (int i = 0; i < s->ncursors; i++)
		{
			s->from[i] = s->cursors[i].next;
			s->stop_at[i] = PG_INT64_MAX;
			s->cursors[i].rows = s->cursors[i].bytes = 0;
		}
		while (reason == NULL)
		{
			TimestampTz now = GetCurrentTimestamp();
			long		left = TimestampDifferenceMilliseconds(now, close_at);

			/* Rate limit: tokens per queue refill at max_rate_per_queue. */
			if (s->max_rate > 0)
			{
				double		dt = (double) (now - last_tick) / 1000000.0;

				for (int i = 0; i < s->ncursors; i++)
					s->tokens[i] = Min(s->tokens[i] + dt * s->max_rate, Max(s->max_rate, 1.0));
				last_tick = now;
			}
			for (int i = 0; i < s->ncursors; i++)
			{
				RmqCursor  *c = &s->cursors[i];
				int			saved = s->opts.pull_batch_size;

				if (c->inflight && s->max_rate > 0)
					continue;
				if (!cursor_up(s, i))
					continue;
				if (s->max_rate > 0)
				{
					if (s->tokens[i] < 1.0)
						continue;
					s->opts.pull_batch_size = (int) Min((double) saved, s->tokens[i]);
					s->tokens[i] -= s->opts.pull_batch_size;
				}
				send_guarded(s, &ctx, conns, i, Min(left, s->opts.pull_timeout_ms));
				s->opts.pull_batch_size = saved;
			}
			receive_answers(s, &ctx, conns, close_at);
			if (s->rows >= s->batch_rows)
				reason = "rows";
			else if (s->bytes >= s->batch_bytes)
				reason = "bytes";
			else if (MemoryContextMemAllocated(batch_cxt, true) >= BATCH_MEMORY_MAX)
				reason = "memory";
			else if (GetCurrentTimestamp() >= close_at)
				reason = s->rows > 0 ? "time" : "idle";
			else if (s->rows > 0 && caught_up(s) &&
					 TimestampDifferenceExceeds(s->first_row_at, GetCurrentTimestamp(), s->batch_linger))
				reason = "caught_up";
			if (s->max_rate > 0 && reason == NULL)
				idle_wait(10);
			CHECK_FOR_INTERRUPTS();
		}
		for (int i = 0; i < s->ncursors; i++)
		{
			RmqCursor  *c = &s->cursors[i];

			if (c->next != s->from[i])
				advanced = true;
			/* Answers held out of order live in this batch's memory: drop. */
			for (int k = 0; k < c->npend; k++)
				if (c->pend[k].arrived)
				{
					rmq_cursor_drop(&ctx, c);
					break;
				}
		}
		/* A poison message alone on its queue still fails the stream. */
		if (advanced || s->rows > 0 || s->poison)
		{
			if (!commit_batch(s, started, reason))
				return;
			last_check = GetCurrentTimestamp();
		}
		else if (TimestampDifferenceExceeds(last_check, GetCurrentTimestamp(), CONF_CHECK_MS))
		{
			if (!conf_current(s))
				return;
			last_check = GetCurrentTimestamp();
		}
		/*
		 * Between batches: the new run starts from the stored offsets, and
		 * answers still in flight die with the connections.
		 */
		if (TimestampDifferenceExceeds(last_route, GetCurrentTimestamp(), ROUTE_CHECK_MS))
		{
			if (!route_current(s))
			{
				s->replan = true;
				return;
			}
			last_route = GetCurrentTimestamp();
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/* Record an error in the stream row; a permanent one fails the stream. */
static void
record_error(Stream *s, const char *msg, bool fail)
{
	Oid			t[2] = {TEXTOID, TEXTOID};
	Datum		v[2] = {text_arg(s->name), text_arg(msg)};

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	spi_exec(psprintf("UPDATE %s.rmq_stream SET last_error = $2, last_error_at = now()%s "
					  "WHERE name = $1 AND generation = %d",
					  s->schema ? s->schema : "public", fail ? ", state = 'failed'" : "", s->generation),
			 2, t, v, false);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* One run of the stream; the error that ended it, or NULL. */
static ErrorData *
try_run(Stream *s, MemoryContext stream_cxt)
{
	ErrorData  *volatile ed = NULL;

	PG_TRY();
	{
		run_stream(s, stream_cxt);
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(TopMemoryContext);
		ed = CopyErrorData();
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
		rmq_conn_reset_all();
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();
	return ed;
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
	for (;;)
	{
		ErrorData  *ed;
		bool		fail;

		memset(&s, 0, sizeof(s));
		s.name = wa.stream;
		s.index = DatumGetInt32(arg);
		s.generation = wa.generation;
		MemoryContextReset(stream_cxt);
		ed = try_run(&s, stream_cxt);
		if (ed == NULL && s.replan)
		{
			ereport(LOG,
					(errmsg("stream \"%s\": the queues of topic \"%s\" changed; worker %d takes up its new share",
							s.name, s.topic, s.index)));
			rmq_conn_reset_all();
			failures = 0;
			continue;
		}
		if (ed == NULL)
			break;				/* paused, dropped, reset: the launcher decides */
		fail = !is_transient(ed->sqlerrcode);
		if (s.schema == NULL)
			break;				/* the extension is gone: nothing to run */
		record_error(&s, ed->message, fail);
		FreeErrorData(ed);
		if (fail)
			break;
		idle_wait(backoff_ms(failures));
		failures++;
	}
	proc_exit(0);
}
