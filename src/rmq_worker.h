/*
 * rmq_worker.h — what a stream's ingest worker knows, shared by the files
 * that make it up:
 *
 *   rmq_stream_def.c   the stream's row: definition and options, whether it
 *                      is still this worker's to run, what went wrong
 *   rmq_queue_plan.c   which queues are this worker's, and where each starts
 *   rmq_member.c       with "membership": "group", a member of the consumer
 *                      group: its client id, heartbeats, broker requests, leaving
 *   rmq_member_share.c a member's share of the queues, their locks, hand-over
 *   rmq_member_restart.c what a member may take from a broker that just started
 *   rmq_batch.c        assembling a batch: pulls out on every broker, answers
 *                      in, brokers that fail sitting out
 *   rmq_commit.c       committing a batch with its offsets, and the error
 *                      policy: poison messages, dead letters, what is retried
 *   rmq_worker.c       the loop, and the worker process around it
 *   rmq_worker_wait.c  its sleeps and back-off
 */
#ifndef RMQ_WORKER_H
#define RMQ_WORKER_H

#include "executor/spi.h"
#include "utils/jsonb.h"

#include "rmq_stream.h"

/* What rmq_stream says about the stream, its options resolved. */
typedef struct StreamDef
{
	const char *name;
	int			index;			/* this worker's, of parallelism */
	int32		generation;
	char	   *schema;			/* the extension's, quoted */
	bool		catalog_010;	/* its tables are still 0.1.0's: ALTER EXTENSION UPDATE pending */
	char	   *topic;
	char	   *group;
	char	   *target;
	RmqFormat	fmt;
	Jsonb	   *json_paths;		/* json_columns: column -> path, or NULL */
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
	bool		membership;		/* a member of its consumer group */
} StreamDef;

/* One of the worker's queues, beside its cursor (same index). */
typedef struct QueueState
{
	int64		from;			/* its offset when the batch began */
	int64		stop_at;		/* under on_error = fail: nothing from here on */
	double		tokens;			/* rate limiter */
	TimestampTz down_until;		/* its broker could not be reached: not before */
	TimestampTz down_since;
	int			down_failures;
	RmqConn    *conn;
	/* membership */
	int64		stored;			/* its offset committed here */
	int64		at_broker;		/* its offset committed to the broker, -1 unknown */
	bool		lock_doubt;		/* its broker went away since the lock was renewed */
	bool		released;		/* let go to another member */
} QueueState;

/* The batch being assembled and committed. */
typedef struct Batch
{
	RmqBatchMsg *msgs;
	int			nmsgs;
	int			msgs_cap;
	int64		rows;
	int64		bytes;
	TimestampTz first_row_at;
	StringInfoData lost;		/* JSON objects of skipped lost ranges */
	char	   *poison;			/* under on_error = fail: what stopped us */
	RmqBatchMsg *damaged;		/* messages that did not decode, set aside */
	int			ndamaged;
} Batch;

/* A stream's membership of its consumer group (rmq_member.c). */
typedef struct Member
{
	char	   *client_id;
	RmqOptions	opts;			/* the stream's, on connections of their own */
	MemoryContext keep;			/* the run's */
	char	   *heartbeat;		/* HEART_BEAT body, the same for the run */
	char	  **addrs;			/* brokers heartbeated this run */
	int			naddrs;
	TimestampTz heartbeat_at;
	TimestampTz rebalance_at;
	TimestampTz locked_at;		/* every queue of ours locked again then */
	TimestampTz confirmed_at;	/* ditto, never reset to force a renewal */
	TimestampTz want_at;		/* queues of our share others still hold: tried then */
	bool		wanting;
	TimestampTz held_back_until;	/* a young broker's queues: not before then */
	TimestampTz started_at;
} Member;

typedef struct Stream
{
	StreamDef	def;
	/* the plan: this worker's queues */
	RmqCursor  *cursors;
	QueueState *qs;
	int			ncursors;
	RmqPullCtx	pull;
	Batch		batch;
	TimestampTz last_tick;		/* rate limiter's last refill */
	uint64		batches;
	bool		replan;			/* run again, at once ... */
	const char *replan_why;		/* ... because */
	bool		retrying;		/* the stream's row may say this worker retries */
	bool		committed;		/* this run committed a batch */
	TimestampTz vanished_since; /* some of its queues left the route then */
	uint64		epoch;			/* rmq_profile_epoch its options were resolved at */
	Member		member;
} Stream;

/* rmq_stream_def.c */
extern void rmq_xact_begin(void);
extern void rmq_xact_commit(void);
extern int	rmq_spi_exec(const char *sql, int nargs, Oid *types, Datum *vals, bool readonly);
extern char *rmq_spi_text(int row, int col);
extern Datum rmq_text_datum(const char *s);
extern Datum rmq_bytea_datum(const char *p, size_t len);
extern bool rmq_stream_load(Stream *s, MemoryContext cxt);
extern bool rmq_stream_current(Stream *s);
extern void rmq_stream_record_error(Stream *s, const char *msg, bool fail);
extern void rmq_stream_record_healthy(Stream *s);
extern bool rmq_warn_due(const char *cause, int *held_back);

/* rmq_queue_plan.c */
extern void rmq_plan_assign(Stream *s);
extern bool rmq_plan_current(Stream *s);
extern void rmq_plan_resolve_starts(Stream *s);
extern bool rmq_plan_probe(Stream *s);

/* rmq_queue_plan.c, shared with rmq_member.c */
extern int	rmq_plan_topic_queues(Stream *s, const char *topic, RmqRoute *route, RmqCursor **out);
extern int	rmq_plan_cmp_cursor(const void *a, const void *b);

/* rmq_member.c */
extern void rmq_member_init(Stream *s);
extern void rmq_member_leave(Stream *s);
extern void rmq_member_end_run(Stream *s);
extern void rmq_member_hand_back(Stream *s);
extern char *rmq_member_retry_topic(Stream *s);
extern bool rmq_member_heartbeat(Stream *s, const char *addr);
extern void rmq_member_join(Stream *s, RmqRoute **routes, int nroutes, MemoryContext keep);
extern void rmq_member_serve(Stream *s);
extern bool rmq_member_changed(void);
extern void rmq_member_trouble(Stream *s, const char *addr, const char *what, MemoryContext cxt);
extern void rmq_member_lock(Stream *s, RmqCursor *qs, int n, bool *ok);
extern void rmq_member_unlock(Stream *s, const RmqOptions *o, RmqCursor **qs, int n);
extern void rmq_member_flush_offsets(Stream *s);

/* rmq_member_restart.c */
extern void rmq_member_remember(Stream *s);
extern int	rmq_member_hold_back(Stream *s, RmqCursor *share, int n, bool *take, bool first);

/* rmq_member_share.c */
extern int	rmq_member_assign(Stream *s, RmqCursor **out);
extern bool rmq_member_tick(Stream *s);
extern void rmq_member_confirm_locks(Stream *s);

/* rmq_batch.c */
extern void rmq_batch_init(Stream *s);
extern const char *rmq_batch_fill(Stream *s, MemoryContext batch_cxt, TimestampTz close_at);
extern bool rmq_batch_settle(Stream *s);

/* rmq_commit.c */
extern bool rmq_error_is_transient(int code);
extern bool rmq_commit_batch(Stream *s, TimestampTz started, const char *reason);

/* rmq_worker_wait.c (and rmq_worker_wait(), in rmq_stream.h) */
extern long rmq_backoff_ms(int failures);

#endif
