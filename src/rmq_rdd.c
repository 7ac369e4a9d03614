/*
 * rmq_rdd.c — rmq_create_rdd(): read exact offset ranges from the broker.
 *
 * All ranges on one broker are pulled concurrently over one connection (up
 * to RMQ_MAX_INFLIGHT pulls per range); answers are matched by opaque as
 * they come and used in offset order.
 * Rows go to a tuplestore that spills past work_mem, and each pull
 * response is decoded in a context reset right after, so memory stays
 * bounded however many messages the ranges hold.  Within a range, rows
 * come in offset order.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "rmq_pull.h"
#include "rmq_sql.h"

typedef struct RddCtx
{
	RmqPullCtx	pull;
	RmqOptions	opts;
	Tuplestorestate *ts;
	TupleDesc	td;
	MemoryContext msgcxt;
} RddCtx;

typedef struct RangeExtra
{
	Datum		topic_d;
	Datum		broker_d;
} RangeExtra;

static Datum
cstring_text(const char *s)
{
	return PointerGetDatum(cstring_to_text(s));
}

/*
 * Properties as jsonb, written straight in jsonb's binary layout: a flat
 * object of strings needs no JsonbValue tree and no general sort.  Keys are
 * unique already (later duplicates won while parsing) and are ordered as
 * jsonb requires: shorter first, then bytewise.
 */
static Datum
props_jsonb(const RmqMessage *m)
{
	int			n = m->nprops;
	int		   *idx = palloc(sizeof(int) * Max(n, 1));
	uint32	   *klen = palloc(sizeof(uint32) * Max(n, 1));
	uint32	   *vlen = palloc(sizeof(uint32) * Max(n, 1));
	size_t		total = 0;
	Jsonb	   *j;
	char	   *data;
	uint32		off = 0;

	for (int i = 0; i < n; i++)
	{
		klen[i] = strlen(m->prop_keys[i]);
		vlen[i] = strlen(m->prop_values[i]);
		total += klen[i] + vlen[i];
		idx[i] = i;
	}
	if (total > JENTRY_OFFLENMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message properties are too large for jsonb")));
	for (int i = 1; i < n; i++)
	{
		int			x = idx[i],
					k = i;

		while (k > 0)
		{
			int			y = idx[k - 1];
			int			c = klen[y] != klen[x] ? (klen[y] > klen[x] ? 1 : -1)
			: memcmp(m->prop_keys[y], m->prop_keys[x], klen[x]);

			if (c <= 0)
				break;
			idx[k] = y;
			k--;
		}
		idx[k] = x;
	}
	j = palloc(VARHDRSZ + sizeof(uint32) + sizeof(JEntry) * 2 * n + total);
	SET_VARSIZE(j, VARHDRSZ + sizeof(uint32) + sizeof(JEntry) * 2 * n + total);
	j->root.header = (uint32) n | JB_FOBJECT;
	data = (char *) &j->root.children[2 * n];
	for (int i = 0; i < 2 * n; i++)
	{
		int			p = idx[i < n ? i : i - n];
		uint32		len = i < n ? klen[p] : vlen[p];

		memcpy(data + off, i < n ? m->prop_keys[p] : m->prop_values[p], len);
		off += len;
		/* Every JB_OFFSET_STRIDE'th entry holds an end offset, not a length. */
		j->root.children[i] = JENTRY_ISSTRING |
			((i % JB_OFFSET_STRIDE) == 0 ? (off | JENTRY_HAS_OFF) : len);
	}
	return JsonbPGetDatum(j);
}

/* KEYS holds business keys separated by single spaces. */
static Datum
keys_array(const char *keys, bool *isnull)
{
	Datum	   *elems;
	int			n = 0;
	char	   *copy,
			   *save = NULL;

	if (keys == NULL)
	{
		*isnull = true;
		return (Datum) 0;
	}
	copy = pstrdup(keys);
	elems = palloc(sizeof(Datum) * (strlen(keys) / 2 + 1));
	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save))
		elems[n++] = cstring_text(t);
	*isnull = false;
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
bytes_datum(const char *p, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), p, len);
	return PointerGetDatum(b);
}

/* The columns of rmq_create_rdd and of type rmq_message. */
void
rmq_message_datums(const RmqMessage *m, Datum topic_d, Datum broker_d, Datum *v, bool *n)
{
	const char *uniq = rmq_msg_prop(m, "UNIQ_KEY");
	const char *tags = rmq_msg_prop(m, "TAGS");

	memset(n, 0, sizeof(bool) * RMQ_MESSAGE_NATTS);
	v[0] = topic_d;
	v[1] = broker_d;
	v[2] = Int32GetDatum(m->queue_id);
	v[3] = Int64GetDatum(m->queue_offset);
	/* Messages of an inner batch share a stored record: no id of their own. */
	v[4] = m->msg_id[0] ? cstring_text(m->msg_id) : (Datum) 0;
	n[4] = m->msg_id[0] == '\0';
	v[5] = uniq ? cstring_text(uniq) : (Datum) 0;
	n[5] = uniq == NULL;
	v[6] = keys_array(rmq_msg_prop(m, "KEYS"), &n[6]);
	v[7] = tags ? cstring_text(tags) : (Datum) 0;
	n[7] = tags == NULL;
	v[8] = bytes_datum(m->body, m->body_len);
	v[9] = props_jsonb(m);
	v[10] = TimestampTzGetDatum(rmq_ms_to_timestamptz(m->born_timestamp));
	v[11] = cstring_text(m->born_host);
	v[12] = TimestampTzGetDatum(rmq_ms_to_timestamptz(m->store_timestamp));
	v[13] = cstring_text(m->store_host);
	v[14] = Int32GetDatum(m->reconsume_times);
	v[15] = m->props_lossy ? bytes_datum(m->props_raw, m->props_len) : (Datum) 0;
	n[15] = !m->props_lossy;
}

static void
emit(RmqPullCtx *pctx, RmqCursor *c, const RmqMessage *m)
{
	RddCtx	   *ctx = (RddCtx *) pctx->arg;
	RangeExtra *rx = (RangeExtra *) c->user;
	Datum		v[RMQ_MESSAGE_NATTS];
	bool		n[RMQ_MESSAGE_NATTS];

	rmq_message_datums(m, rx->topic_d, rx->broker_d, v, n);
	tuplestore_putvalues(ctx->ts, ctx->td, v, n);
}

static void
warn_loss(RmqPullCtx *pctx, RmqCursor *c, int64 from, int64 until)
{
	ereport(WARNING,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("skipping lost offsets [" INT64_FORMAT ", " INT64_FORMAT ") of queue %d of broker \"%s\" for topic \"%s\"",
					from, until, c->queue_id, c->broker, c->topic)));
}

/* on_error = skip: an undecodable message is reported and passed over. */
static bool
warn_damaged(RmqPullCtx *pctx, RmqCursor *c, const RmqMessage *m)
{
	if (m->span > 1)
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("skipping undecodable batch at offsets [" INT64_FORMAT ", " INT64_FORMAT ") of queue %d of broker \"%s\" for topic \"%s\"",
						m->queue_offset, m->queue_offset + m->span, c->queue_id, c->broker, c->topic),
				 errdetail("%s", m->damage)));
	else
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("skipping undecodable message at offset " INT64_FORMAT " of queue %d of broker \"%s\" for topic \"%s\"",
						m->queue_offset, c->queue_id, c->broker, c->topic),
				 errdetail("%s", m->damage)));
	return false;
}

/* Pull every range served by one broker address to completion. */
static void
read_broker(RddCtx *ctx, RmqCursor *cs, int n, const char *addr)
{
	RmqConn    *conn = rmq_conn_get(addr, &ctx->opts.sec, ctx->opts.request_timeout_ms);
	int			left = 0;
	bool		holding = false;

	for (int i = 0; i < n; i++)
		if (strcmp(cs[i].addr, addr) == 0 && !cs[i].done)
			left++;
	while (left > 0)
	{
		RmqCommand	resp;
		TimestampTz deadline = 0;
		MemoryContext old;

		for (int i = 0; i < n; i++)
		{
			RmqCursor  *c = &cs[i];

			if (strcmp(c->addr, addr) != 0 || c->done)
				continue;
			rmq_cursor_send(&ctx->pull, conn, c, -1);
			if (deadline == 0 || c->deadline < deadline)
				deadline = c->deadline;
		}
		old = MemoryContextSwitchTo(ctx->msgcxt);
		rmq_conn_recv(conn, deadline, &resp);
		for (int i = 0; i < n; i++)
		{
			RmqCursor  *c = &cs[i];

			if (!c->done && strcmp(c->addr, addr) == 0 && rmq_cursor_owns(c, resp.opaque))
			{
				if (rmq_cursor_handle(&ctx->pull, c, &resp))
					holding = true;
				if (c->done)
					left--;
				break;
			}
		}
		MemoryContextSwitchTo(old);
		/* Answers kept for later (out of order) live in msgcxt too. */
		if (holding)
		{
			holding = false;
			for (int i = 0; i < n && !holding; i++)
				for (int k = 0; k < cs[i].npend; k++)
					if (cs[i].pend[k].arrived)
						holding = true;
		}
		if (!holding)
			MemoryContextReset(ctx->msgcxt);
		CHECK_FOR_INTERRUPTS();
	}
	rmq_conn_done(conn);
}

PG_FUNCTION_INFO_V1(rmq_create_rdd);
Datum
rmq_create_rdd(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RddCtx		ctx;
	RmqRange   *ranges;
	RmqCursor  *cs;
	int			n;

	memset(&ctx, 0, sizeof(ctx));
	ctx.pull.group = rmq_text_arg(fcinfo, 0, "consumer_group");
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("offset ranges must not be null")));
	rmq_options_init(&ctx.opts, PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2));
	ctx.pull.opts = &ctx.opts;
	ctx.pull.on_message = emit;
	ctx.pull.on_loss = warn_loss;
	if (ctx.opts.skip_undecodable)
		ctx.pull.on_damaged = warn_damaged;
	ctx.pull.arg = &ctx;
	rmq_tag_filter_parse(ctx.opts.tag_filter, &ctx.pull.filter);
	ranges = rmq_ranges_from_array(PG_GETARG_ARRAYTYPE_P(1), &n);

	InitMaterializedSRF(fcinfo, 0);
	ctx.ts = rsinfo->setResult;
	ctx.td = rsinfo->setDesc;
	if (ctx.td->natts != RMQ_MESSAGE_NATTS && ctx.td->natts != RMQ_MESSAGE_NATTS_0_1)
		elog(ERROR, "rmq_create_rdd: result has %d columns, expected %d", ctx.td->natts, RMQ_MESSAGE_NATTS);

	/* Resolve and check every range before reading any. */
	cs = palloc0(sizeof(RmqCursor) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		const RmqQueueData *qd;
		RangeExtra *rx = palloc(sizeof(RangeExtra));

		cs[i].topic = ranges[i].topic;
		cs[i].broker = ranges[i].broker;
		cs[i].queue_id = ranges[i].queue_id;
		cs[i].addr = rmq_broker_addr(&ctx.opts, ranges[i].topic, ranges[i].broker);
		qd = rmq_route_queue(rmq_route(&ctx.opts, ranges[i].topic, false), ranges[i].broker);
		if (qd == NULL || ranges[i].queue_id >= qd->read_queue_nums)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("queue %d of broker \"%s\" does not exist for topic \"%s\"",
							ranges[i].queue_id, ranges[i].broker, ranges[i].topic),
					 qd ? errdetail("The broker has %d read queues for the topic.", qd->read_queue_nums) : 0));
		cs[i].next = ranges[i].from;
		cs[i].until = ranges[i].until;
		cs[i].done = ranges[i].from >= ranges[i].until;
		rx->topic_d = cstring_text(ranges[i].topic);
		rx->broker_d = cstring_text(ranges[i].broker);
		cs[i].user = rx;
	}
	ctx.msgcxt = AllocSetContextCreate(CurrentMemoryContext, "rmq_create_rdd pull",
									   ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < n; i++)
	{
		bool		seen = false;

		for (int j = 0; j < i; j++)
			if (strcmp(cs[j].addr, cs[i].addr) == 0)
				seen = true;
		if (!seen)
			read_broker(&ctx, cs, n, cs[i].addr);
	}
	MemoryContextDelete(ctx.msgcxt);
	return (Datum) 0;
}
