/*
 * test_group.c — consumer-group bodies against what the official 5.3.3
 * client encodes (HeartbeatData, LockBatchRequestBody,
 * UnlockBatchRequestBody built in Java and printed with encode()), and the
 * answers' parsers against good and hostile input.
 */
#include "unit.h"

TEST(test_group_heartbeat_java)
{
	StringInfoData b;
	RmqSubscription sub = {"T", "a || b", 1796102447133LL};

	initStringInfo(&b);
	rmq_group_heartbeat_body(&b, "127.0.0.1@123#456", "G", "CONSUME_FROM_LAST_OFFSET", &sub, 1);
	CHECK_STR(b.data,
			  "{\"clientID\":\"127.0.0.1@123#456\",\"consumerDataSet\":[{\"consumeFromWhere\":\"CONSUME_FROM_LAST_OFFSET\","
			  "\"consumeType\":\"CONSUME_PASSIVELY\",\"groupName\":\"G\",\"messageModel\":\"CLUSTERING\","
			  "\"subscriptionDataSet\":[{\"classFilterMode\":false,\"codeSet\":[97,98],\"expressionType\":\"TAG\","
			  "\"subString\":\"a || b\",\"subVersion\":1796102447133,\"tagsSet\":[\"a\",\"b\"],\"topic\":\"T\"}],"
			  "\"unitMode\":false}],\"heartbeatFingerprint\":0,\"producerDataSet\":[],\"withoutSub\":false}");
	/* "*", the retry topic, an expression with empties and odd spacing */
	{
		RmqSubscription subs[2] = {{"T", "  x ||| ||y\t", 7}, {"%RETRY%G", NULL, 7}};

		resetStringInfo(&b);
		rmq_group_heartbeat_body(&b, "c", "G", "CONSUME_FROM_FIRST_OFFSET", subs, 2);
		CHECK(strstr(b.data, "\"codeSet\":[120,124,121],\"expressionType\":\"TAG\",\"subString\":\"  x ||| ||y\\t\"") != NULL);
		CHECK(strstr(b.data, "\"tagsSet\":[\"x\",\"|\",\"y\"]") != NULL);
		CHECK(strstr(b.data, "{\"classFilterMode\":false,\"codeSet\":[],\"expressionType\":\"TAG\",\"subString\":\"*\","
					 "\"subVersion\":7,\"tagsSet\":[],\"topic\":\"%RETRY%G\"}") != NULL);
		CHECK(rmq_json_parse(b.data, b.len, NULL) != NULL);
	}
}

TEST(test_group_lock_body_java)
{
	StringInfoData b;
	RmqMq		mqs[2] = {{"T", "broker-a", 1}, {"T", "broker-a", 0}};

	initStringInfo(&b);
	rmq_group_mq_body(&b, "G", "c1", mqs, 2);
	CHECK_STR(b.data, "{\"clientId\":\"c1\",\"consumerGroup\":\"G\",\"mqSet\":[{\"brokerName\":\"broker-a\",\"queueId\":1,"
			  "\"topic\":\"T\"},{\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"T\"}],\"onlyThisBroker\":true}");
	resetStringInfo(&b);
	rmq_group_mq_body(&b, "G\"", "c\\1", mqs, 0);
	CHECK_STR(b.data, "{\"clientId\":\"c\\\\1\",\"consumerGroup\":\"G\\\"\",\"mqSet\":[],\"onlyThisBroker\":true}");
}

TEST(test_group_consumer_ids)
{
	char	  **ids;
	int			n;
	char	   *err = NULL;
	const char *ok = "{\"consumerIdList\":[\"b\",\"a\",\"b\"]}";

	CHECK(rmq_parse_consumer_ids(ok, strlen(ok), &ids, &n, &err));
	CHECK_INT(n, 3);
	if (n == 3)
	{
		CHECK_STR(ids[0], "b");
		CHECK_STR(ids[2], "b");
	}
	{
		const char *empty = "{\"consumerIdList\":[]}";

		CHECK(rmq_parse_consumer_ids(empty, strlen(empty), &ids, &n, &err));
		CHECK_INT(n, 0);
	}
	{
		const char *bad[] = {"{}", "{\"consumerIdList\":{}}", "{\"consumerIdList\":[1]}",
		"{\"consumerIdList\":[\"\"]}", "{\"consumerIdList\":[null]}", "[", "{\"consumerIdList\":[\"a\",[]]}"};

		for (int i = 0; i < (int) lengthof(bad); i++)
		{
			err = NULL;
			CHECK_MSG(!rmq_parse_consumer_ids(bad[i], strlen(bad[i]), &ids, &n, &err) && err != NULL, "%s", bad[i]);
		}
	}
	/* past the bound */
	{
		StringInfoData big;

		initStringInfo(&big);
		appendStringInfoString(&big, "{\"consumerIdList\":[");
		for (int i = 0; i <= RMQ_MAX_GROUP_MEMBERS; i++)
			appendStringInfo(&big, "%s\"c\"", i ? "," : "");
		appendStringInfoString(&big, "]}");
		CHECK(!rmq_parse_consumer_ids(big.data, big.len, &ids, &n, &err));
	}
}

TEST(test_group_locked)
{
	RmqMq		asked[3] = {{"T", "broker-a", 0}, {"T", "broker-a", 1}, {"%RETRY%G", "broker-a", 0}};
	bool		locked[3];
	char	   *err = NULL;
	/* as Java's LockBatchResponseBody encodes it, plus one never asked for */
	const char *ok = "{\"lockOKMQSet\":[{\"brokerName\":\"broker-a\",\"queueId\":1,\"topic\":\"T\"},"
		"{\"brokerName\":\"broker-b\",\"queueId\":0,\"topic\":\"T\"},"
		"{\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"%RETRY%G\"}]}";

	CHECK(rmq_parse_locked(ok, strlen(ok), asked, 3, locked, &err));
	CHECK(!locked[0] && locked[1] && locked[2]);
	CHECK(rmq_parse_locked("{\"lockOKMQSet\":[]}", 18, asked, 3, locked, &err));
	CHECK(!locked[0] && !locked[1] && !locked[2]);
	{
		const char *bad[] = {"{\"lockOKMQSet\":{}}", "{\"lockOKMQSet\":[{\"topic\":\"T\"}]}",
			"{\"lockOKMQSet\":[{\"brokerName\":\"broker-a\",\"queueId\":\"x\",\"topic\":\"T\"}]}", "nope"};

		for (int i = 0; i < (int) lengthof(bad); i++)
		{
			err = NULL;
			CHECK_MSG(!rmq_parse_locked(bad[i], strlen(bad[i]), asked, 3, locked, &err) && err != NULL, "%s", bad[i]);
			CHECK(!locked[0] && !locked[1] && !locked[2]);
		}
	}
}

/* GET_BROKER_RUNTIME_INFO's KVTable, as StoreStatsService formats "runtime". */
TEST(test_group_uptime)
{
	int64		ms = 0;
	char	   *err = NULL;
	const char *ok = "{\"table\":{\"bootTimestamp\":\"1764572400000\",\"brokerVersion\":\"479\","
		"\"runtime\":\"[ 2 days, 3 hours, 4 minutes, 5 seconds ]\"}}";

	CHECK(rmq_parse_uptime(ok, strlen(ok), &ms, &err));
	CHECK(ms == (((2 * 24 + 3) * 60 + 4) * 60 + 5) * INT64CONST(1000));
	{
		const char *young = "{\"table\":{\"runtime\":\"[ 0 days, 0 hours, 0 minutes, 12 seconds ]\"}}";

		CHECK(rmq_parse_uptime(young, strlen(young), &ms, &err) && ms == 12000);
	}
	{
		/* grouped digits (MessageFormat past 999 days), junk, wrong shapes */
		const char *bad[] = {"{\"table\":{\"runtime\":\"[ 1,000 days, 0 hours, 0 minutes, 0 seconds ]\"}}",
			"{\"table\":{\"runtime\":\"[ 0 days, 0 hours, 0 minutes, 0 seconds ] x\"}}",
			"{\"table\":{\"runtime\":\"[ 0 days, 25 hours, 0 minutes, 0 seconds ]\"}}",
			"{\"table\":{\"runtime\":\"[ -1 days, 0 hours, 0 minutes, 0 seconds ]\"}}",
			"{\"table\":{\"runtime\":5}}", "{\"table\":[]}", "{}", "nope"};

		for (int i = 0; i < (int) lengthof(bad); i++)
		{
			err = NULL;
			ms = 0;
			CHECK_MSG(!rmq_parse_uptime(bad[i], strlen(bad[i]), &ms, &err) && err != NULL && ms == -1, "%s", bad[i]);
		}
	}
}

void		run_group_tests(void);

void
run_group_tests(void)
{
	RUN(test_group_heartbeat_java);
	RUN(test_group_lock_body_java);
	RUN(test_group_consumer_ids);
	RUN(test_group_locked);
	RUN(test_group_uptime);
}
