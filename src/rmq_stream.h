/*
 * rmq_stream.h — stream workers: batches, the sink, the launcher.
 */
#ifndef RMQ_STREAM_H
#define RMQ_STREAM_H

#include "utils/jsonb.h"
#include "utils/relcache.h"

#include "rmq_pull.h"

typedef enum RmqFormat
{
	RMQ_FORMAT_MESSAGE,
	RMQ_FORMAT_JSON,
	RMQ_FORMAT_JSON_COLUMNS,
	RMQ_FORMAT_HANDLER
} RmqFormat;

/* A message of the batch being assembled, and the queue it came from. */
typedef struct RmqBatchMsg
{
	RmqMessage	m;
	RmqCursor  *cursor;
} RmqBatchMsg;

/* A queue's part of a batch: [from, until) and how many rows. */
typedef struct RmqBatchRange
{
	RmqCursor  *cursor;
	int64		from;
} RmqBatchRange;

/* rmq_target.c: refuse targets a stream cannot write exactly once. */
extern void rmq_target_check(Relation rel);
/*
 * Insert messages through COPY (formats message, json, json_columns with
 * its json_paths); raises errors.
 */
extern uint64 rmq_sink_copy(const char *target, RmqFormat fmt, Jsonb *json_paths,
							RmqBatchMsg *msgs, int n);
/* Errors unless a stream of this format can write to rel. */
/* Call the handler with the batch's messages and ranges. */
extern void rmq_sink_handler(Oid handler, RmqBatchMsg *msgs, int n,
							 RmqBatchRange *ranges, int nranges);

/* settings */
extern char *rmq_database;
extern int	rmq_max_workers;

extern void rmq_launcher_register(void);
extern PGDLLEXPORT void rmq_launcher_main(Datum arg);
extern PGDLLEXPORT void rmq_worker_main(Datum arg);
/* rmq_worker_wait.c: a sleep of the launcher's or a worker's that wakes for latch, signals, reload */
extern void rmq_worker_wait(long ms);

/* What the launcher passes a worker in bgw_extra. */
typedef struct RmqWorkerArgs
{
	Oid			dboid;
	Oid			owner;
	int32		generation;
	char		stream[64];
} RmqWorkerArgs;

#endif
