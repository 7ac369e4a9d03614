/*
 * rmq_client.c — RPCs over rmq_conn: name-server failover, the route
 * cache, offsets, pull requests and tag filters.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "rmq_client.h"

char	   *rmq_namesrv_addr = NULL;
char	   *rmq_server = NULL;
int			rmq_pull_batch_size = 32;
int			rmq_pull_timeout_ms = 3000;
int			rmq_request_timeout_ms = 3000;
int			rmq_connection_cache_size = 16;
bool		rmq_check_crc = true;

/* Route cache: routes live in their own context, replaced on refresh. */
#define ROUTE_TTL_MS 30000
typedef struct RouteEntry
{
	char	   *namesrv;
	char	   *topic;
	RmqRoute   *route;
	TimestampTz fetched;
	MemoryContext cxt;
	struct RouteEntry *next;
} RouteEntry;

static RouteEntry *routes = NULL;
static int	namesrv_rotor = 0;

const char *
rmq_jsonb_text(Jsonb *opts, const char *key)
{
	JsonbValue	k,
			   *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&opts->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (v->type == jbvBool)
		return v->val.boolean ? "true" : "false";
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" must be a string, number or boolean", key)));
}

static int
int_opt(Jsonb *opts, const char *key, int def, int min, int max)
{
	const char *s = rmq_jsonb_text(opts, key);
	char	   *end;
	long		v;

	if (s == NULL)
		return def;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be an integer between %d and %d", key, min, max),
				 errdetail("Got \"%s\".", s)));
	return (int) v;
}

static bool
bool_opt(Jsonb *opts, const char *key, bool def)
{
	const char *s = rmq_jsonb_text(opts, key);
	bool		v;

	if (s == NULL)
		return def;
	if (!parse_bool(s, &v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a boolean", key)));
	return v;
}

void
rmq_options_init(RmqOptions *o, Jsonb *opts)
{
	static const char *const known[] = {
		"server", "namesrv_addr", "pull_batch_size", "pull_timeout", "request_timeout",
		"check_crc", "fail_on_data_loss", "on_error", "tag_filter", "queue_id", "broker", NULL
	};
	const char *server = NULL;

	memset(&o->sec, 0, sizeof(o->sec));
	o->sec.tls = RMQ_TLS_DISABLE;
	o->sec.profile = "";
	o->namesrv_addr = rmq_namesrv_addr;
	o->pull_batch_size = rmq_pull_batch_size;
	o->pull_timeout_ms = rmq_pull_timeout_ms;
	o->request_timeout_ms = rmq_request_timeout_ms;
	o->check_crc = rmq_check_crc;
	o->fail_on_data_loss = true;
	o->skip_undecodable = false;
	o->tag_filter = NULL;
	o->queue_id = -1;
	o->broker = NULL;
	if (opts == NULL)
		goto resolve;
	if (!JB_ROOT_IS_OBJECT(opts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	/* Reject misspelt options rather than silently ignoring them. */
	{
		JsonbIterator *it = JsonbIteratorInit(&opts->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				char	   *k = pnstrdup(v.val.string.val, v.val.string.len);
				int			i;

				for (i = 0; known[i]; i++)
					if (strcmp(known[i], k) == 0)
						break;
				if (known[i] == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("unrecognized option \"%s\"", k),
							 errhint("Valid options are server, namesrv_addr, pull_batch_size, pull_timeout, request_timeout, check_crc, fail_on_data_loss, on_error, tag_filter, queue_id and broker.")));
			}
		}
	}
	server = rmq_jsonb_text(opts, "server");
	if (server && rmq_jsonb_text(opts, "namesrv_addr"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options \"server\" and \"namesrv_addr\" cannot both be given"),
				 errhint("A server names its own name servers.")));
	if (rmq_jsonb_text(opts, "namesrv_addr"))
		o->namesrv_addr = rmq_jsonb_text(opts, "namesrv_addr");
	o->pull_batch_size = int_opt(opts, "pull_batch_size", o->pull_batch_size, 1, 1024);
	o->pull_timeout_ms = int_opt(opts, "pull_timeout", o->pull_timeout_ms, 0, 3600000);
	o->request_timeout_ms = int_opt(opts, "request_timeout", o->request_timeout_ms, 1, 3600000);
	o->check_crc = bool_opt(opts, "check_crc", o->check_crc);
	o->fail_on_data_loss = bool_opt(opts, "fail_on_data_loss", true);
	if (rmq_jsonb_text(opts, "on_error"))
	{
		const char *e = rmq_jsonb_text(opts, "on_error");

		if (strcmp(e, "skip") != 0 && strcmp(e, "fail") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"on_error\" must be \"fail\" or \"skip\"")));
		o->skip_undecodable = strcmp(e, "skip") == 0;
	}
	o->tag_filter = rmq_jsonb_text(opts, "tag_filter");
	o->queue_id = int_opt(opts, "queue_id", -1, 0, 65535);
	o->broker = rmq_jsonb_text(opts, "broker");

	/*
	 * Where the cluster is: the call's server, else its namesrv_addr (an
	 * open cluster), else rocketmq_stream.server, else .namesrv_addr.
	 */
resolve:
	if (server == NULL && (opts == NULL || rmq_jsonb_text(opts, "namesrv_addr") == NULL) &&
		rmq_server && rmq_server[0] != '\0')
		server = rmq_server;
	if (server)
		rmq_options_use_server(o, server);
	if (o->namesrv_addr == NULL || o->namesrv_addr[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no RocketMQ name server is configured"),
				 errhint("Set rocketmq_stream.namesrv_addr, or pass the option namesrv_addr or server.")));
}

/* What a refused request needed, by what it was; NULL if we cannot say. */
static const char *
permission_hint(const char *what)
{
	if (strstr(what, "pull"))
		return "Pulling needs Sub on the topic and on the consumer group.";
	if (strstr(what, "max offset") || strstr(what, "min offset") || strstr(what, "offset-by-time"))
		return "Reading a queue's offsets needs Get on the topic; Sub alone is not enough.";
	if (strstr(what, "consumer offset query"))
		return "Reading a group's committed offset needs Sub or Get on the topic and on the group.";
	if (strstr(what, "consumer offset update"))
		return "Committing offsets needs Sub on the topic and on the group.";
	if (strstr(what, "send"))
		return "Sending needs Pub on the topic.";
	if (strstr(what, "create-topic"))
		return "Creating topics needs Create on the topic (usually an admin user).";
	return NULL;
}

void
rmq_broker_error(const char *addr, const char *what, const RmqCommand *resp)
{
	/*
	 * NO_PERMISSION (16) is an ACL refusal: authentication (who are you)
	 * or authorization (you may not).  Neither gets better by retrying.
	 */
	if (resp->code == RMQ_NO_PERMISSION && resp->remark && strstr(resp->remark, "has no permission"))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("RocketMQ at %s refused %s: permission denied", addr, what),
				 errdetail("%s", resp->remark),
				 permission_hint(what) ? errhint("%s", permission_hint(what)) : 0));
	if (resp->code == RMQ_NO_PERMISSION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("RocketMQ at %s refused %s: authentication failed", addr, what),
				 resp->remark ? errdetail("%s", resp->remark) : 0,
				 errhint("Requests are signed with the access_key and secret_key of your user mapping on the server named by the option server or rocketmq_stream.server; without one they go unsigned.")));
	ereport(ERROR,
			(errcode(resp->code == RMQ_TOPIC_NOT_EXIST ? ERRCODE_UNDEFINED_OBJECT
					 : ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("RocketMQ at %s refused %s with code %d", addr, what, resp->code),
			 resp->remark ? errdetail("%s", resp->remark) : 0));
}

/*
 * Name servers are "h:p;h:p".  Try each, starting after the last one that
 * worked, moving on when connecting fails; an answered request is final.
 */
void
rmq_namesrv_rpc(const RmqOptions *o, RmqCommand *req, RmqCommand *resp)
{
	const char *namesrv = o->namesrv_addr;
	char	   *list = pstrdup(namesrv);
	char	   *addrs[64];
	int			n = 0;
	char	   *save = NULL;
	char	   *lasterr = NULL;

	for (char *tok = strtok_r(list, ";,", &save); tok && n < 64; tok = strtok_r(NULL, ";,", &save))
	{
		while (*tok == ' ')
			tok++;
		if (*tok)
			addrs[n++] = tok;
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid RocketMQ name server list \"%s\"", namesrv)));
	for (int i = 0; i < n; i++)
	{
		const char *addr = addrs[(namesrv_rotor + i) % n];
		MemoryContext cxt = CurrentMemoryContext;
		volatile bool ok = false;

		/* Only connection failures fail over; cancels are re-thrown. */
		PG_TRY();
		{
			rmq_rpc(o, addr, req, resp);
			ok = true;
		}
		PG_CATCH();
		{
			ErrorData  *ed;

			MemoryContextSwitchTo(cxt);
			ed = CopyErrorData();
			if (ed->sqlerrcode != ERRCODE_CONNECTION_FAILURE || n == 1)
				PG_RE_THROW();
			FlushErrorState();
			lasterr = ed->message;
		}
		PG_END_TRY();
		if (ok)
		{
			namesrv_rotor = (namesrv_rotor + i) % n;
			return;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not reach any RocketMQ name server of \"%s\"", namesrv),
			 errdetail("Last error: %s", lasterr ? lasterr : "none")));
}

RmqRoute *
rmq_route(const RmqOptions *o, const char *topic, bool refresh)
{
	RouteEntry *e;
	RmqCommand	req,
				resp;
	char	   *err = NULL;
	RmqRoute	parsed;
	MemoryContext old;

	for (e = routes; e; e = e->next)
		if (strcmp(e->topic, topic) == 0 && strcmp(e->namesrv, o->namesrv_addr) == 0)
			break;
	if (e && !refresh &&
		!TimestampDifferenceExceeds(e->fetched, GetCurrentTimestamp(), ROUTE_TTL_MS))
		return e->route;

	rmq_cmd_init(&req, RMQ_GET_ROUTEINFO_BY_TOPIC);
	rmq_cmd_add(&req, "topic", topic);
	rmq_cmd_add(&req, "acceptStandardJsonOnly", "true");
	rmq_namesrv_rpc(o, &req, &resp);
	if (resp.code == RMQ_TOPIC_NOT_EXIST)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no route for RocketMQ topic \"%s\" from name server %s", topic, o->namesrv_addr),
				 errdetail("The topic does not exist, or no broker serving it is registered with the name server; a restarting broker registers again within seconds.")));
	if (resp.code != RMQ_SUCCESS)
		rmq_broker_error(o->namesrv_addr, "a route request", &resp);

	if (e == NULL)
	{
		MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "rocketmq_stream route",
												  ALLOCSET_SMALL_SIZES);

		e = MemoryContextAllocZero(cxt, sizeof(RouteEntry));
		e->cxt = cxt;
		e->topic = MemoryContextStrdup(cxt, topic);
		e->namesrv = MemoryContextStrdup(cxt, o->namesrv_addr);
		e->next = routes;
		routes = e;
	}
	/* Parse into a fresh child of the entry's context, then swap. */
	{
		MemoryContext rcxt = AllocSetContextCreate(e->cxt, "route data", ALLOCSET_SMALL_SIZES);

		old = MemoryContextSwitchTo(rcxt);
		if (!rmq_parse_route(resp.body, resp.body_len, &parsed, &err))
		{
			MemoryContextSwitchTo(old);
			MemoryContextDelete(rcxt);
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("invalid route data for topic \"%s\"", topic),
					 errdetail("%s", err)));
		}
		e->route = palloc(sizeof(RmqRoute));
		*e->route = parsed;
		MemoryContextSwitchTo(old);
		/* Drop the previous route data (every child but the new one). */
		while (e->cxt->firstchild && e->cxt->firstchild != rcxt)
			MemoryContextDelete(e->cxt->firstchild);
		{
			MemoryContext ch = rcxt->nextchild;

			while (ch)
			{
				MemoryContext nx = ch->nextchild;

				MemoryContextDelete(ch);
				ch = nx;
			}
		}
	}
	e->fetched = GetCurrentTimestamp();
	return e->route;
}

const RmqQueueData *
rmq_route_queue(const RmqRoute *r, const char *broker)
{
	for (int i = 0; i < r->nqueues; i++)
		if (strcmp(r->queues[i].broker_name, broker) == 0)
			return &r->queues[i];
	return NULL;
}

const char *
rmq_broker_addr(const RmqOptions *o, const char *topic, const char *broker)
{
	RmqRoute   *r = rmq_route(o, topic, false);
	const char *addr = rmq_route_broker_addr(r, broker);

	if (addr == NULL)
	{
		r = rmq_route(o, topic, true);
		addr = rmq_route_broker_addr(r, broker);
	}
	if (addr == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("broker \"%s\" does not serve topic \"%s\"", broker, topic),
				 errhint("SELECT * FROM rmq_queues('%s') lists its brokers and queues.", topic)));
	return pstrdup(addr);
}

static void
add_queue_fields(RmqCommand *req, const char *topic, const char *broker, int32 qid)
{
	rmq_cmd_add(req, "topic", topic);
	rmq_cmd_add(req, "queueId", psprintf("%d", qid));
	rmq_cmd_add(req, "bname", broker);
}

int64
rmq_queue_offset(const RmqOptions *o, const char *addr, int code,
				 const char *topic, const char *broker, int32 qid)
{
	RmqCommand	req,
				resp;
	int64		off;

	rmq_cmd_init(&req, code);
	add_queue_fields(&req, topic, broker, qid);
	rmq_rpc(o, addr, &req, &resp);
	if (resp.code != RMQ_SUCCESS)
		rmq_broker_error(addr, code == RMQ_GET_MAX_OFFSET ? "a max offset request"
						 : "a min offset request", &resp);
	if (!rmq_cmd_field_int64(&resp, "offset", &off))
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("RocketMQ at %s sent an offset response without an offset", addr)));
	return off;
}

int64
rmq_search_offset(const RmqOptions *o, const char *addr, const char *topic,
				  const char *broker, int32 qid, int64 ts_ms)
{
	RmqCommand	req,
				resp;
	int64		off;

	rmq_cmd_init(&req, RMQ_SEARCH_OFFSET_BY_TIMESTAMP);
	add_queue_fields(&req, topic, broker, qid);
	rmq_cmd_add_int64(&req, "timestamp", ts_ms);
	rmq_cmd_add(&req, "boundaryType", "lower");
	rmq_rpc(o, addr, &req, &resp);
	if (resp.code != RMQ_SUCCESS)
		rmq_broker_error(addr, "an offset-by-time request", &resp);
	if (!rmq_cmd_field_int64(&resp, "offset", &off))
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("RocketMQ at %s sent an offset response without an offset", addr)));
	return off;
}

bool
rmq_query_consumer_offset(const RmqOptions *o, const char *addr, const char *group,
						  const char *topic, const char *broker, int32 qid, int64 *out)
{
	RmqCommand	req,
				resp;

	rmq_cmd_init(&req, RMQ_QUERY_CONSUMER_OFFSET);
	rmq_cmd_add(&req, "consumerGroup", group);
	add_queue_fields(&req, topic, broker, qid);
	/* So that "not found" is never disguised as offset 0. */
	rmq_cmd_add(&req, "setZeroIfNotFound", "false");
	rmq_rpc(o, addr, &req, &resp);
	if (resp.code == RMQ_QUERY_NOT_FOUND)
		return false;
	if (resp.code != RMQ_SUCCESS)
		rmq_broker_error(addr, "a consumer offset query", &resp);
	if (!rmq_cmd_field_int64(&resp, "offset", out))
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("RocketMQ at %s sent an offset response without an offset", addr)));
	return true;
}

#define SUBSCRIPTION_GROUP_NOT_EXIST 26

void
rmq_update_consumer_offset(const RmqOptions *o, const char *addr, const char *group,
						   const char *topic, const char *broker, int32 qid, int64 offset)
{
	RmqCommand	req,
				resp;

	for (int attempt = 0; attempt < 2; attempt++)
	{
		rmq_cmd_init(&req, RMQ_UPDATE_CONSUMER_OFFSET);
		rmq_cmd_add(&req, "consumerGroup", group);
		add_queue_fields(&req, topic, broker, qid);
		rmq_cmd_add_int64(&req, "commitOffset", offset);
		rmq_rpc(o, addr, &req, &resp);
		if (resp.code == RMQ_SUCCESS)
			return;
		if (resp.code != SUBSCRIPTION_GROUP_NOT_EXIST || attempt > 0)
			break;

		/*
		 * The broker creates a group on its first pull, never on an offset
		 * update; a pull without long polling is the least intrusive way.
		 */
		rmq_build_pull(&req, group, topic, broker, qid, offset, 1, 0, "*");
		rmq_rpc(o, addr, &req, &resp);
	}
	rmq_broker_error(addr, "a consumer offset update", &resp);
}

void
rmq_build_pull(RmqCommand *cmd, const char *group, const char *topic,
			   const char *broker, int32 qid, int64 offset, int32 max_msgs,
			   int64 suspend_ms, const char *subscription)
{
	int			sysflag = RMQ_PULL_FLAG_SUBSCRIPTION | (suspend_ms > 0 ? RMQ_PULL_FLAG_SUSPEND : 0);

	rmq_cmd_init(cmd, RMQ_PULL_MESSAGE);
	rmq_cmd_add(cmd, "consumerGroup", group);
	add_queue_fields(cmd, topic, broker, qid);
	rmq_cmd_add_int64(cmd, "queueOffset", offset);
	rmq_cmd_add(cmd, "maxMsgNums", psprintf("%d", max_msgs));
	rmq_cmd_add(cmd, "sysFlag", psprintf("%d", sysflag));
	rmq_cmd_add(cmd, "commitOffset", "0");
	rmq_cmd_add_int64(cmd, "suspendTimeoutMillis", suspend_ms);
	rmq_cmd_add(cmd, "subscription", subscription ? subscription : "*");
	rmq_cmd_add(cmd, "subVersion", "0");
	rmq_cmd_add(cmd, "expressionType", "TAG");
}

void
rmq_parse_pull(const char *addr, const RmqCommand *resp, RmqPullResult *res)
{
	memset(res, 0, sizeof(*res));
	res->code = resp->code;
	res->remark = resp->remark;
	switch (resp->code)
	{
		case RMQ_SUCCESS:
		case RMQ_PULL_NOT_FOUND:
		case RMQ_PULL_RETRY_IMMEDIATELY:
		case RMQ_PULL_OFFSET_MOVED:
			if (!rmq_cmd_field_int64(resp, "nextBeginOffset", &res->next_begin) ||
				!rmq_cmd_field_int64(resp, "minOffset", &res->min_offset) ||
				!rmq_cmd_field_int64(resp, "maxOffset", &res->max_offset))
				ereport(ERROR,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg("RocketMQ at %s sent a pull response without offsets", addr)));
			break;
		default:
			rmq_broker_error(addr, "a pull request", resp);
	}
	if (resp->code == RMQ_SUCCESS)
	{
		res->body = resp->body;
		res->body_len = resp->body_len;
	}
}

/* "TagA || TagB" — as FilterAPI splits it: on "||", trimmed, empties dropped. */
void
rmq_tag_filter_parse(const char *expr, RmqTagFilter *f)
{
	StringInfoData norm;
	const char *p = expr;

	memset(f, 0, sizeof(*f));
	if (expr == NULL)
	{
		f->all = true;
		f->expression = "*";
		return;
	}
	while (*p == ' ')
		p++;
	if (*p == '\0' || strcmp(p, "*") == 0)
	{
		f->all = true;
		f->expression = "*";
		return;
	}
	f->tags = palloc(sizeof(char *) * (strlen(expr) / 2 + 2));
	initStringInfo(&norm);
	while (*p)
	{
		const char *bar = strstr(p, "||");
		size_t		len = bar ? (size_t) (bar - p) : strlen(p);
		const char *s = p,
				   *e = p + len;

		while (s < e && *s == ' ')
			s++;
		while (e > s && e[-1] == ' ')
			e--;
		if (e > s)
		{
			f->tags[f->ntags++] = pnstrdup(s, e - s);
			if (norm.len)
				appendStringInfoString(&norm, " || ");
			appendBinaryStringInfo(&norm, s, e - s);
		}
		p += len + (bar ? 2 : 0);
	}
	if (f->ntags == 0)
	{
		f->all = true;
		f->expression = "*";
		return;
	}

	/*
	 * The broker filters by the tag hash stored with each record, and a
	 * batch record of a BatchCQ queue stores the batch's own tags, which
	 * the Java producer never sets: hash 0.  A filter of real tags alone
	 * would make the broker drop every batch, whatever its messages' tags
	 * (the 5.3.3 Java consumer loses them so).  "f5a5a608" is a tag whose
	 * Java hash is 0: with it the broker also sends records without tags,
	 * and the exact check below keeps only the messages asked for.
	 */
	appendStringInfoString(&norm, " || f5a5a608");
	f->expression = norm.data;
}

/* The broker compares hash codes; re-check the exact tag, as Java does. */
bool
rmq_tag_filter_match(const RmqTagFilter *f, const char *tags)
{
	if (f->all)
		return true;
	if (tags == NULL)
		return false;
	for (int i = 0; i < f->ntags; i++)
		if (strcmp(f->tags[i], tags) == 0)
			return true;
	return false;
}

void
rmq_client_init(void)
{
}
