/*
 * test_route.c — a route is hostile input: bounded arrays, bounded queue
 * counts, no broker twice, no more queues per topic than a cursor array
 * may hold; sums that used to wrap an int are refused before any sizing.
 */
#include "unit.h"

static char *
route_json(int nbrokers, int queues, bool dup_broker, bool dup_queue)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfoString(&s, "{\"brokerDatas\":[");
	for (int i = 0; i < nbrokers; i++)
		appendStringInfo(&s, "%s{\"brokerAddrs\":{0:\"127.0.0.1:%d\"},\"brokerName\":\"b%d\",\"cluster\":\"C\"}",
						 i ? "," : "", 10000 + i % 50000, dup_broker ? 0 : i);
	appendStringInfoString(&s, "],\"queueDatas\":[");
	for (int i = 0; i < nbrokers; i++)
		appendStringInfo(&s, "%s{\"brokerName\":\"b%d\",\"perm\":6,\"readQueueNums\":%d,\"writeQueueNums\":%d}",
						 i ? "," : "", dup_queue ? 0 : i, queues, queues);
	appendStringInfoString(&s, "]}");
	return s.data;
}

static bool
parses(const char *j, RmqRoute *r, char **err)
{
	*err = NULL;
	return rmq_parse_route(exact_copy(j, strlen(j)), strlen(j), r, err);
}

TEST(test_route_bounds)
{
	RmqRoute	r;
	char	   *err;

	/* the limits themselves are fine */
	CHECK_MSG(parses(route_json(64, RMQ_MAX_BROKER_QUEUES, false, false), &r, &err), "%s", err ? err : "");
	CHECK_INT(r.nbrokers, 64);
	CHECK_INT(r.queues[63].read_queue_nums, RMQ_MAX_BROKER_QUEUES);

	/* one more queue per broker */
	CHECK(!parses(route_json(2, RMQ_MAX_BROKER_QUEUES + 1, false, false), &r, &err) &&
		  err && strstr(err, "queue counts outside"));
	/* the route of the issue: one broker 32,770 times, 65535 queues each */
	CHECK(!parses(route_json(32770, 65535, true, true), &r, &err) && err);
	/* a broker named twice, in either list */
	CHECK(!parses(route_json(3, 4, true, false), &r, &err) && err && strstr(err, "twice"));
	CHECK(!parses(route_json(3, 4, false, true), &r, &err) && err && strstr(err, "twice"));
	/* too many brokers */
	CHECK(!parses(route_json(RMQ_MAX_ROUTE_BROKERS + 1, 1, false, false), &r, &err) &&
		  err && strstr(err, "at most"));
	/* more queues per topic than accepted, in broker-sized pieces */
	CHECK(!parses(route_json(RMQ_MAX_TOPIC_QUEUES / RMQ_MAX_BROKER_QUEUES + 1, RMQ_MAX_BROKER_QUEUES,
							 false, false), &r, &err) && err && strstr(err, "at most"));
	CHECK(parses(route_json(RMQ_MAX_TOPIC_QUEUES / RMQ_MAX_BROKER_QUEUES, RMQ_MAX_BROKER_QUEUES,
							false, false), &r, &err));
	/* negative counts, counts that do not fit an int */
	CHECK(!parses("{\"brokerDatas\":[],\"queueDatas\":[{\"brokerName\":\"a\",\"readQueueNums\":-1,\"writeQueueNums\":1}]}",
				  &r, &err));
	CHECK(!parses("{\"brokerDatas\":[],\"queueDatas\":[{\"brokerName\":\"a\",\"readQueueNums\":1,\"writeQueueNums\":4294967297}]}",
				  &r, &err));
}

TEST(test_route_size)
{
	RmqRoute	r;
	char	   *err = NULL;
	size_t		len = RMQ_MAX_ROUTE_JSON + 1;
	char	   *big = malloc(len);

	/* a well-formed but oversized route is refused before it is parsed */
	memset(big, ' ', len);
	memcpy(big, "{\"brokerDatas\":[],\"queueDatas\":[]}", 34);
	CHECK(!rmq_parse_route(big, len, &r, &err) && err && strstr(err, "exceeds"));
	CHECK(rmq_parse_route(big, 34, &r, &err));
}

/* JSON is parsed within a fixed multiple of its size, or refused. */
TEST(test_json_expansion)
{
	size_t		n = 1 << 20;
	char	   *dense = malloc(n);
	char	   *err = NULL;

	/* "[1,1,1,...]": 28 times its size as nodes */
	dense[0] = '[';
	for (size_t i = 1; i < n - 1; i += 2)
	{
		dense[i] = '1';
		dense[i + 1] = ',';
	}
	dense[n - 2] = '1';
	dense[n - 1] = ']';
	CHECK(rmq_json_parse(dense, n, &err) == NULL && err && strstr(err, "memory"));
	/* the same with room between the values parses */
	{
		StringInfoData s;

		initStringInfo(&s);
		appendStringInfoChar(&s, '[');
		for (int i = 0; i < 20000; i++)
			appendStringInfo(&s, "%s{\"brokerName\":\"broker-%d\",\"perm\":6}", i ? "," : "", i);
		appendStringInfoChar(&s, ']');
		err = NULL;
		CHECK_MSG(rmq_json_parse(s.data, s.len, &err) != NULL, "%s", err ? err : "");
	}
	/* a frame whose JSON header is longer than a header may be */
	{
		size_t		hl = RMQ_MAX_HEADER_LEN + 1;
		char	   *f = malloc(4 + hl);
		RmqCommand	cmd;

		memset(f + 4, ' ', hl);
		f[0] = 0;
		f[1] = (char) (hl >> 16);
		f[2] = (char) (hl >> 8);
		f[3] = (char) hl;
		memcpy(f + 4, "{\"code\":0}", 10);
		err = NULL;
		CHECK(!rmq_frame_decode(f, 4 + hl, &cmd, &err) && err && strstr(err, "longer"));
	}
}

void		run_route_tests(void);

void
run_route_tests(void)
{
	RUN(test_route_bounds);
	RUN(test_route_size);
	RUN(test_json_expansion);
}
