/*
 * rmq_group_proto.c — the bodies of consumer-group membership, as the Java
 * client writes and reads them: HEART_BEAT's HeartbeatData, the queue sets
 * of LOCK_BATCH_MQ / UNLOCK_BATCH_MQ and their answer, and the member list
 * of GET_CONSUMER_LIST_BY_GROUP.  Pure: unit-tested and fuzzed.  Answers
 * come from a broker and are parsed as hostile: strings only, bounded
 * counts, nothing kept that does not fit a queue of the request.
 */
#include "rmq_codec.h"

/*
 * Java's FilterAPI: tags split on "||", trimmed, empties dropped; the set of
 * tags and the set of their hash codes, as JSON arrays.
 */
static void
tag_sets(const char *expr, StringInfo tags, StringInfo codes)
{
	const char *p = expr;
	int			n = 0;

	while (*p)
	{
		const char *bar = strstr(p, "||");
		size_t		len = bar ? (size_t) (bar - p) : strlen(p);
		const char *s = p,
				   *e = p + len;

		/* String.trim(): every char up to U+0020 */
		while (s < e && (unsigned char) *s <= ' ')
			s++;
		while (e > s && (unsigned char) e[-1] <= ' ')
			e--;
		if (e > s)
		{
			char	   *tag = pnstrdup(s, e - s);

			if (n++)
			{
				appendStringInfoChar(tags, ',');
				appendStringInfoChar(codes, ',');
			}
			rmq_json_escape(tags, tag);
			appendStringInfo(codes, "%d", rmq_java_hash(tag));
			pfree(tag);
		}
		p += len + (bar ? 2 : 0);
	}
}

/* Keys in fastjson's (alphabetical) order, so bodies compare with Java's. */
void
rmq_group_subscription_json(StringInfo out, const RmqSubscription *sub)
{
	bool		all = sub->expression == NULL || sub->expression[0] == '\0' ||
		strcmp(sub->expression, "*") == 0;
	StringInfoData tags,
				codes;

	initStringInfo(&tags);
	initStringInfo(&codes);
	if (!all)
		tag_sets(sub->expression, &tags, &codes);
	appendStringInfo(out, "{\"classFilterMode\":false,\"codeSet\":[%s],\"expressionType\":\"TAG\","
					 "\"subString\":", codes.data);
	rmq_json_escape(out, all ? "*" : sub->expression);
	appendStringInfo(out, ",\"subVersion\":" INT64_FORMAT ",\"tagsSet\":[%s],\"topic\":", sub->version, tags.data);
	rmq_json_escape(out, sub->topic);
	appendStringInfoChar(out, '}');
	pfree(tags.data);
	pfree(codes.data);
}

void
rmq_group_heartbeat_body(StringInfo out, const char *client_id, const char *group,
						 const char *consume_from, const RmqSubscription *subs, int nsubs)
{
	appendStringInfoString(out, "{\"clientID\":");
	rmq_json_escape(out, client_id);
	appendStringInfoString(out, ",\"consumerDataSet\":[{\"consumeFromWhere\":");
	rmq_json_escape(out, consume_from);
	/*
	 * CONSUME_PASSIVELY as a push consumer says: the broker keeps one value
	 * per group, overwritten by every heartbeat, and Java push members send
	 * this one.
	 */
	appendStringInfoString(out, ",\"consumeType\":\"CONSUME_PASSIVELY\",\"groupName\":");
	rmq_json_escape(out, group);
	appendStringInfoString(out, ",\"messageModel\":\"CLUSTERING\",\"subscriptionDataSet\":[");
	for (int i = 0; i < nsubs; i++)
	{
		if (i)
			appendStringInfoChar(out, ',');
		rmq_group_subscription_json(out, &subs[i]);
	}
	appendStringInfoString(out, "],\"unitMode\":false}],\"heartbeatFingerprint\":0,"
						   "\"producerDataSet\":[],\"withoutSub\":false}");
}

void
rmq_group_mq_body(StringInfo out, const char *group, const char *client_id,
				  const RmqMq *mqs, int n)
{
	appendStringInfoString(out, "{\"clientId\":");
	rmq_json_escape(out, client_id);
	appendStringInfoString(out, ",\"consumerGroup\":");
	rmq_json_escape(out, group);
	appendStringInfoString(out, ",\"mqSet\":[");
	for (int i = 0; i < n; i++)
	{
		appendStringInfoString(out, i ? ",{\"brokerName\":" : "{\"brokerName\":");
		rmq_json_escape(out, mqs[i].broker);
		appendStringInfo(out, ",\"queueId\":%d,\"topic\":", mqs[i].queue_id);
		rmq_json_escape(out, mqs[i].topic);
		appendStringInfoChar(out, '}');
	}
	/* The locks of this broker only: no forwarding to its slaves. */
	appendStringInfoString(out, "],\"onlyThisBroker\":true}");
}

bool
rmq_parse_consumer_ids(const char *json, size_t len, char ***ids, int *n, char **err)
{
	RmqJson    *root = rmq_json_parse(json, len, err);
	RmqJson    *list;
	int			k = 0;

	*ids = NULL;
	*n = 0;
	if (root == NULL)
		return false;
	list = rmq_json_get(root, "consumerIdList");
	if (list == NULL || list->type != RMQ_JSON_ARRAY)
	{
		*err = "no consumerIdList array";
		return false;
	}
	if (list->nchildren > RMQ_MAX_GROUP_MEMBERS)
	{
		*err = psprintf("%d consumer ids, more than %d", list->nchildren, RMQ_MAX_GROUP_MEMBERS);
		return false;
	}
	*ids = palloc(sizeof(char *) * Max(list->nchildren, 1));
	for (RmqJson *e = list->child; e; e = e->next)
	{
		if (e->type != RMQ_JSON_STRING || e->str[0] == '\0')
		{
			*err = "a consumer id that is not a non-empty string";
			return false;
		}
		(*ids)[k++] = e->str;
	}
	*n = k;
	return true;
}

/*
 * Which of the asked-for queues the broker says are locked for us: flags
 * in `locked`, one per asked queue.  Queues in the answer that were not
 * asked for are ignored.
 */
bool
rmq_parse_locked(const char *json, size_t len, const RmqMq *asked, int nasked,
				 bool *locked, char **err)
{
	RmqJson    *root = rmq_json_parse(json, len, err);
	RmqJson    *set;

	memset(locked, 0, sizeof(bool) * nasked);
	if (root == NULL)
		return false;
	if (root->type != RMQ_JSON_OBJECT)
	{
		*err = "the answer is not a JSON object";
		return false;
	}
	set = rmq_json_get(root, "lockOKMQSet");
	if (set == NULL)
		return true;			/* Java writes [] for none; absent means none too */
	if (set->type != RMQ_JSON_ARRAY)
	{
		*err = "lockOKMQSet is not an array";
		return false;
	}
	for (RmqJson *e = set->child; e; e = e->next)
	{
		const char *topic = rmq_json_get_str(e, "topic");
		const char *broker = rmq_json_get_str(e, "brokerName");
		int64		qid;

		if (e->type != RMQ_JSON_OBJECT || topic == NULL || broker == NULL ||
			!rmq_json_get_int64(e, "queueId", &qid))
		{
			*err = "a locked queue without topic, brokerName and queueId";
			memset(locked, 0, sizeof(bool) * nasked);
			return false;
		}
		for (int i = 0; i < nasked; i++)
			if (asked[i].queue_id == qid && strcmp(asked[i].broker, broker) == 0 &&
				strcmp(asked[i].topic, topic) == 0)
				locked[i] = true;
	}
	return true;
}

/*
 * How long the broker has been up, from its runtime info (a KVTable:
 * {"table":{"runtime":"[ 0 days, 0 hours, 1 minutes, 5 seconds ]",...}}).
 * The broker's own count, so no clock of ours is compared with its clock.
 */
bool
rmq_parse_uptime(const char *json, size_t len, int64 *uptime_ms, char **err)
{
	RmqJson    *root = rmq_json_parse(json, len, err);
	RmqJson    *table;
	const char *rt;
	long long	d,
				h,
				m,
				sec;
	int			used = -1;

	*uptime_ms = -1;
	if (root == NULL)
		return false;
	table = rmq_json_get(root, "table");
	rt = table && table->type == RMQ_JSON_OBJECT ? rmq_json_get_str(table, "runtime") : NULL;
	if (rt == NULL)
	{
		*err = "no table.runtime string";
		return false;
	}
	if (sscanf(rt, "[ %lld days, %lld hours, %lld minutes, %lld seconds ]%n", &d, &h, &m, &sec, &used) != 4 ||
		used < 0 || rt[used] != '\0' || d < 0 || d > 1000000 || h < 0 || h > 23 || m < 0 || m > 59 ||
		sec < 0 || sec > 59)
	{
		*err = psprintf("a runtime that is not \"[ d days, h hours, m minutes, s seconds ]\": \"%.64s\"", rt);
		return false;
	}
	*uptime_ms = (((d * 24 + h) * 60 + m) * 60 + sec) * 1000;
	return true;
}
