/*
 * rmq_pull.h — pulling queues forward: one pull in flight per queue cursor,
 * responses matched by opaque, gaps followed by nextBeginOffset.  Shared by
 * rmq_create_rdd (bounded ranges) and stream workers (unbounded).
 */
#ifndef RMQ_PULL_H
#define RMQ_PULL_H

#include "rmq_client.h"

/*
 * Up to this many pulls are kept in flight per queue, at predicted offsets
 * below the queue's known max; answers are used in offset order, and a
 * wrong prediction (a gap, a short answer) drops the rest.
 */
#define RMQ_MAX_INFLIGHT 4
/*
 * Answers that arrive before their turn wait in memory; while they hold
 * this much, no further pull is sent ahead of need.  Real answers are at
 * most a few MiB, and a hostile broker's at most 16 MiB each.
 */
#define RMQ_MAX_HELD_BYTES ((int64) 64 * 1024 * 1024)

typedef struct RmqPending
{
	int32		opaque;
	int64		offset;
	int32		count;
	bool		arrived;
	RmqCommand	resp;
} RmqPending;

typedef struct RmqCursor
{
	char	   *topic;
	char	   *broker;
	int32		queue_id;
	const char *addr;
	int64		next;			/* next offset to read */
	int64		until;			/* stop here; PG_INT64_MAX for a stream */
	bool		done;
	bool		inflight;		/* some pull is in flight */
	int32		opaque;			/* of the oldest pull in flight */
	RmqPending	pend[RMQ_MAX_INFLIGHT];
	int			npend;
	int64		issued;			/* pulls cover offsets below this */
	int32		chunk;			/* messages one pull returns, as observed */
	TimestampTz sent_at;
	TimestampTz deadline;
	TimestampTz wait_start;		/* when we first found nothing new */
	int64		broker_max;		/* as of the last response, -1 unknown */
	int64		rows;			/* messages delivered (stream: this batch) */
	int64		bytes;
	void	   *user;
} RmqCursor;

typedef struct RmqPullCtx
{
	const char *group;
	const RmqOptions *opts;
	RmqTagFilter filter;
	bool		stream;			/* nothing new is normal, not an error */
	void		(*on_message) (struct RmqPullCtx *ctx, RmqCursor *c, const RmqMessage *m);
	/* offsets [from, until) expired; called only when !fail_on_data_loss */
	void		(*on_loss) (struct RmqPullCtx *ctx, RmqCursor *c, int64 from, int64 until);

	/*
	 * A message that does not decode (m->damage says why).  Return true to
	 * stop the cursor right before it (c->next = its offset, the cursor is
	 * done), false to go past it.  NULL: an error names it.
	 */
	bool		(*on_damaged) (struct RmqPullCtx *ctx, RmqCursor *c, const RmqMessage *m);
	void	   *arg;
	int64		held;			/* bytes of answers waiting their turn */
} RmqPullCtx;

extern void rmq_cursor_send(RmqPullCtx *ctx, RmqConn *conn, RmqCursor *c, int64 max_suspend_ms);
/* Does this answer belong to one of the cursor's pulls? */
extern bool rmq_cursor_owns(const RmqCursor *c, int32 opaque);
/* Use an answer; true if the cursor still holds unprocessed answers. */
extern bool rmq_cursor_handle(RmqPullCtx *ctx, RmqCursor *c, const RmqCommand *resp);
/* Forget the cursor's pulls in flight (their answers will be dropped). */
extern void rmq_cursor_drop(RmqPullCtx *ctx, RmqCursor *c);

#endif
