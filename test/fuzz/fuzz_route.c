/*
 * fuzz_route.c — rmq_parse_route and rmq_parse_cluster_info on route /
 * cluster JSON, plus the helpers applied to what they return
 * (rmq_route_broker_addr, rmq_split_addr, rmq_java_hash), and the consumer
 * group answers (member list, locked queues).
 * Suggested: -max_len=262144 -dict=test/fuzz/json.dict
 */
#include "fuzz_common.h"

static void
check_route(const RmqRoute *r)
{
	FUZZ_ASSERT(r->nbrokers >= 0 && r->nqueues >= 0);
	/* lookups are linear in the number of brokers: check the first few */
	for (int i = 0; i < r->nbrokers && i < 64; i++)
	{
		const RmqBrokerData *b = &r->brokers[i];
		const char *addr;
		int			first = i;

		FUZZ_ASSERT(b->name != NULL);
		for (int j = 0; j < i; j++)
			if (strcmp(r->brokers[j].name, b->name) == 0)
			{
				first = j;
				break;
			}
		/* lookup returns the first broker of that name */
		addr = rmq_route_broker_addr(r, b->name);
		FUZZ_ASSERT(addr == r->brokers[first].master_addr);
		(void) rmq_java_hash(b->name);
		if (b->cluster)
			(void) rmq_java_hash(b->cluster);
		if (b->master_addr)
		{
			char		host[256];
			int			port = -1;

			if (rmq_split_addr(b->master_addr, host, sizeof(host), &port))
			{
				FUZZ_ASSERT(port > 0 && port <= 65535);
				FUZZ_ASSERT(strlen(host) > 0 && strlen(host) < sizeof(host));
			}
		}
	}
	for (int i = 0; i < r->nqueues; i++)
	{
		const RmqQueueData *q = &r->queues[i];

		FUZZ_ASSERT(q->broker_name != NULL);
		FUZZ_ASSERT(q->read_queue_nums >= 0 && q->read_queue_nums <= 65535);
		FUZZ_ASSERT(q->write_queue_nums >= 0 && q->write_queue_nums <= 65535);
		if (i < 64)
			(void) rmq_route_broker_addr(r, q->broker_name);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	RmqRoute	route;
	char	   *err = NULL;

	if (rmq_parse_route((const char *) data, size, &route, &err))
		check_route(&route);
	else
		FUZZ_ASSERT(err != NULL);

	err = NULL;
	if (rmq_parse_cluster_info((const char *) data, size, &route, &err))
	{
		FUZZ_ASSERT(route.nqueues == 0);
		check_route(&route);
	}
	else
		FUZZ_ASSERT(err != NULL);

	/* the consumer-group answers a broker sends */
	{
		char	  **ids;
		int			n;
		RmqMq		asked[2] = {{"T", "broker-a", 0}, {"%RETRY%G", "broker-a", 1}};
		bool		locked[2];

		err = NULL;
		if (rmq_parse_consumer_ids((const char *) data, size, &ids, &n, &err))
		{
			FUZZ_ASSERT(n >= 0 && n <= RMQ_MAX_GROUP_MEMBERS);
			for (int i = 0; i < n; i++)
				FUZZ_ASSERT(ids[i] != NULL && ids[i][0] != '\0');
		}
		else
			FUZZ_ASSERT(err != NULL);
		err = NULL;
		if (!rmq_parse_locked((const char *) data, size, asked, 2, locked, &err))
			FUZZ_ASSERT(err != NULL && !locked[0] && !locked[1]);
		{
			int64		ms = 0;

			err = NULL;
			if (rmq_parse_uptime((const char *) data, size, &ms, &err))
				FUZZ_ASSERT(ms >= 0);
			else
				FUZZ_ASSERT(err != NULL && ms == -1);
		}
	}

	/* the address splitter and the hash on the raw bytes as a C string */
	if (size < 4096)
	{
		char	   *s = palloc(size + 1);
		char		host[64];
		int			port = -1;

		memcpy(s, data, size);
		s[size] = '\0';
		if (rmq_split_addr(s, host, sizeof(host), &port))
			FUZZ_ASSERT(port > 0 && port <= 65535 && strlen(host) < sizeof(host));
		(void) rmq_java_hash(s);
	}
	fuzz_reset();
	return 0;
}
