/*
 * rmq_send.c — rmq_send and rmq_send_batch: produce messages the official
 * Java client reads as its own (UNIQ_KEY ids, zlib bodies from 4 KiB,
 * TAGS/KEYS/WAIT properties, the V2 one-letter send header).
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "rmq_client.h"
#include "rmq_sql.h"

#define MAX_MESSAGE_SIZE (4 * 1024 * 1024)
#define COMPRESS_OVER 4096
#define SEND_RETRIES 2
#define PRODUCER_GROUP "rocketmq_stream_producer"

static uint32 queue_rotor = 0;
static bool rotor_init = false;
static unsigned char uniq_prefix[10];
static bool uniq_init = false;
static uint16 uniq_counter = 0;

/*
 * The names Message.putUserProperty refuses: MessageConst.STRING_HASH_SET
 * of the 5.3.3 client, complete.  The system sets these; a user value
 * would be taken for the system's (TTL, MSG_TYPE, a delay, a transaction).
 */
static const char *const reserved_props[] = {
	"TRACE_ON", "MSG_REGION", "KEYS", "TAGS", "WAIT", "DELAY", "RETRY_TOPIC", "REAL_TOPIC",
	"REAL_QID", "TRAN_MSG", "PGROUP", "MIN_OFFSET", "MAX_OFFSET", "BUYER_ID",
	"ORIGIN_MESSAGE_ID", "TRANSFER_FLAG", "CORRECTION_FLAG", "MQ2_FLAG", "RECONSUME_TIME",
	"UNIQ_KEY", "MAX_RECONSUME_TIMES", "CONSUME_START_TIME", "POP_CK", "POP_CK_OFFSET",
	"1ST_POP_TIME", "TRAN_PREPARED_QUEUE_OFFSET", "DUP_INFO", "EXTEND_UNIQ_INFO",
	"INSTANCE_ID", "CORRELATION_ID", "REPLY_TO_CLIENT", "TTL", "ARRIVE_TIME",
	"PUSH_REPLY_TIME", "CLUSTER", "MSG_TYPE", "INNER_MULTI_QUEUE_OFFSET", "TIMER_DELAY_MS",
	"TIMER_DELAY_SEC", "TIMER_DELIVER_MS", "TIMER_ENQUEUE_MS", "TIMER_DEQUEUE_MS",
	"TIMER_ROLL_TIMES", "TIMER_OUT_MS", "TIMER_DEL_UNIQKEY", "TIMER_DELAY_LEVEL",
	"__BORNHOST", "BORN_TIMESTAMP", "DLQ_ORIGIN_TOPIC", "DLQ_ORIGIN_MESSAGE_ID", "__CRC32#",
	NULL
};

/* Java's String.trim().isEmpty(): nothing but characters <= ' '. */
static bool
is_blank(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s > ' ')
			return false;
	return true;
}

/*
 * UNIQ_KEY in the Java layout (MessageClientIDSetter), so admin tools can
 * still read the time out of it: ip(4) pid(2) random(4) | ms-in-month(4)
 * counter(2), uppercase hex.
 */
static char *
new_uniq_key(void)
{
	unsigned char b[16];
	char	   *out = palloc(33);
	struct timespec now;
	struct tm	tmv;
	time_t		month_start;
	int64		ms;

	if (!uniq_init)
	{
		uint32		ip = htonl(INADDR_LOOPBACK);
		uint16		pid = (uint16) MyProcPid;
		uint32		rnd = (uint32) random();

		memcpy(uniq_prefix, &ip, 4);
		uniq_prefix[4] = pid >> 8;
		uniq_prefix[5] = pid & 0xFF;
		for (int i = 0; i < 4; i++)
			uniq_prefix[6 + i] = (rnd >> (24 - 8 * i)) & 0xFF;
		uniq_counter = (uint16) random();
		uniq_init = true;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	localtime_r(&now.tv_sec, &tmv);
	tmv.tm_mday = 1;
	tmv.tm_hour = tmv.tm_min = tmv.tm_sec = 0;
	month_start = mktime(&tmv);
	ms = ((int64) now.tv_sec - month_start) * 1000 + now.tv_nsec / 1000000;
	memcpy(b, uniq_prefix, 10);
	for (int i = 0; i < 4; i++)
		b[10 + i] = ((uint32) ms >> (24 - 8 * i)) & 0xFF;
	uniq_counter++;
	b[14] = uniq_counter >> 8;
	b[15] = uniq_counter & 0xFF;
	rmq_hex(b, 16, out);
	return out;
}

static void
check_prop_text(const char *what, const char *s)
{
	for (const char *p = s; *p; p++)
		if (*p == 1 || *p == 2)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain the bytes 0x01 or 0x02", what),
					 errdetail("RocketMQ uses them to separate properties.")));
}

/* User properties from jsonb, then the system ones we own. */
static void
build_props(StringInfo out, Jsonb *props, const char *tags, const char *keys, const char *uniq)
{
	if (props)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *key = NULL;

		if (!JB_ROOT_IS_OBJECT(props))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("properties must be a JSON object")));
		it = JsonbIteratorInit(&props->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				key = pnstrdup(v.val.string.val, v.val.string.len);
				check_prop_text("property names", key);
				if (is_blank(key))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("property names must not be empty or blank"),
							 errdetail("The Java client refuses them, and the broker drops empty ones.")));
				for (int i = 0; reserved_props[i]; i++)
					if (strcmp(reserved_props[i], key) == 0)
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								 errmsg("property \"%s\" is reserved by RocketMQ", key),
								 errdetail("RocketMQ sets it itself; the Java client's putUserProperty refuses it too."),
								 strcmp(key, "TAGS") == 0 || strcmp(key, "KEYS") == 0
								 ? errhint("Pass tags and keys as their own arguments.") : 0));
			}
			else if (tok == WJB_VALUE)
			{
				char	   *val;

				if (v.type == jbvString)
					val = pnstrdup(v.val.string.val, v.val.string.len);
				else if (v.type == jbvNumeric)
					val = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
				else if (v.type == jbvBool)
					val = v.val.boolean ? "true" : "false";
				else if (v.type == jbvNull)
					continue;
				else
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("property \"%s\" must be a string, number or boolean", key)));
				check_prop_text("property values", val);
				if (is_blank(val))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("property \"%s\" must not be empty or blank", key),
							 errdetail("The Java client refuses such values, and the broker drops empty ones."),
							 errhint("Leave the property out, or give it a JSON null.")));
				rmq_props_append(out, key, val);
			}
		}
	}
	if (tags)
	{
		check_prop_text("tags", tags);
		rmq_props_append(out, "TAGS", tags);
	}
	if (keys)
	{
		check_prop_text("keys", keys);
		rmq_props_append(out, "KEYS", keys);
	}
	rmq_props_append(out, "WAIT", "true");
	if (uniq)
		rmq_props_append(out, "UNIQ_KEY", uniq);
	if (out->len > 32767)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message properties are %d bytes; RocketMQ allows at most 32767", out->len)));
}

typedef struct PubQueue
{
	const char *broker;
	const char *addr;
	int32		qid;
} PubQueue;

static int
cmp_qd(const void *a, const void *b)
{
	return strcmp(((const RmqQueueData *) a)->broker_name, ((const RmqQueueData *) b)->broker_name);
}

/* The publish view of a route: writable queues of brokers with a master. */
static PubQueue *
publish_queues(RmqRoute *route, int *n)
{
	RmqQueueData *qs = palloc(sizeof(RmqQueueData) * Max(route->nqueues, 1));
	PubQueue   *out;
	int			total = 0;

	memcpy(qs, route->queues, sizeof(RmqQueueData) * route->nqueues);
	qsort(qs, route->nqueues, sizeof(RmqQueueData), cmp_qd);
	/* The route parser bounds these: at most RMQ_MAX_TOPIC_QUEUES in all. */
	for (int i = 0; i < route->nqueues; i++)
		total += qs[i].write_queue_nums;
	out = palloc(mul_size(sizeof(PubQueue), Max(total, 1)));
	*n = 0;
	for (int i = 0; i < route->nqueues; i++)
	{
		const char *addr = rmq_route_broker_addr(route, qs[i].broker_name);

		if (!(qs[i].perm & RMQ_PERM_WRITE) || addr == NULL)
			continue;
		for (int q = 0; q < qs[i].write_queue_nums; q++)
		{
			out[*n].broker = pstrdup(qs[i].broker_name);
			out[*n].addr = pstrdup(addr);
			out[*n].qid = q;
			(*n)++;
		}
	}
	return out;
}

static bool
retriable(int code)
{
	return code == RMQ_TOPIC_NOT_EXIST || code == 14 || code == RMQ_SYSTEM_ERROR ||
		code == RMQ_SYSTEM_BUSY || code == 16 || code == RMQ_GO_AWAY;
}

/* Send one frame body (single message or batch); returns the response. */
static void
send_with_retry(const RmqOptions *o, const char *topic, bool batch, int32 sysflag,
				const char *props, const char *body, uint32 body_len, RmqCommand *resp)
{
	RmqRoute   *route = rmq_route(o, topic, false);
	int			nq;
	PubQueue   *qs = publish_queues(route, &nq);
	const char *last_broker = NULL;

	if (o->queue_id >= 0 || o->broker)
	{
		/* A chosen queue (ordered messages): no retry elsewhere. */
		int			k = 0;

		for (int i = 0; i < nq; i++)
			if ((o->queue_id < 0 || qs[i].qid == o->queue_id) &&
				(o->broker == NULL || strcmp(qs[i].broker, o->broker) == 0))
				qs[k++] = qs[i];
		if (k == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 o->broker ? errmsg("RocketMQ topic \"%s\" has no writable queue %d on broker \"%s\"",
										topic, o->queue_id, o->broker)
					 : errmsg("RocketMQ topic \"%s\" has no writable queue %d", topic, o->queue_id)));
		nq = k;
	}
	if (nq == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("RocketMQ topic \"%s\" has no writable queue", topic)));
	if (!rotor_init)
	{
		queue_rotor = (uint32) random();
		rotor_init = true;
	}
	for (int attempt = 0; attempt <= SEND_RETRIES; attempt++)
	{
		RmqCommand	req;
		PubQueue   *q = &qs[(queue_rotor++ & 0x7FFFFFFF) % nq];

		/* On retry, prefer another broker, as the Java producer does. */
		for (int k = 0; last_broker && k < nq && strcmp(q->broker, last_broker) == 0; k++)
			q = &qs[(queue_rotor++ & 0x7FFFFFFF) % nq];
		rmq_cmd_init(&req, batch ? RMQ_SEND_BATCH_MESSAGE : RMQ_SEND_MESSAGE_V2);
		rmq_cmd_add(&req, "a", PRODUCER_GROUP);
		rmq_cmd_add(&req, "b", topic);
		rmq_cmd_add(&req, "c", "TBW102");
		rmq_cmd_add(&req, "d", "4");
		rmq_cmd_add(&req, "e", psprintf("%d", q->qid));
		rmq_cmd_add(&req, "f", psprintf("%d", sysflag));
		rmq_cmd_add_int64(&req, "g", rmq_timestamptz_to_ms(GetCurrentTimestamp()));
		rmq_cmd_add(&req, "h", "0");
		rmq_cmd_add(&req, "i", props);
		rmq_cmd_add(&req, "j", "0");
		rmq_cmd_add(&req, "k", "false");
		if (batch)
			rmq_cmd_add(&req, "m", "true");
		rmq_cmd_add(&req, "n", q->broker);
		req.body = body;
		req.body_len = body_len;
		rmq_rpc(o, q->addr, &req, resp);
		/* These codes all mean the message is stored. */
		if (resp->code == RMQ_SUCCESS || resp->code == 10 || resp->code == 11 || resp->code == 12)
			return;
		if (!retriable(resp->code) || attempt == SEND_RETRIES)
			rmq_broker_error(q->addr, "a send request", resp);
		last_broker = q->broker;
		if (resp->code == RMQ_TOPIC_NOT_EXIST)
		{
			route = rmq_route(o, topic, true);
			qs = publish_queues(route, &nq);
		}
	}
}

static char *
opt_text(FunctionCallInfo fcinfo, int argno)
{
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return NULL;
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

PG_FUNCTION_INFO_V1(rmq_send);
Datum
rmq_send(PG_FUNCTION_ARGS)
{
	char	   *topic = rmq_text_arg(fcinfo, 0, "topic");
	bytea	   *body;
	char	   *tags = opt_text(fcinfo, 2);
	char	   *keys = opt_text(fcinfo, 3);
	Jsonb	   *props = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	RmqOptions	o;
	StringInfoData pstr;
	char	   *uniq = new_uniq_key();
	const char *data;
	uint32		len;
	int32		sysflag = 0;
	RmqCommand	resp;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("body must not be null")));
	body = PG_GETARG_BYTEA_PP(1);
	if (VARSIZE_ANY_EXHDR(body) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message body must not be empty"),
				 errdetail("RocketMQ does not store messages without a body.")));
	rmq_options_init(&o, PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5));
	initStringInfo(&pstr);
	build_props(&pstr, props, tags, keys, uniq);
	data = VARDATA_ANY(body);
	len = VARSIZE_ANY_EXHDR(body);
	if (len >= COMPRESS_OVER)
	{
		StringInfoData z;

		initStringInfo(&z);
		if (rmq_compress_zlib(data, len, &z) && (uint32) z.len < len)
		{
			data = z.data;
			len = z.len;
			sysflag = RMQ_SYSFLAG_COMPRESSED | RMQ_COMPRESSION_ZLIB;
		}
	}
	if (len > MAX_MESSAGE_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message body is %u bytes after compression; RocketMQ accepts at most %d",
						len, MAX_MESSAGE_SIZE)));
	send_with_retry(&o, topic, false, sysflag, pstr.data, data, len, &resp);
	PG_RETURN_TEXT_P(cstring_to_text(uniq));
}

PG_FUNCTION_INFO_V1(rmq_send_batch);
Datum
rmq_send_batch(PG_FUNCTION_ARGS)
{
	char	   *topic = rmq_text_arg(fcinfo, 0, "topic");
	char	   *tags = opt_text(fcinfo, 2);
	Jsonb	   *props = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	Datum	   *bodies,
			   *keys = NULL,
			   *ids;
	bool	   *bnulls,
			   *knulls = NULL;
	int			n,
				nkeys = 0;
	RmqOptions	o;
	StringInfoData batch;
	StringInfoData header_props;
	RmqCommand	resp;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("bodies must not be null")));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), BYTEAOID, -1, false, TYPALIGN_INT,
					  &bodies, &bnulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a batch needs at least one message")));
	if (!PG_ARGISNULL(3))
	{
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT,
						  &keys, &knulls, &nkeys);
		if (nkeys != n)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("keys has %d elements but bodies has %d", nkeys, n)));
	}
	rmq_options_init(&o, PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5));
	initStringInfo(&batch);
	ids = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		StringInfoData pstr;
		char	   *uniq = new_uniq_key();
		bytea	   *b;

		if (bnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("body %d of the batch is null", i + 1)));
		b = DatumGetByteaPP(bodies[i]);
		if (VARSIZE_ANY_EXHDR(b) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("body %d of the batch is empty", i + 1),
					 errdetail("RocketMQ does not store messages without a body.")));
		initStringInfo(&pstr);
		build_props(&pstr, props, tags,
					keys && !knulls[i] ? TextDatumGetCString(keys[i]) : NULL, uniq);
		rmq_batch_append(&batch, 0, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), pstr.data, pstr.len);
		ids[i] = CStringGetTextDatum(uniq);
		if (batch.len > MAX_MESSAGE_SIZE)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("batch exceeds %d bytes", MAX_MESSAGE_SIZE),
					 errhint("Split it into smaller batches.")));
	}

	/*
	 * No UNIQ_KEY at batch level: brokers up to 5.3.3 copy batch properties
	 * into every message, which would give them all one id.
	 */
	initStringInfo(&header_props);
	rmq_props_append(&header_props, "WAIT", "true");
	send_with_retry(&o, topic, true, 0, header_props.data, batch.data, batch.len, &resp);
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT));
}
