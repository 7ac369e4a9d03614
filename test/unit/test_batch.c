/*
 * test_batch.c — unit tests for what a BatchCQ queue stores (one record of
 * INNER_BATCH | NEED_UNWRAP standing for many queue offsets) and for the
 * text rules of properties (UTF-8 as Java reads it, NUL as U+FFFD).
 */
#include "unit.h"

#define FFFD "\xEF\xBF\xBD"

/* One inner message in the batch encoding (§6.3), sizes from the parts. */
static void
inner(StringInfo s, int32 flag, const char *body, const char *props)
{
	rmq_batch_append(s, flag, body, strlen(body), props, strlen(props));
}

/* A stored record holding `batch` as an inner batch of INNER_NUM num. */
static void
batch_record(StringInfo out, const StringInfo batch, int num, int64 base)
{
	MsgSpec		spec;
	char	   *props = psprintf("WAIT\001true\002UNIQ_KEY\001BATCHKEY\002CLUSTER\001c\002INNER_NUM\001%d\002INNER_BASE\001" INT64_FORMAT "\002",
								 num, base);

	default_spec(&spec);
	spec.sysflag = RMQ_SYSFLAG_INNER_BATCH | RMQ_SYSFLAG_NEED_UNWRAP;
	spec.queue_offset = base;
	spec.reconsume = 0;
	spec.body = batch->data;
	spec.body_len = batch->len;
	spec.props = props;
	spec.props_len = strlen(props);
	build_msg(out, &spec);
}

static bool
decode_keep(const StringInfo s, RmqMessage **msgs, int *n, char **err)
{
	char	   *c = exact_copy(s->data, s->len);

	*msgs = NULL;
	*n = 0;
	*err = NULL;
	return rmq_decode_messages(c, s->len, RMQ_DECODE_CHECK_CRC | RMQ_DECODE_KEEP_DAMAGED, msgs, n, err);
}

TEST(test_inner_batch_unpacked)
{
	StringInfoData b,
				s;
	RmqMessage *msgs;
	int			n;
	char	   *err;
	MsgSpec		plain;

	initStringInfo(&b);
	inner(&b, 7, "first", "TAGS\001TagA\002KEYS\001k1 k2\002UNIQ_KEY\001ID0\002WAIT\001true\002");
	inner(&b, 8, "second", "TAGS\001TagB\002UNIQ_KEY\001ID1\002");
	inner(&b, 9, "", "UNIQ_KEY\001ID2\002");
	initStringInfo(&s);
	/* a plain record before it, one after */
	default_spec(&plain);
	plain.queue_offset = 99;
	build_msg(&s, &plain);
	batch_record(&s, &b, 3, 100);
	plain.queue_offset = 103;
	build_msg(&s, &plain);

	CHECK_MSG(decode_keep(&s, &msgs, &n, &err), "%s", err ? err : "");
	CHECK_INT(n, 5);
	if (n != 5)
		return;
	CHECK_INT(msgs[0].queue_offset, 99);
	CHECK_INT(msgs[4].queue_offset, 103);
	for (int i = 0; i < 3; i++)
	{
		const RmqMessage *m = &msgs[1 + i];

		CHECK(m->damage == NULL);
		CHECK_INT(m->queue_offset, 100 + i);
		CHECK_INT(m->span, 1);
		CHECK_INT(m->flag, 7 + i);
		CHECK_INT(m->queue_id, 3);
		/* the stored record's hosts and times, no offset id, no reconsume count */
		CHECK_STR(m->born_host, "127.0.0.1:1234");
		CHECK_STR(m->store_host, "127.0.0.1:10911");
		CHECK_INT(m->store_timestamp, INT64CONST(1700000000456));
		CHECK_STR(m->msg_id, "");
		CHECK_INT(m->reconsume_times, 0);
		CHECK_STR(m->topic, "TopicTest");
		/* its own properties only: nothing of the batch's */
		CHECK_STR(rmq_msg_prop(m, "INNER_NUM"), NULL);
		CHECK_STR(rmq_msg_prop(m, "CLUSTER"), NULL);
		CHECK_STR(rmq_msg_prop(m, "UNIQ_KEY"), psprintf("ID%d", i));
	}
	CHECK_MEM(msgs[1].body, msgs[1].body_len, "first", 5);
	CHECK_MEM(msgs[2].body, msgs[2].body_len, "second", 6);
	CHECK_INT(msgs[3].body_len, 0);
	CHECK_STR(rmq_msg_prop(&msgs[1], "TAGS"), "TagA");
	CHECK_STR(rmq_msg_prop(&msgs[1], "KEYS"), "k1 k2");
	CHECK_STR(rmq_msg_prop(&msgs[2], "TAGS"), "TagB");
	CHECK_STR(rmq_msg_prop(&msgs[3], "TAGS"), NULL);

	/* strict decoding (no KEEP_DAMAGED) unpacks the same */
	{
		RmqMessage *strict = NULL;
		int			ns = 0;

		err = NULL;
		CHECK(rmq_decode_messages(exact_copy(s.data, s.len), s.len, 0, &strict, &ns, &err));
		CHECK_INT(ns, 5);
	}
}

/* Only both flags together mean "unwrap", as in the Java client. */
TEST(test_inner_batch_flags)
{
	StringInfoData b,
				s;
	RmqMessage *msgs;
	int			n;
	char	   *err;
	MsgSpec		spec;

	initStringInfo(&b);
	inner(&b, 0, "x", "UNIQ_KEY\001A\002");
	inner(&b, 0, "y", "UNIQ_KEY\001B\002");
	for (int f = 0; f < 2; f++)
	{
		initStringInfo(&s);
		default_spec(&spec);
		spec.sysflag = f == 0 ? RMQ_SYSFLAG_INNER_BATCH : RMQ_SYSFLAG_NEED_UNWRAP;
		spec.body = b.data;
		spec.body_len = b.len;
		spec.props = "INNER_NUM\0012\002";
		spec.props_len = strlen(spec.props);
		build_msg(&s, &spec);
		CHECK(decode_keep(&s, &msgs, &n, &err));
		CHECK_INT(n, 1);
		CHECK(n == 1 && msgs[0].body_len == (uint32) b.len && msgs[0].damage == NULL);
	}
}

/* A compressed batch record: the body is inflated first, then unpacked. */
TEST(test_inner_batch_compressed)
{
	StringInfoData b,
				z,
				s;
	RmqMessage *msgs;
	int			n;
	char	   *err;
	MsgSpec		spec;
	char	   *props = "INNER_NUM\00150\002";

	initStringInfo(&b);
	for (int i = 0; i < 50; i++)
		inner(&b, i, psprintf("compressible body %d %s", i, "aaaaaaaaaaaaaaaaaaaaaaaa"),
			  psprintf("UNIQ_KEY\001K%d\002", i));
	initStringInfo(&z);
	CHECK(rmq_compress_zlib(b.data, b.len, &z));
	initStringInfo(&s);
	default_spec(&spec);
	spec.sysflag = RMQ_SYSFLAG_INNER_BATCH | RMQ_SYSFLAG_NEED_UNWRAP | RMQ_SYSFLAG_COMPRESSED | RMQ_COMPRESSION_ZLIB;
	spec.body = z.data;
	spec.body_len = z.len;
	spec.props = props;
	spec.props_len = strlen(props);
	build_msg(&s, &spec);
	CHECK_MSG(decode_keep(&s, &msgs, &n, &err), "%s", err ? err : "");
	CHECK_INT(n, 50);
	if (n == 50)
	{
		CHECK_INT(msgs[49].queue_offset, 42 + 49);
		CHECK_STR(rmq_msg_prop(&msgs[49], "UNIQ_KEY"), "K49");
		CHECK(msgs[49].body_len > 0 && strncmp(msgs[49].body, "compressible body 49", 20) == 0);
	}
}

/*
 * Batches that lie: each becomes one damaged message at the batch's first
 * offset, standing for INNER_NUM offsets (1 if that is unusable), and the
 * records around it still decode.  Without KEEP_DAMAGED the answer fails.
 */
TEST(test_inner_batch_damaged)
{
	struct
	{
		const char *what;
		int			num;		/* INNER_NUM written; 0 = none */
		int			span;		/* expected */
		const char *err;
	}			cases[] = {
		{"more messages than INNER_NUM", 2, 2, "more messages than its INNER_NUM"},
		{"fewer messages than INNER_NUM", 4, 4, "holds 3 messages, but its INNER_NUM is 4"},
		{"no INNER_NUM", 0, 1, "no valid INNER_NUM"},
		{"INNER_NUM out of range", 40000, 1, "no valid INNER_NUM"},
		{"inner size overruns", 3, 3, "has size"},
		{"inner lengths disagree with size", 3, 3, "do not add up"},
		{"negative property length", 3, 3, "do not add up"},
		{"trailing bytes", 3, 3, "has size"},
	};

	for (int c = 0; c < (int) lengthof(cases); c++)
	{
		StringInfoData b,
					s;
		RmqMessage *msgs;
		int			n;
		char	   *err;
		MsgSpec		spec;
		char	   *props;

		initStringInfo(&b);
		for (int i = 0; i < 3; i++)
			inner(&b, 0, "body", psprintf("UNIQ_KEY\001K%d\002", i));
		if (c == 4)				/* second message's size runs past the end */
			put32((unsigned char *) b.data + be32(b.data), 5000);
		else if (c == 5)		/* its body length one more than there is */
			put32((unsigned char *) b.data + be32(b.data) + 16, 5);
		else if (c == 6)		/* property length negative */
		{
			int			at = be32(b.data) + 20 + 4;

			b.data[at] = (char) 0xFF;
			b.data[at + 1] = (char) 0xF0;
		}
		else if (c == 7)
			appendBinaryStringInfo(&b, "\0\0", 2);
		props = cases[c].num ? psprintf("INNER_NUM\001%d\002", cases[c].num) : "WAIT\001true\002";
		initStringInfo(&s);
		default_spec(&spec);
		spec.queue_offset = 10;
		build_msg(&s, &spec);	/* offset 10 */
		spec.queue_offset = 11;
		spec.sysflag = RMQ_SYSFLAG_INNER_BATCH | RMQ_SYSFLAG_NEED_UNWRAP;
		spec.body = b.data;
		spec.body_len = b.len;
		spec.props = props;
		spec.props_len = strlen(props);
		build_msg(&s, &spec);
		default_spec(&spec);
		spec.queue_offset = 11 + cases[c].span;
		build_msg(&s, &spec);

		cur_test = psprintf("test_inner_batch_damaged: %s", cases[c].what);
		CHECK_MSG(decode_keep(&s, &msgs, &n, &err), "%s", err ? err : "");
		CHECK_INT(n, 3);
		if (n == 3)
		{
			CHECK(msgs[0].damage == NULL && msgs[2].damage == NULL);
			CHECK(msgs[1].damage != NULL);
			CHECK_MSG(msgs[1].damage && strstr(msgs[1].damage, cases[c].err), "%s", msgs[1].damage);
			CHECK_INT(msgs[1].queue_offset, 11);
			CHECK_INT(msgs[1].span, cases[c].span);
			/* the damaged message's body is the whole stored record */
			CHECK_INT(msgs[1].body_len, be32(s.data + be32(s.data)));
		}
		err = NULL;
		n = 0;
		msgs = NULL;
		CHECK(!rmq_decode_messages(exact_copy(s.data, s.len), s.len, 0, &msgs, &n, &err) && err != NULL);
	}
	cur_test = "test_inner_batch_damaged";
}

/*
 * A batch inside a batch is not unpacked twice: inner messages carry no
 * flags of their own, so a body that happens to hold a stored record (even
 * one flagged as a batch) is just a body.
 */
TEST(test_inner_batch_nested)
{
	StringInfoData innerb,
				rec,
				outer,
				s;
	RmqMessage *msgs;
	int			n;
	char	   *err;

	initStringInfo(&innerb);
	inner(&innerb, 0, "deep", "UNIQ_KEY\001D\002");
	initStringInfo(&rec);
	batch_record(&rec, &innerb, 1, 0);
	initStringInfo(&outer);
	rmq_batch_append(&outer, 0, rec.data, rec.len, "UNIQ_KEY\001O\002", strlen("UNIQ_KEY\001O\002"));
	rmq_batch_append(&outer, 0, innerb.data, innerb.len, "UNIQ_KEY\001P\002", strlen("UNIQ_KEY\001P\002"));
	initStringInfo(&s);
	batch_record(&s, &outer, 2, 5);
	CHECK(decode_keep(&s, &msgs, &n, &err));
	CHECK_INT(n, 2);
	if (n == 2)
	{
		CHECK_MEM(msgs[0].body, msgs[0].body_len, rec.data, rec.len);
		CHECK_MEM(msgs[1].body, msgs[1].body_len, innerb.data, innerb.len);
		CHECK_INT(msgs[1].queue_offset, 6);
	}
}

/* The answer's message count is bounded, batches included. */
TEST(test_inner_batch_limits)
{
	StringInfoData b,
				s;
	RmqMessage *msgs;
	int			n;
	char	   *err;

	initStringInfo(&b);
	for (int i = 0; i < RMQ_MAX_INNER_MESSAGES; i++)
		inner(&b, 0, "", "");
	initStringInfo(&s);
	batch_record(&s, &b, RMQ_MAX_INNER_MESSAGES, 0);
	CHECK(decode_keep(&s, &msgs, &n, &err));
	CHECK_INT(n, RMQ_MAX_INNER_MESSAGES);
	/* two such batches and two more records: one message too many */
	batch_record(&s, &b, RMQ_MAX_INNER_MESSAGES, RMQ_MAX_INNER_MESSAGES);
	{
		MsgSpec		spec;

		default_spec(&spec);
		for (int i = 0; i < RMQ_MAX_ANSWER_MESSAGES - 2 * RMQ_MAX_INNER_MESSAGES + 1; i++)
			build_msg(&s, &spec);
	}
	CHECK(!decode_keep(&s, &msgs, &n, &err) && err && strstr(err, "more than"));
}

/* UTF-8 as Java's decoder reads it: each maximal malformed part is one U+FFFD. */
TEST(test_utf8_sanitize)
{
	struct
	{
		const char *in;
		int			len;
		const char *out;
	}			cases[] = {
		{"plain", 5, "plain"},
		{"gr\xC3\xBC\xC3\x9F" "e \xF0\x9F\x98\x80", 12, "gr\xC3\xBC\xC3\x9F" "e \xF0\x9F\x98\x80"},
		{"a\0b", 3, "a" FFFD "b"},
		{"\x80", 1, FFFD},
		{"\xC0\xAF", 2, FFFD FFFD},
		{"\xE0\x80\x80", 3, FFFD FFFD FFFD},
		{"\xE2\x82", 2, FFFD},
		{"\xE2\x82" "A", 3, FFFD "A"},
		{"\xED\xA0\x80", 3, FFFD FFFD FFFD},
		{"\xF4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD},
		{"\xF0\x9F\x98", 3, FFFD},
		{"\xF8\x88\x80\x80\x80", 5, FFFD FFFD FFFD FFFD FFFD},
		{"\xFF" "x", 2, FFFD "x"},
	};

	for (int c = 0; c < (int) lengthof(cases); c++)
	{
		bool		lossy = false;
		char	   *got = rmq_utf8_sanitize(exact_copy(cases[c].in, cases[c].len), cases[c].len, &lossy);

		CHECK_STR(got, cases[c].out);
		CHECK(lossy == (c > 1));
	}
}

/* In a record: text rules apply, props_raw keeps the bytes as stored. */
TEST(test_props_lossy_record)
{
	static const char pr[] = "TAGS\001T\000g\002KEYS\001\xFFk\002BIN\001\xC3\x28\002";
	MsgSpec		spec;
	StringInfoData s;
	RmqMessage *msgs;
	int			n;
	char	   *err;

	default_spec(&spec);
	spec.props = pr;
	spec.props_len = sizeof(pr) - 1;
	initStringInfo(&s);
	build_msg(&s, &spec);
	CHECK(decode_keep(&s, &msgs, &n, &err));
	CHECK_INT(n, 1);
	if (n != 1)
		return;
	CHECK(msgs[0].props_lossy);
	CHECK_MEM(msgs[0].props_raw, msgs[0].props_len, pr, sizeof(pr) - 1);
	CHECK_STR(rmq_msg_prop(&msgs[0], "TAGS"), "T" FFFD "g");
	CHECK_STR(rmq_msg_prop(&msgs[0], "KEYS"), FFFD "k");
	CHECK_STR(rmq_msg_prop(&msgs[0], "BIN"), FFFD "(");
	/* an ordinary record is not lossy and still keeps its raw string */
	default_spec(&spec);
	resetStringInfo(&s);
	build_msg(&s, &spec);
	CHECK(decode_keep(&s, &msgs, &n, &err));
	CHECK(n == 1 && !msgs[0].props_lossy && msgs[0].props_len == (uint32) spec.props_len);
}

void		run_batch_tests(void);

void
run_batch_tests(void)
{
	RUN(test_inner_batch_unpacked);
	RUN(test_inner_batch_flags);
	RUN(test_inner_batch_compressed);
	RUN(test_inner_batch_damaged);
	RUN(test_inner_batch_nested);
	RUN(test_inner_batch_limits);
	RUN(test_utf8_sanitize);
	RUN(test_props_lossy_record);
}
