/*
 * test_sign.c — request signing against vectors the official client's
 * AclClientRPCHook produced (test/java/SignVector.java), which a live 5.3.3
 * broker with ACL 2.0 accepted.
 */
#include "unit.h"

TEST(test_sign_vectors)
{
	RmqCommand	cmd;
	char	   *err = NULL;

	/* GET_MAX_OFFSET as the Java client sends it (with committed=true) */
	rmq_cmd_init(&cmd, 30);
	rmq_cmd_add(&cmd, "topic", "TopicTest");
	rmq_cmd_add(&cmd, "queueId", "0");
	rmq_cmd_add(&cmd, "bname", "broker-a");
	rmq_cmd_add(&cmd, "committed", "true");
	CHECK_MSG(rmq_sign(&cmd, "app", "app_secret", &err), "%s", err ? err : "");
	CHECK_STR(rmq_cmd_field(&cmd, "AccessKey"), "app");
	CHECK_STR(rmq_cmd_field(&cmd, "Signature"), "AOUMFdFUN3eciabxoPq0syLrM0E=");

	/* SEND_MESSAGE_V2 with a security token, 0x01/0x02 and non-ASCII text, a body */
	{
		static const char body[] = "hello \xC3\xBC \xE4\xB8\x96\xE7\x95\x8C";

		rmq_cmd_init(&cmd, 310);
		rmq_cmd_add(&cmd, "SecurityToken", "tok123");
		rmq_cmd_add(&cmd, "a", "pg");
		rmq_cmd_add(&cmd, "b", "TopicTest");
		rmq_cmd_add(&cmd, "c", "TBW102");
		rmq_cmd_add(&cmd, "d", "4");
		rmq_cmd_add(&cmd, "e", "1");
		rmq_cmd_add(&cmd, "f", "0");
		rmq_cmd_add(&cmd, "g", "1700000000000");
		rmq_cmd_add(&cmd, "h", "0");
		rmq_cmd_add(&cmd, "i", "TAGS\001\xC3\xBC\002UNIQ_KEY\001AC1100010000000000000000000000001\002");
		rmq_cmd_add(&cmd, "j", "0");
		rmq_cmd_add(&cmd, "k", "false");
		rmq_cmd_add(&cmd, "m", "false");
		rmq_cmd_add(&cmd, "n", "broker-a");
		cmd.body = body;
		cmd.body_len = sizeof(body) - 1;
		CHECK_MSG(rmq_sign(&cmd, "app", "app_secret", &err), "%s", err ? err : "");
		CHECK_STR(rmq_cmd_field(&cmd, "Signature"), "Pzf7/ixEa8ezNt4I8cKn9oCkk0U=");
	}

	/* the order fields were added in does not matter; a changed body does */
	{
		RmqCommand	a,
					b;

		rmq_cmd_init(&a, 11);
		rmq_cmd_add(&a, "z", "1");
		rmq_cmd_add(&a, "b", "2");
		rmq_cmd_init(&b, 11);
		rmq_cmd_add(&b, "b", "2");
		rmq_cmd_add(&b, "z", "1");
		CHECK(rmq_sign(&a, "u", "s", &err) && rmq_sign(&b, "u", "s", &err));
		CHECK_STR(rmq_cmd_field(&a, "Signature"), rmq_cmd_field(&b, "Signature"));
		rmq_cmd_init(&b, 11);
		rmq_cmd_add(&b, "b", "2");
		rmq_cmd_add(&b, "z", "1");
		b.body = "x";
		b.body_len = 1;
		CHECK(rmq_sign(&b, "u", "s", &err));
		CHECK(strcmp(rmq_cmd_field(&a, "Signature"), rmq_cmd_field(&b, "Signature")) != 0);
	}
	/* the signed fields go out in the frame */
	{
		StringInfoData f;

		initStringInfo(&f);
		rmq_frame_encode(&f, &cmd);
		CHECK(strstr(f.data + 8, "\"AccessKey\":\"app\"") != NULL);
		CHECK(strstr(f.data + 8, "\"Signature\":\"Pzf7/ixEa8ezNt4I8cKn9oCkk0U=\"") != NULL);
	}
}

void		run_sign_tests(void);

void
run_sign_tests(void)
{
	RUN(test_sign_vectors);
}
