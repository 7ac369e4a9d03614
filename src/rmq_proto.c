/*
 * rmq_proto.c — bodies and small formats the client needs beside frames
 * and messages: route and cluster JSON, broker addresses, tag hash codes,
 * the batch encoding.
 */
#include "rmq_codec.h"

/* A number of the route in [0, max], or -1. */
static int32
route_int(RmqJson *o, const char *key, int32 max)
{
	int64		v;

	if (!rmq_json_get_int64(o, key, &v) || v < 0 || v > max)
		return -1;
	return (int32) v;
}

static bool
fill_queue(RmqJson *q, RmqQueueData *qd, char **err)
{
	qd->broker_name = (char *) rmq_json_get_str(q, "brokerName");
	if (qd->broker_name == NULL)
		return false;
	qd->read_queue_nums = route_int(q, "readQueueNums", RMQ_MAX_BROKER_QUEUES);
	qd->write_queue_nums = route_int(q, "writeQueueNums", RMQ_MAX_BROKER_QUEUES);
	qd->perm = route_int(q, "perm", PG_INT32_MAX);
	if (qd->read_queue_nums < 0 || qd->write_queue_nums < 0)
	{
		*err = psprintf("broker \"%s\" has queue counts outside [0, %d]",
						qd->broker_name, RMQ_MAX_BROKER_QUEUES);
		return false;
	}
	if (qd->perm < 0)
		qd->perm = 0;
	return true;
}

static bool
fill_broker(RmqJson *b, RmqBrokerData *bd)
{
	RmqJson    *addrs = rmq_json_get(b, "brokerAddrs");

	bd->name = (char *) rmq_json_get_str(b, "brokerName");
	bd->cluster = (char *) rmq_json_get_str(b, "cluster");
	bd->master_addr = addrs ? (char *) rmq_json_get_str(addrs, "0") : NULL;
	return bd->name != NULL;
}

/*
 * A route is read as hostile input: its arrays are bounded before anything
 * is sized from them, every queue count is bounded, and a broker named twice
 * is refused (which entry would be right?).
 */
bool
rmq_parse_route(const char *json, size_t len, RmqRoute *route, char **err)
{
	RmqJson    *root;
	RmqJson    *bds,
			   *qds;
	int			i;
	int64		reads = 0,
				writes = 0;

	memset(route, 0, sizeof(*route));
	if (len > RMQ_MAX_ROUTE_JSON)
	{
		*err = psprintf("route data of %zu bytes exceeds %d", len, RMQ_MAX_ROUTE_JSON);
		return false;
	}
	root = rmq_json_parse(json, len, err);
	if (root == NULL)
		return false;
	bds = rmq_json_get(root, "brokerDatas");
	qds = rmq_json_get(root, "queueDatas");
	if (bds == NULL || bds->type != RMQ_JSON_ARRAY || qds == NULL || qds->type != RMQ_JSON_ARRAY)
	{
		*err = pstrdup("route data lacks brokerDatas or queueDatas");
		return false;
	}
	if (bds->nchildren > RMQ_MAX_ROUTE_BROKERS || qds->nchildren > RMQ_MAX_ROUTE_BROKERS)
	{
		*err = psprintf("route data lists %d brokers and %d queue entries; at most %d of each are accepted",
						bds->nchildren, qds->nchildren, RMQ_MAX_ROUTE_BROKERS);
		return false;
	}
	route->brokers = palloc0(sizeof(RmqBrokerData) * Max(bds->nchildren, 1));
	i = 0;
	for (RmqJson *b = bds->child; b; b = b->next)
		if (fill_broker(b, &route->brokers[i]))
		{
			for (int j = 0; j < i; j++)
				if (strcmp(route->brokers[j].name, route->brokers[i].name) == 0)
				{
					*err = psprintf("route data lists broker \"%s\" twice", route->brokers[i].name);
					return false;
				}
			i++;
		}
	route->nbrokers = i;
	route->queues = palloc0(sizeof(RmqQueueData) * Max(qds->nchildren, 1));
	i = 0;
	for (RmqJson *q = qds->child; q; q = q->next)
	{
		*err = NULL;
		if (!fill_queue(q, &route->queues[i], err))
		{
			if (*err)
				return false;
			continue;
		}
		for (int j = 0; j < i; j++)
			if (strcmp(route->queues[j].broker_name, route->queues[i].broker_name) == 0)
			{
				*err = psprintf("route data lists the queues of broker \"%s\" twice",
								route->queues[i].broker_name);
				return false;
			}
		reads += route->queues[i].read_queue_nums;
		writes += route->queues[i].write_queue_nums;
		i++;
	}
	route->nqueues = i;
	if (reads > RMQ_MAX_TOPIC_QUEUES || writes > RMQ_MAX_TOPIC_QUEUES)
	{
		*err = psprintf("route data gives the topic " INT64_FORMAT " read and " INT64_FORMAT " write queues; at most %d are accepted",
						reads, writes, RMQ_MAX_TOPIC_QUEUES);
		return false;
	}
	return true;
}

/* ClusterInfo: {"brokerAddrTable":{name:BrokerData},...}.  Brokers only. */
bool
rmq_parse_cluster_info(const char *json, size_t len, RmqRoute *route, char **err)
{
	RmqJson    *root;
	RmqJson    *tab;
	int			i = 0;

	memset(route, 0, sizeof(*route));
	if (len > RMQ_MAX_ROUTE_JSON)
	{
		*err = psprintf("cluster info of %zu bytes exceeds %d", len, RMQ_MAX_ROUTE_JSON);
		return false;
	}
	root = rmq_json_parse(json, len, err);
	if (root == NULL)
		return false;
	tab = rmq_json_get(root, "brokerAddrTable");
	if (tab == NULL || tab->type != RMQ_JSON_OBJECT)
	{
		*err = pstrdup("cluster info lacks brokerAddrTable");
		return false;
	}
	if (tab->nchildren > RMQ_MAX_ROUTE_BROKERS)
	{
		*err = psprintf("cluster info lists %d brokers; at most %d are accepted",
						tab->nchildren, RMQ_MAX_ROUTE_BROKERS);
		return false;
	}
	route->brokers = palloc0(sizeof(RmqBrokerData) * Max(tab->nchildren, 1));
	for (RmqJson *b = tab->child; b; b = b->next)
		if (fill_broker(b, &route->brokers[i]))
			i++;
	route->nbrokers = i;
	return true;
}

const char *
rmq_route_broker_addr(const RmqRoute *route, const char *broker)
{
	for (int i = 0; i < route->nbrokers; i++)
		if (strcmp(route->brokers[i].name, broker) == 0)
			return route->brokers[i].master_addr;
	return NULL;
}

bool
rmq_split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
	const char *colon;
	const char *hs = addr;
	size_t		hl;
	char	   *end;
	long		p;

	while (*hs == ' ')
		hs++;
	colon = strrchr(hs, ':');
	if (colon == NULL || colon == hs)
		return false;
	hl = colon - hs;
	if (hs[0] == '[' && hl >= 2 && hs[hl - 1] == ']')
	{
		hs++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hostlen)
		return false;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	while (*end == ' ')
		end++;
	if (errno != 0 || end == colon + 1 || *end != '\0' || p <= 0 || p > 65535)
		return false;
	*port = (int) p;
	return true;
}

int32
rmq_java_hash(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;
	uint32		h = 0;

	/* Walk UTF-8, hash UTF-16 code units as java.lang.String does. */
	while (*p)
	{
		uint32		cp;
		int			n;

		if (*p < 0x80)
		{
			cp = *p;
			n = 1;
		}
		else if ((*p & 0xE0) == 0xC0 && p[1])
		{
			cp = ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
			n = 2;
		}
		else if ((*p & 0xF0) == 0xE0 && p[1] && p[2])
		{
			cp = ((p[0] & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
			n = 3;
		}
		else if ((*p & 0xF8) == 0xF0 && p[1] && p[2] && p[3])
		{
			cp = ((p[0] & 0x07) << 18) | ((p[1] & 0x3F) << 12) |
				((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
			n = 4;
		}
		else
		{
			cp = 0xFFFD;
			n = 1;
		}
		if (cp >= 0x10000)
		{
			cp -= 0x10000;
			h = 31 * h + (0xD800 + (cp >> 10));
			h = 31 * h + (0xDC00 + (cp & 0x3FF));
		}
		else
			h = 31 * h + cp;
		p += n;
	}
	return (int32) h;
}

void
rmq_batch_append(StringInfo out, int32 flag, const char *body, uint32 body_len,
				 const char *props, uint32 props_len)
{
	uint32		total = 20 + body_len + 2 + props_len;
	unsigned char h[20];
	uint32		vals[5] = {total, 0, 0, (uint32) flag, body_len};

	for (int i = 0; i < 5; i++)
	{
		h[4 * i] = vals[i] >> 24;
		h[4 * i + 1] = vals[i] >> 16;
		h[4 * i + 2] = vals[i] >> 8;
		h[4 * i + 3] = vals[i];
	}
	appendBinaryStringInfo(out, (char *) h, 20);
	appendBinaryStringInfo(out, body, body_len);
	appendStringInfoChar(out, (char) (props_len >> 8));
	appendStringInfoChar(out, (char) props_len);
	appendBinaryStringInfo(out, props, props_len);
}
