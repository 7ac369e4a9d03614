/*
 * rmq_sql.h — helpers shared by the SQL-callable functions.
 */
#ifndef RMQ_SQL_H
#define RMQ_SQL_H

#include "postgres.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/timestamp.h"

/* rmq_offset_range: [from_offset, until_offset) of one queue. */
typedef struct RmqRange
{
	char	   *topic;
	char	   *broker;
	int32		queue_id;
	int64		from;
	int64		until;
} RmqRange;

extern RmqRange *rmq_ranges_from_array(ArrayType *arr, int *n);
extern void rmq_check_range(const RmqRange *r, int index);
extern char *rmq_text_arg(FunctionCallInfo fcinfo, int argno, const char *name);

extern void rmq_offsets_init(void);

struct RmqMessage;
/*
 * Columns of rmq_create_rdd and of type rmq_message.  A catalog still at
 * 0.1.0 (library updated, ALTER EXTENSION not yet run) has the first 15.
 */
#define RMQ_MESSAGE_NATTS 16
#define RMQ_MESSAGE_NATTS_0_1 15
extern void rmq_message_datums(const struct RmqMessage *m, Datum topic_d, Datum broker_d,
							   Datum *v, bool *n);

extern TimestampTz rmq_ms_to_timestamptz(int64 ms);
extern int64 rmq_timestamptz_to_ms(TimestampTz ts);

#endif
