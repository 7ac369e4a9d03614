/*
 * rmq_pull.c — one step of a queue cursor: send its pull, handle the answer.
 */
#include "postgres.h"

#include "miscadmin.h"

#include "rmq_pull.h"

/* Grace for the broker's 5 s long-poll check granularity. */
#define SUSPEND_GRACE_MS 6000

static void
send_one(RmqPullCtx *ctx, RmqConn *conn, RmqCursor *c, int64 offset, int32 count, int64 suspend)
{
	RmqCommand	req;
	TimestampTz now = GetCurrentTimestamp();
	RmqPending *p = &c->pend[c->npend];

	rmq_build_pull(&req, ctx->group, c->topic, c->broker, c->queue_id, offset, count, suspend,
				   ctx->filter.expression);
	c->deadline = TimestampTzPlusMilliseconds(now, suspend + ctx->opts->request_timeout_ms +
											  (suspend > 0 ? SUSPEND_GRACE_MS : 0));
	if (c->npend == 0)
		c->sent_at = now;
	memset(p, 0, sizeof(*p));
	p->offset = offset;
	p->count = count;
	p->opaque = rmq_conn_send(conn, &req, c->deadline);
	c->npend++;
	c->inflight = true;
	c->opaque = c->pend[0].opaque;
	c->issued = offset + count;
}

/*
 * Keep the cursor's pulls going: the first one may long-poll; more follow
 * at predicted offsets, unfiltered, below the max offset the broker last
 * reported (those messages exist).
 */
void
rmq_cursor_send(RmqPullCtx *ctx, RmqConn *conn, RmqCursor *c, int64 max_suspend_ms)
{
	int64		suspend = ctx->opts->pull_timeout_ms;

	if (c->done)
		return;
	if (c->npend == 0)
	{
		/* Long-poll only while inside the wait budget of a bounded range. */
		if (!ctx->stream && c->wait_start != 0)
			suspend = Max(ctx->opts->pull_timeout_ms -
						  TimestampDifferenceMilliseconds(c->wait_start, GetCurrentTimestamp()), 0);
		if (max_suspend_ms >= 0)
			suspend = Min(suspend, max_suspend_ms);
		send_one(ctx, conn, c, c->next, (int32) Min(c->until - c->next, ctx->opts->pull_batch_size),
				 suspend);
		return;
	}
	if (!ctx->filter.all || c->chunk <= 0)
		return;
	/* Answers that come early wait in memory: bound what may wait. */
	if (ctx->held >= RMQ_MAX_HELD_BYTES)
		return;
	while (c->npend < RMQ_MAX_INFLIGHT && c->issued < Min(c->until, c->broker_max))
		send_one(ctx, conn, c, c->issued,
				 (int32) Min(Min(c->until, c->broker_max) - c->issued, c->chunk), 0);
}

bool
rmq_cursor_owns(const RmqCursor *c, int32 opaque)
{
	for (int i = 0; i < c->npend; i++)
		if (c->pend[i].opaque == opaque)
			return true;
	return false;
}

static void handle_one(RmqPullCtx *ctx, RmqCursor *c, const RmqCommand *resp);

/* What an arrived answer costs while it waits its turn. */
static int64
held_size(const RmqCommand *resp)
{
	return (int64) resp->body_len + 1024;
}

/* Forget the cursor's pulls from pend[from] on, and what they held. */
static void
drop_from(RmqPullCtx *ctx, RmqCursor *c, int from)
{
	for (int i = from; i < c->npend; i++)
		if (c->pend[i].arrived)
			ctx->held -= held_size(&c->pend[i].resp);
	c->npend = from;
}

void
rmq_cursor_drop(RmqPullCtx *ctx, RmqCursor *c)
{
	drop_from(ctx, c, 0);
	c->inflight = false;
	c->issued = c->next;
}

bool
rmq_cursor_handle(RmqPullCtx *ctx, RmqCursor *c, const RmqCommand *resp)
{
	for (int i = 0; i < c->npend; i++)
		if (c->pend[i].opaque == resp->opaque && !c->pend[i].arrived)
		{
			c->pend[i].arrived = true;
			c->pend[i].resp = *resp;
			ctx->held += held_size(resp);
		}
	/* Use answers in offset order; a wrong prediction voids the rest. */
	while (c->npend > 0 && c->pend[0].arrived)
	{
		RmqPending	p = c->pend[0];

		ctx->held -= held_size(&p.resp);
		memmove(&c->pend[0], &c->pend[1], sizeof(RmqPending) * (c->npend - 1));
		c->npend--;
		if (p.offset != c->next)
		{
			drop_from(ctx, c, 0);
			break;
		}
		handle_one(ctx, c, &p.resp);
		if (c->done)
			break;
		if (p.resp.code == RMQ_SUCCESS && c->next > p.offset && c->next - p.offset < p.count &&
			c->next < c->until)
			c->chunk = (int32) (c->next - p.offset);	/* the broker's cap */
		else if (p.resp.code == RMQ_SUCCESS && c->chunk == 0)
			c->chunk = p.count;
		if (c->npend > 0 && c->pend[0].offset != c->next)
			drop_from(ctx, c, 0);	/* later answers are for the wrong offsets */
	}
	if (c->done)
		drop_from(ctx, c, 0);
	c->inflight = c->npend > 0;
	c->opaque = c->npend > 0 ? c->pend[0].opaque : 0;
	if (c->npend == 0)
		c->issued = c->next;
	for (int i = 0; i < c->npend; i++)
		if (c->pend[i].arrived)
			return true;
	return false;
}

static void
handle_one(RmqPullCtx *ctx, RmqCursor *c, const RmqCommand *resp)
{
	RmqPullResult pr;

	rmq_parse_pull(c->addr, resp, &pr);
	c->broker_max = pr.max_offset;
	switch (pr.code)
	{
		case RMQ_SUCCESS:
			{
				RmqMessage *msgs = NULL;
				int			nmsgs = 0;
				char	   *err = NULL;

				/* Damaged records are kept so that an error can name them. */
				if (!rmq_decode_messages(pr.body, pr.body_len,
										 (ctx->opts->check_crc ? RMQ_DECODE_CHECK_CRC : 0) |
										 RMQ_DECODE_KEEP_DAMAGED,
										 &msgs, &nmsgs, &err))
					ereport(ERROR,
							(errcode(ERRCODE_DATA_CORRUPTED),
							 errmsg("could not decode messages of queue %d of broker \"%s\" at offset " INT64_FORMAT,
									c->queue_id, c->broker, c->next),
							 errdetail("%s", err)));
				if (pr.next_begin <= c->next)
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg("broker \"%s\" did not advance queue %d past offset " INT64_FORMAT,
									c->broker, c->queue_id, c->next)));
				for (int i = 0; i < nmsgs && !c->done; i++)
				{
					const RmqMessage *m = &msgs[i];

					/*
					 * Offsets must rise through the answer and stay below its
					 * nextBeginOffset: a broker that says otherwise would make
					 * us store a message and then read it again.
					 */
					if (m->queue_offset >= pr.next_begin ||
						(i > 0 && m->queue_offset < msgs[i - 1].queue_offset + msgs[i - 1].span))
						ereport(ERROR,
								(errcode(ERRCODE_PROTOCOL_VIOLATION),
								 errmsg("broker \"%s\" answered a pull of queue %d at offset " INT64_FORMAT " with a message at offset " INT64_FORMAT " out of order",
										c->broker, c->queue_id, c->next, m->queue_offset),
								 errdetail("Its next begin offset is " INT64_FORMAT ".", pr.next_begin)));
					/* A batch record may begin before the offset asked for. */
					if (m->queue_offset + m->span <= c->next || m->queue_offset >= c->until)
						continue;
					if (m->damage)
					{
						if (ctx->on_damaged == NULL)
							ereport(ERROR,
									(errcode(ERRCODE_DATA_CORRUPTED),
									 m->span > 1
									 ? errmsg("could not decode the batch at offsets [" INT64_FORMAT ", " INT64_FORMAT ") of queue %d of broker \"%s\" for topic \"%s\"",
											  m->queue_offset, m->queue_offset + m->span, c->queue_id, c->broker, c->topic)
									 : errmsg("could not decode the message at offset " INT64_FORMAT " of queue %d of broker \"%s\" for topic \"%s\"",
											  m->queue_offset, c->queue_id, c->broker, c->topic),
									 errdetail("%s", m->damage),
									 errhint("With the option on_error set to skip, it is passed over with a warning.")));
						if (ctx->on_damaged(ctx, c, m))
						{
							c->next = Max(m->queue_offset, c->next);
							c->done = true;
						}
						continue;
					}
					if (!rmq_tag_filter_match(&ctx->filter, rmq_msg_prop(m, "TAGS")))
						continue;
					c->rows++;
					c->bytes += m->body_len;
					ctx->on_message(ctx, c, m);
				}
				c->wait_start = 0;
				if (!c->done)
					c->next = Min(pr.next_begin, c->until);
				break;
			}
		case RMQ_PULL_RETRY_IMMEDIATELY:
			/* Everything scanned was filtered out: a gap, not an end. */
			c->wait_start = 0;
			if (pr.next_begin > c->next)
				c->next = Min(pr.next_begin, c->until);
			break;
		case RMQ_PULL_NOT_FOUND:
			if (ctx->stream)
				break;
			/* The broker already held this pull for us: count that. */
			if (c->wait_start == 0)
				c->wait_start = c->sent_at;
			if (TimestampDifferenceExceeds(c->wait_start, GetCurrentTimestamp(),
										   ctx->opts->pull_timeout_ms))
				ereport(ERROR,
						(errcode(ERRCODE_NO_DATA),
						 errmsg("offset " INT64_FORMAT " of queue %d of broker \"%s\" has not arrived within %d ms",
								c->next, c->queue_id, c->broker, ctx->opts->pull_timeout_ms),
						 errdetail("The queue's max offset is " INT64_FORMAT "; the range ends at " INT64_FORMAT ".",
								   pr.max_offset, c->until),
						 errhint("Ask for a range below rmq_queues().max_offset, or raise rocketmq_stream.pull_timeout to wait for new messages.")));
			break;
		case RMQ_PULL_OFFSET_MOVED:
			if (c->next < pr.min_offset)
			{
				int64		lost_until = Min(pr.min_offset, c->until);

				if (ctx->opts->fail_on_data_loss)
					ereport(ERROR,
							(errcode(ERRCODE_DATA_CORRUPTED),
							 errmsg("offsets [" INT64_FORMAT ", " INT64_FORMAT ") of queue %d of broker \"%s\" for topic \"%s\" are no longer on the broker",
									c->next, lost_until, c->queue_id, c->broker, c->topic),
							 errdetail("The queue's min offset is " INT64_FORMAT ".", pr.min_offset),
							 errhint("With fail_on_data_loss set to false, lost messages are skipped and reported.")));
				if (ctx->on_loss)
					ctx->on_loss(ctx, c, c->next, lost_until);
				c->next = lost_until;
			}
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("offset " INT64_FORMAT " is beyond the end of queue %d of broker \"%s\" for topic \"%s\"",
								c->next, c->queue_id, c->broker, c->topic),
						 errdetail("The queue's max offset is " INT64_FORMAT ".", pr.max_offset)));
			break;
	}
	if (c->next >= c->until)
		c->done = true;
}
