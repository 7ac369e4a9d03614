/*
 * rmq_admin.c — queues and their offsets: rmq_queues, rmq_offset_for_time,
 * rmq_create_topic.
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "rmq_client.h"
#include "rmq_sql.h"

static int
cmp_queue_data(const void *a, const void *b)
{
	return strcmp(((const RmqQueueData *) a)->broker_name, ((const RmqQueueData *) b)->broker_name);
}

PG_FUNCTION_INFO_V1(rmq_queues);
Datum
rmq_queues(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *topic = rmq_text_arg(fcinfo, 0, "topic");
	RmqOptions	o;
	RmqRoute   *route;
	RmqQueueData *qs;
	MemoryContext per_queue;

	rmq_options_init(&o, PG_NARGS() > 1 && !PG_ARGISNULL(1) ? PG_GETARG_JSONB_P(1) : NULL);
	InitMaterializedSRF(fcinfo, 0);
	route = rmq_route(&o, topic, true);
	/* Each queue's two answers are freed before the next: a route may list 65536. */
	per_queue = AllocSetContextCreate(CurrentMemoryContext, "rmq_queues answers", ALLOCSET_SMALL_SIZES);
	/* Same order as the Java client's MessageQueue sort: broker, queue. */
	qs = palloc(sizeof(RmqQueueData) * Max(route->nqueues, 1));
	memcpy(qs, route->queues, sizeof(RmqQueueData) * route->nqueues);
	qsort(qs, route->nqueues, sizeof(RmqQueueData), cmp_queue_data);
	for (int i = 0; i < route->nqueues; i++)
	{
		const char *addr;

		if (!(qs[i].perm & RMQ_PERM_READ))
			continue;
		addr = rmq_route_broker_addr(route, qs[i].broker_name);
		if (addr == NULL)
			continue;			/* no master: nothing to read from */
		addr = pstrdup(addr);
		for (int q = 0; q < qs[i].read_queue_nums; q++)
		{
			Datum		v[4];
			bool		nulls[4] = {false};
			int64		min,
						max;
			MemoryContext old = MemoryContextSwitchTo(per_queue);

			min = rmq_queue_offset(&o, addr, RMQ_GET_MIN_OFFSET, topic, qs[i].broker_name, q);
			max = rmq_queue_offset(&o, addr, RMQ_GET_MAX_OFFSET, topic, qs[i].broker_name, q);
			MemoryContextSwitchTo(old);
			MemoryContextReset(per_queue);
			v[0] = CStringGetTextDatum(qs[i].broker_name);
			v[1] = Int32GetDatum(q);

			/*
			 * A BatchCQ queue that never held a message says -1; offsets
			 * start at 0 there as everywhere, and [0, max) must stay a
			 * valid range for the read-everything pattern.
			 */
			v[2] = Int64GetDatum(Max(min, 0));
			v[3] = Int64GetDatum(max);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
		}
	}
	return (Datum) 0;
}

static void
check_queue(const RmqOptions *o, const char *topic, const char *broker, int32 qid)
{
	RmqRoute   *route = rmq_route(o, topic, false);
	const RmqQueueData *qd = rmq_route_queue(route, broker);

	if (qd == NULL || qid < 0 || qid >= qd->read_queue_nums)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue %d of broker \"%s\" does not exist for topic \"%s\"",
						qid, broker, topic)));
}

PG_FUNCTION_INFO_V1(rmq_offset_for_time);
Datum
rmq_offset_for_time(PG_FUNCTION_ARGS)
{
	char	   *topic = rmq_text_arg(fcinfo, 0, "topic");
	char	   *broker = rmq_text_arg(fcinfo, 1, "broker");
	int32		qid;
	TimestampTz ts;
	RmqOptions	o;
	const char *addr;

	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("queue_id and time must not be null")));
	qid = PG_GETARG_INT32(2);
	ts = PG_GETARG_TIMESTAMPTZ(3);
	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time must be finite")));
	rmq_options_init(&o, PG_NARGS() > 4 && !PG_ARGISNULL(4) ? PG_GETARG_JSONB_P(4) : NULL);
	addr = rmq_broker_addr(&o, topic, broker);
	check_queue(&o, topic, broker, qid);
	PG_RETURN_INT64(rmq_search_offset(&o, addr, topic, broker, qid, rmq_timestamptz_to_ms(ts)));
}

/*
 * Topic attributes as the broker takes them ("+queue.type=BatchCQ,+k=v"),
 * from a jsonb object of strings; NULL for none.
 */
static char *
topic_attributes(Jsonb *j)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	StringInfoData out;
	char	   *key = NULL;

	if (j == NULL)
		return NULL;
	if (!JB_ROOT_IS_OBJECT(j))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic attributes must be a JSON object"),
				 errhint("For example {\"queue.type\": \"BatchCQ\"} or {\"message.type\": \"FIFO\"}.")));
	initStringInfo(&out);
	it = JsonbIteratorInit(&j->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			char	   *val;

			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("topic attribute \"%s\" must be a string", key)));
			val = pnstrdup(v.val.string.val, v.val.string.len);
			/* The broker splits on these; it has no way to quote them. */
			if (key[0] == '\0' || val[0] == '\0' || strpbrk(key, ",=+-") || strpbrk(val, ",="))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid topic attribute \"%s\": \"%s\"", key, val),
						 errdetail("Names and values must be non-empty; names cannot hold ',', '=', '+' or '-', values neither ',' nor '='.")));
			appendStringInfo(&out, "%s+%s=%s", out.len ? "," : "", key, val);
		}
	}
	return out.len ? out.data : NULL;
}

/*
 * Create (or update) a topic on every broker of the cluster, or on one.
 * Meant for set-up and tests; production topics usually come from ops.
 */
PG_FUNCTION_INFO_V1(rmq_create_topic);
Datum
rmq_create_topic(PG_FUNCTION_ARGS)
{
	char	   *topic = rmq_text_arg(fcinfo, 0, "topic");
	int32		queues = PG_ARGISNULL(1) ? 8 : PG_GETARG_INT32(1);
	char	   *only = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	RmqOptions	o;
	RmqCommand	req,
				resp;
	RmqRoute	cluster;
	char	   *err = NULL;
	int			created = 0;
	char	   *attrs;

	if (queues < 1 || queues > 1024)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("queues must be between 1 and 1024")));
	for (const char *p = topic; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-' || *p == '%' || *p == '|'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid RocketMQ topic name \"%s\"", topic),
					 errdetail("Topic names consist of letters, digits, '_', '-', '%%' and '|'.")));
	if (strlen(topic) > 127)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("RocketMQ topic names are at most 127 characters")));
	rmq_options_init(&o, PG_NARGS() > 3 && !PG_ARGISNULL(3) ? PG_GETARG_JSONB_P(3) : NULL);
	attrs = topic_attributes(PG_NARGS() > 4 && !PG_ARGISNULL(4) ? PG_GETARG_JSONB_P(4) : NULL);

	rmq_cmd_init(&req, RMQ_GET_BROKER_CLUSTER_INFO);
	rmq_namesrv_rpc(&o, &req, &resp);
	if (resp.code != RMQ_SUCCESS)
		rmq_broker_error(o.namesrv_addr, "a cluster info request", &resp);
	if (!rmq_parse_cluster_info(resp.body, resp.body_len, &cluster, &err))
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("invalid cluster info from %s", o.namesrv_addr),
				 errdetail("%s", err)));
	for (int i = 0; i < cluster.nbrokers; i++)
	{
		RmqBrokerData *b = &cluster.brokers[i];

		if (b->master_addr == NULL || (only && strcmp(only, b->name) != 0))
			continue;
		rmq_cmd_init(&req, RMQ_UPDATE_AND_CREATE_TOPIC);
		rmq_cmd_add(&req, "topic", topic);
		rmq_cmd_add(&req, "defaultTopic", "TBW102");
		rmq_cmd_add(&req, "readQueueNums", psprintf("%d", queues));
		rmq_cmd_add(&req, "writeQueueNums", psprintf("%d", queues));
		rmq_cmd_add(&req, "perm", "6");
		rmq_cmd_add(&req, "topicFilterType", "SINGLE_TAG");
		rmq_cmd_add(&req, "topicSysFlag", "0");
		rmq_cmd_add(&req, "order", "false");
		if (attrs)
			rmq_cmd_add(&req, "attributes", attrs);
		rmq_rpc(&o, b->master_addr, &req, &resp);
		if (resp.code != RMQ_SUCCESS)
			rmq_broker_error(b->master_addr, "a create-topic request", &resp);
		created++;
	}
	if (created == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 only ? errmsg("broker \"%s\" is not registered with the name server", only)
				 : errmsg("no broker is registered with the name server")));
	/* The broker registers the change with the name server synchronously. */
	(void) rmq_route(&o, topic, true);
	PG_RETURN_INT32(created);
}
