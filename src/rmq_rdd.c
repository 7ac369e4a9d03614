/*
 * rmq_rdd.c — rmq_create_rdd(): read exact offset ranges from the broker.
 *
 * All ranges on one broker are pulled concurrently over one connection (one
 * pull in flight per range); responses are matched by opaque as they come.
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

#include "rmq_client.h"
#include "rmq_sql.h"

#define RDD_NATTS 15
/* Grace for the broker's 5 s long-poll check granularity. */
#define SUSPEND_GRACE_MS 6000

typedef struct RangeState
{
	RmqRange	r;
	const char *addr;
	int64		next;			/* next offset to read */
	bool		done;
	bool		inflight;
	int32		opaque;
	TimestampTz wait_start;		/* when we first found nothing new */
	TimestampTz sent_at;		/* of the pull in flight */
	TimestampTz deadline;		/* of the pull in flight */
	Datum		topic_d;
	Datum		broker_d;
} RangeState;

typedef struct RddCtx
{
	const char *group;
	RmqOptions	opts;
	RmqTagFilter filter;
	Tuplestorestate *ts;
	TupleDesc	td;
	MemoryContext msgcxt;
	uint64		rows;
} RddCtx;

static Datum
cstring_text(const char *s)
{
	return PointerGetDatum(cstring_to_text(s));
}

static Datum
props_jsonb(const RmqMessage *m)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < m->nprops; i++)
	{
		JsonbValue	k,
					v;

		k.type = jbvString;
		k.val.string.val = m->prop_keys[i];
		k.val.string.len = strlen(m->prop_keys[i]);
		v.type = jbvString;
		v.val.string.val = m->prop_values[i];
		v.val.string.len = strlen(m->prop_values[i]);
		pushJsonbValue(&st, WJB_KEY, &k);
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
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

static void
emit(RddCtx *ctx, RangeState *rs, const RmqMessage *m)
{
	Datum		v[RDD_NATTS];
	bool		n[RDD_NATTS] = {false};
	const char *uniq = rmq_msg_prop(m, "UNIQ_KEY");
	const char *tags = rmq_msg_prop(m, "TAGS");
	bytea	   *body = palloc(VARHDRSZ + m->body_len);

	SET_VARSIZE(body, VARHDRSZ + m->body_len);
	memcpy(VARDATA(body), m->body, m->body_len);
	v[0] = rs->topic_d;
	v[1] = rs->broker_d;
	v[2] = Int32GetDatum(m->queue_id);
	v[3] = Int64GetDatum(m->queue_offset);
	v[4] = cstring_text(m->msg_id);
	v[5] = uniq ? cstring_text(uniq) : (Datum) 0;
	n[5] = uniq == NULL;
	v[6] = keys_array(rmq_msg_prop(m, "KEYS"), &n[6]);
	v[7] = tags ? cstring_text(tags) : (Datum) 0;
	n[7] = tags == NULL;
	v[8] = PointerGetDatum(body);
	v[9] = props_jsonb(m);
	v[10] = TimestampTzGetDatum(rmq_ms_to_timestamptz(m->born_timestamp));
	v[11] = cstring_text(m->born_host);
	v[12] = TimestampTzGetDatum(rmq_ms_to_timestamptz(m->store_timestamp));
	v[13] = cstring_text(m->store_host);
	v[14] = Int32GetDatum(m->reconsume_times);
	tuplestore_putvalues(ctx->ts, ctx->td, v, n);
	ctx->rows++;
}

static void
send_pull(RddCtx *ctx, RmqConn *conn, RangeState *rs)
{
	RmqCommand	req;
	int64		want = rs->r.until - rs->next;
	int64		suspend = 0;
	TimestampTz now = GetCurrentTimestamp();

	/* Long-poll only while still inside the wait budget for this range. */
	if (rs->wait_start != 0)
	{
		long		waited = TimestampDifferenceMilliseconds(rs->wait_start, now);

		suspend = Max(ctx->opts.pull_timeout_ms - waited, 0);
	}
	else
		suspend = ctx->opts.pull_timeout_ms;
	rmq_build_pull(&req, ctx->group, rs->r.topic, rs->r.broker, rs->r.queue_id, rs->next,
				   (int32) Min(want, ctx->opts.pull_batch_size), suspend,
				   ctx->filter.expression);
	rs->deadline = TimestampTzPlusMilliseconds(now, suspend + ctx->opts.request_timeout_ms +
											   (suspend > 0 ? SUSPEND_GRACE_MS : 0));
	rs->sent_at = now;
	rs->opaque = rmq_conn_send(conn, &req, rs->deadline);
	rs->inflight = true;
}

static void
handle_response(RddCtx *ctx, RangeState *rs, const RmqCommand *resp)
{
	RmqPullResult pr;

	rmq_parse_pull(rs->addr, resp, &pr);
	switch (pr.code)
	{
		case RMQ_SUCCESS:
			{
				RmqMessage *msgs = NULL;
				int			nmsgs = 0;
				char	   *err = NULL;

				if (!rmq_decode_messages(pr.body, pr.body_len, ctx->opts.check_crc,
										 &msgs, &nmsgs, &err))
					ereport(ERROR,
							(errcode(ERRCODE_DATA_CORRUPTED),
							 errmsg("could not decode messages of queue %d of broker \"%s\" at offset " INT64_FORMAT,
									rs->r.queue_id, rs->r.broker, rs->next),
							 errdetail("%s", err)));
				for (int i = 0; i < nmsgs; i++)
				{
					const RmqMessage *m = &msgs[i];

					if (m->queue_offset < rs->next || m->queue_offset >= rs->r.until)
						continue;
					if (!rmq_tag_filter_match(&ctx->filter, rmq_msg_prop(m, "TAGS")))
						continue;
					emit(ctx, rs, m);
				}
				rs->wait_start = 0;
				if (pr.next_begin <= rs->next)
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg("broker \"%s\" did not advance queue %d past offset " INT64_FORMAT,
									rs->r.broker, rs->r.queue_id, rs->next)));
				rs->next = pr.next_begin;
				break;
			}
		case RMQ_PULL_RETRY_IMMEDIATELY:
			/* Everything scanned was filtered out: a gap, not an end. */
			rs->wait_start = 0;
			if (pr.next_begin > rs->next)
				rs->next = pr.next_begin;
			break;
		case RMQ_PULL_NOT_FOUND:
			{
				TimestampTz now = GetCurrentTimestamp();

				/* The broker already held this pull for us: count that. */
				if (rs->wait_start == 0)
					rs->wait_start = rs->sent_at;
				if (TimestampDifferenceExceeds(rs->wait_start, now, ctx->opts.pull_timeout_ms))
					ereport(ERROR,
							(errcode(ERRCODE_NO_DATA),
							 errmsg("offset " INT64_FORMAT " of queue %d of broker \"%s\" has not arrived within %d ms",
									rs->next, rs->r.queue_id, rs->r.broker, ctx->opts.pull_timeout_ms),
							 errdetail("The queue's max offset is " INT64_FORMAT "; the range ends at " INT64_FORMAT ".",
									   pr.max_offset, rs->r.until),
							 errhint("Ask for a range below rmq_queues().max_offset, or raise rocketmq_stream.pull_timeout to wait for new messages.")));
				break;
			}
		case RMQ_PULL_OFFSET_MOVED:
			if (rs->next < pr.min_offset)
			{
				int64		lost_until = Min(pr.min_offset, rs->r.until);

				if (ctx->opts.fail_on_data_loss)
					ereport(ERROR,
							(errcode(ERRCODE_DATA_CORRUPTED),
							 errmsg("offsets [" INT64_FORMAT ", " INT64_FORMAT ") of queue %d of broker \"%s\" for topic \"%s\" are no longer on the broker",
									rs->next, lost_until, rs->r.queue_id, rs->r.broker, rs->r.topic),
							 errdetail("The queue's min offset is " INT64_FORMAT ".", pr.min_offset),
							 errhint("Pass the option {\"fail_on_data_loss\": false} to skip lost messages with a warning.")));
				ereport(WARNING,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("skipping lost offsets [" INT64_FORMAT ", " INT64_FORMAT ") of queue %d of broker \"%s\" for topic \"%s\"",
								rs->next, lost_until, rs->r.queue_id, rs->r.broker, rs->r.topic)));
				rs->next = lost_until;
			}
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("offset " INT64_FORMAT " is beyond the end of queue %d of broker \"%s\" for topic \"%s\"",
								rs->next, rs->r.queue_id, rs->r.broker, rs->r.topic),
						 errdetail("The queue's max offset is " INT64_FORMAT ".", pr.max_offset)));
			break;
	}
	if (rs->next >= rs->r.until)
		rs->done = true;
}

/* Pull every range served by one broker address to completion. */
static void
read_broker(RddCtx *ctx, RangeState *rs, int nrs, const char *addr)
{
	RmqConn    *conn = rmq_conn_get(addr, ctx->opts.request_timeout_ms);
	int			left = 0;

	for (int i = 0; i < nrs; i++)
		if (strcmp(rs[i].addr, addr) == 0 && !rs[i].done)
			left++;
	while (left > 0)
	{
		RmqCommand	resp;
		RangeState *hit = NULL;
		TimestampTz deadline = 0;
		MemoryContext old;

		for (int i = 0; i < nrs; i++)
		{
			RangeState *r = &rs[i];

			if (strcmp(r->addr, addr) != 0 || r->done)
				continue;
			if (!r->inflight)
				send_pull(ctx, conn, r);
			if (deadline == 0 || r->deadline < deadline)
				deadline = r->deadline;
		}
		old = MemoryContextSwitchTo(ctx->msgcxt);
		rmq_conn_recv(conn, deadline, &resp);
		for (int i = 0; i < nrs; i++)
			if (rs[i].inflight && rs[i].opaque == resp.opaque && strcmp(rs[i].addr, addr) == 0)
			{
				hit = &rs[i];
				break;
			}
		if (hit)
		{
			hit->inflight = false;
			handle_response(ctx, hit, &resp);
			if (hit->done)
				left--;
		}
		MemoryContextSwitchTo(old);
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
	RangeState *rs;
	int			n;

	memset(&ctx, 0, sizeof(ctx));
	ctx.group = rmq_text_arg(fcinfo, 0, "consumer_group");
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("offset ranges must not be null")));
	rmq_options_init(&ctx.opts, PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2));
	rmq_tag_filter_parse(ctx.opts.tag_filter, &ctx.filter);
	ranges = rmq_ranges_from_array(PG_GETARG_ARRAYTYPE_P(1), &n);

	InitMaterializedSRF(fcinfo, 0);
	ctx.ts = rsinfo->setResult;
	ctx.td = rsinfo->setDesc;
	if (ctx.td->natts != RDD_NATTS)
		elog(ERROR, "rmq_create_rdd: result has %d columns, expected %d", ctx.td->natts, RDD_NATTS);

	/* Resolve and check every range before reading any. */
	rs = palloc0(sizeof(RangeState) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		const RmqQueueData *qd;
		RmqRoute   *route;

		rs[i].r = ranges[i];
		rs[i].addr = rmq_broker_addr(&ctx.opts, ranges[i].topic, ranges[i].broker);
		route = rmq_route(&ctx.opts, ranges[i].topic, false);
		qd = rmq_route_queue(route, ranges[i].broker);
		if (qd == NULL || ranges[i].queue_id >= qd->read_queue_nums)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("queue %d of broker \"%s\" does not exist for topic \"%s\"",
							ranges[i].queue_id, ranges[i].broker, ranges[i].topic),
					 qd ? errdetail("The broker has %d read queues for the topic.", qd->read_queue_nums) : 0));
		rs[i].next = ranges[i].from;
		rs[i].done = ranges[i].from >= ranges[i].until;
		rs[i].topic_d = cstring_text(ranges[i].topic);
		rs[i].broker_d = cstring_text(ranges[i].broker);
	}
	ctx.msgcxt = AllocSetContextCreate(CurrentMemoryContext, "rmq_create_rdd pull",
									   ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < n; i++)
	{
		bool		seen = false;

		for (int j = 0; j < i; j++)
			if (strcmp(rs[j].addr, rs[i].addr) == 0)
				seen = true;
		if (!seen)
			read_broker(&ctx, rs, n, rs[i].addr);
	}
	MemoryContextDelete(ctx.msgcxt);
	return (Datum) 0;
}
