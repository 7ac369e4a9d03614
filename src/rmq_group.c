/*
 * rmq_group.c — consumer-group requests to a broker: HEART_BEAT (the
 * broker registers the connection it arrives on as a member),
 * GET_CONSUMER_LIST_BY_GROUP, LOCK_BATCH_MQ / UNLOCK_BATCH_MQ,
 * UNREGISTER_CLIENT, and GET_BROKER_RUNTIME_INFO for the broker's uptime.
 * The bodies are built and parsed in rmq_group_proto.c.
 */
#include "postgres.h"

#include "rmq_client.h"

static void
parse_error(const char *addr, const char *what, const char *err)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("RocketMQ at %s sent an invalid answer to %s", addr, what),
			 errdetail("%s", err)));
}

void
rmq_group_heartbeat(const RmqOptions *o, const char *addr, const char *body)
{
	RmqCommand	req,
				resp;

	rmq_cmd_init(&req, RMQ_HEART_BEAT);
	req.body = body;
	req.body_len = strlen(body);
	rmq_rpc(o, addr, &req, &resp);
	if (resp.code != RMQ_SUCCESS)
		rmq_broker_error(addr, "a heartbeat", &resp);
}

/*
 * The group's members as this broker knows them, one id per connection
 * that heartbeats it; NULL and *n = 0 when it knows none ("no consumer for
 * this group" is SYSTEM_ERROR to the broker, and normal to us).
 */
char	  **
rmq_group_members(const RmqOptions *o, const char *addr, const char *group, int *n)
{
	RmqCommand	req,
				resp;
	char	  **ids;
	char	   *err = NULL;

	*n = 0;
	rmq_cmd_init(&req, RMQ_GET_CONSUMER_LIST_BY_GROUP);
	rmq_cmd_add(&req, "consumerGroup", group);
	rmq_rpc(o, addr, &req, &resp);
	if (resp.code == RMQ_SYSTEM_ERROR && resp.remark && strstr(resp.remark, "no consumer"))
		return NULL;
	if (resp.code != RMQ_SUCCESS)
		rmq_broker_error(addr, "a consumer list request", &resp);
	if (!rmq_parse_consumer_ids(resp.body, resp.body_len, &ids, n, &err))
		parse_error(addr, "a consumer list request", err);
	return ids;
}

/* LOCK_BATCH_MQ or UNLOCK_BATCH_MQ of these queues for client_id. */
static void
mq_request(const RmqOptions *o, const char *addr, int32 code, const char *what, const char *group,
		   const char *client_id, const RmqMq *mqs, int n, RmqCommand *resp)
{
	RmqCommand	req;
	StringInfoData body;

	initStringInfo(&body);
	rmq_group_mq_body(&body, group, client_id, mqs, n);
	rmq_cmd_init(&req, code);
	req.body = body.data;
	req.body_len = body.len;
	rmq_rpc(o, addr, &req, resp);
	if (resp->code != RMQ_SUCCESS)
		rmq_broker_error(addr, what, resp);
}

/* Lock the queues for client_id; which ones the broker granted, in locked. */
void
rmq_group_lock(const RmqOptions *o, const char *addr, const char *group, const char *client_id,
			   const RmqMq *mqs, int n, bool *locked)
{
	RmqCommand	resp;
	char	   *err = NULL;

	mq_request(o, addr, RMQ_LOCK_BATCH_MQ, "a queue lock request", group, client_id, mqs, n, &resp);
	if (!rmq_parse_locked(resp.body, resp.body_len, mqs, n, locked, &err))
		parse_error(addr, "a queue lock request", err);
}

void
rmq_group_unlock(const RmqOptions *o, const char *addr, const char *group, const char *client_id,
				 const RmqMq *mqs, int n)
{
	RmqCommand	resp;

	mq_request(o, addr, RMQ_UNLOCK_BATCH_MQ, "a queue unlock request", group, client_id, mqs, n, &resp);
}

void
rmq_group_unregister(const RmqOptions *o, const char *addr, const char *group, const char *client_id)
{
	RmqCommand	req,
				resp;

	rmq_cmd_init(&req, RMQ_UNREGISTER_CLIENT);
	rmq_cmd_add(&req, "clientID", client_id);
	rmq_cmd_add(&req, "consumerGroup", group);
	rmq_rpc(o, addr, &req, &resp);
	if (resp.code != RMQ_SUCCESS)
		rmq_broker_error(addr, "an unregister request", &resp);
}

/*
 * How long the broker has been up (ms); -1 if it would not say (a broker
 * that refuses the request, under an ACL for instance).
 */
int64
rmq_group_broker_uptime(const RmqOptions *o, const char *addr)
{
	RmqCommand	req,
				resp;
	int64		ms;
	char	   *err = NULL;

	rmq_cmd_init(&req, RMQ_GET_BROKER_RUNTIME_INFO);
	rmq_rpc(o, addr, &req, &resp);
	if (resp.code != RMQ_SUCCESS)
		return -1;
	if (!rmq_parse_uptime(resp.body, resp.body_len, &ms, &err))
		parse_error(addr, "a runtime info request", err);
	return ms;
}
