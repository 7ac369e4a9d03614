/*
 * test_codec.c — unit tests for the RocketMQ protocol codec
 * (src/rmq_json.c, rmq_frame.c, rmq_message.c, rmq_proto.c).
 *
 * Built by `make unit` with -DFRONTEND against libpgcommon (palloc is
 * malloc there) under ASan+UBSan.  Prints one line per failed check and
 * ends with "N passed, M failed"; exit status is non-zero on any failure.
 */
#include "unit.h"

#include <zlib.h>
#include <lz4frame.h>
#include <zstd.h>

/*
 * The codec allocates with palloc and relies on memory contexts to free;
 * in FRONTEND nothing frees, so LeakSanitizer would fail every run.  Make
 * UBSan fatal so a runtime error is never just a line in the log.
 */
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *
__asan_default_options(void)
{
	return "detect_leaks=0";
}
const char *
__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

int			n_pass,
			n_fail;
const char *cur_test = "";

void		run_batch_tests(void);	/* test_batch.c */
void		run_route_tests(void);	/* test_route.c */
void		run_sign_tests(void);	/* test_sign.c */
void		run_alloc_tests(void);	/* test_alloc.c */
void		run_group_tests(void);	/* test_group.c */

static RmqJson *
jparse(const char *s)
{
	char	   *err = NULL;
	char	   *c = exact_copy(s, strlen(s));
	RmqJson    *r = rmq_json_parse(c, strlen(s), &err);

	free(c);
	return r;
}

static bool
jfails(const char *s, size_t len)
{
	char	   *err = NULL;
	char	   *c = exact_copy(s, len);
	RmqJson    *r = rmq_json_parse(c, len, &err);

	free(c);
	return r == NULL && err != NULL;
}
#define JFAILS(s) jfails((s), strlen(s))

/* ------------------------------------------------------------------ */
/* JSON                                                                */
/* ------------------------------------------------------------------ */
static const char *route_std =
"{\"brokerDatas\":[{\"brokerAddrs\":{\"0\":\"127.0.0.1:10911\",\"1\":\"127.0.0.2:10911\"},"
"\"brokerName\":\"broker-a\",\"cluster\":\"DefaultCluster\",\"enableActingMaster\":false}],"
"\"filterServerTable\":{},\"queueDatas\":[{\"brokerName\":\"broker-a\",\"perm\":6,"
"\"readQueueNums\":4,\"topicSysFlag\":0,\"writeQueueNums\":8}]}";

static const char *route_nonstd =
"{\"brokerDatas\":[{\"brokerAddrs\":{0:\"127.0.0.1:10911\"},\"brokerName\":\"broker-a\","
"\"cluster\":\"DefaultCluster\",\"enableActingMaster\":false}],\"filterServerTable\":{},"
"\"queueDatas\":[{\"brokerName\":\"broker-a\",\"perm\":6,\"readQueueNums\":4,"
"\"topicSysFlag\":0,\"writeQueueNums\":4}]}";

static const char *cluster_info =
"{\"brokerAddrTable\":{\"broker-a\":{\"brokerAddrs\":{0:\"127.0.0.1:10911\"},"
"\"brokerName\":\"broker-a\",\"cluster\":\"DefaultCluster\",\"enableActingMaster\":false}},"
"\"clusterAddrTable\":{\"DefaultCluster\":[\"broker-a\"]}}";

TEST(test_json_standard)
{
	RmqJson    *r = jparse(route_std);
	RmqJson    *bds,
			   *qds,
			   *addrs;
	int64		v = -1;

	CHECK(r != NULL);
	if (!r)
		return;
	CHECK_INT(r->type, RMQ_JSON_OBJECT);
	CHECK_INT(r->nchildren, 3);
	bds = rmq_json_get(r, "brokerDatas");
	CHECK(bds && bds->type == RMQ_JSON_ARRAY && bds->nchildren == 1);
	CHECK(bds && bds->child && bds->child->key == NULL);
	addrs = bds ? rmq_json_get(bds->child, "brokerAddrs") : NULL;
	CHECK(addrs && addrs->type == RMQ_JSON_OBJECT && addrs->nchildren == 2);
	CHECK_STR(rmq_json_get_str(addrs, "0"), "127.0.0.1:10911");
	CHECK_STR(rmq_json_get_str(addrs, "1"), "127.0.0.2:10911");
	CHECK_STR(rmq_json_get_str(addrs, "2"), NULL);
	CHECK_STR(rmq_json_get_str(bds->child, "enableActingMaster"), "false");
	CHECK_INT(rmq_json_get(bds->child, "enableActingMaster")->type, RMQ_JSON_BOOL);
	/* containers have no string value */
	CHECK_STR(rmq_json_get_str(bds->child, "brokerAddrs"), NULL);
	CHECK_STR(rmq_json_get_str(r, "filterServerTable"), NULL);
	CHECK_INT(rmq_json_get(r, "filterServerTable")->nchildren, 0);
	qds = rmq_json_get(r, "queueDatas");
	CHECK(qds && qds->nchildren == 1);
	CHECK(rmq_json_get_int64(qds->child, "perm", &v) && v == 6);
	CHECK(rmq_json_get_int64(qds->child, "writeQueueNums", &v) && v == 8);
	CHECK(!rmq_json_get_int64(qds->child, "brokerName", &v));
	CHECK(!rmq_json_get_int64(qds->child, "nope", &v));
	/* accessors on non-objects and NULL */
	CHECK(rmq_json_get(NULL, "x") == NULL);
	CHECK(rmq_json_get(bds, "x") == NULL);
	CHECK_STR(rmq_json_get_str(NULL, "x"), NULL);
}

TEST(test_json_nonstandard_keys)
{
	RmqJson    *r = jparse("{\"brokerAddrs\":{0:\"127.0.0.1:10911\", 1 : \"10.0.0.1:10911\"}}");
	RmqJson    *a;

	CHECK(r != NULL);
	if (!r)
		return;
	a = rmq_json_get(r, "brokerAddrs");
	CHECK(a && a->nchildren == 2);
	CHECK_STR(rmq_json_get_str(a, "0"), "127.0.0.1:10911");
	CHECK_STR(rmq_json_get_str(a, "1"), "10.0.0.1:10911");

	/* Integer-keyed currIdMap and a negative / long key */
	r = jparse("{\"currIdMap\":{-1:2,9223372036854775807:\"x\"}}");
	CHECK(r != NULL);
	if (r)
	{
		int64		v;

		a = rmq_json_get(r, "currIdMap");
		CHECK(rmq_json_get_int64(a, "-1", &v) && v == 2);
		CHECK_STR(rmq_json_get_str(a, "9223372036854775807"), "x");
	}

	/* single-quoted strings, as fastjson accepts */
	r = jparse("{'a':'b'}");
	CHECK(r != NULL);
	CHECK_STR(rmq_json_get_str(r, "a"), "b");
}

TEST(test_json_object_keys)
{
	RmqJson    *r = jparse("{\"offsetTable\":{{\"brokerName\":\"b\",\"queueId\":2,\"topic\":\"t\"}:{\"x\":1},"
						   "{\"brokerName\":\"b\",\"queueId\":3,\"topic\":\"t\"}:{\"x\":2}},\"n\":7}");
	RmqJson    *t;
	int64		v = 0;

	CHECK(r != NULL);
	if (!r)
		return;
	t = rmq_json_get(r, "offsetTable");
	CHECK(t && t->type == RMQ_JSON_OBJECT && t->nchildren == 2);
	if (t && t->child && t->child->next)
	{
		CHECK(t->child->key == NULL);
		CHECK(t->child->next->key == NULL);
		CHECK(rmq_json_get_int64(t->child, "x", &v) && v == 1);
		CHECK(rmq_json_get_int64(t->child->next, "x", &v) && v == 2);
	}
	CHECK(rmq_json_get_int64(r, "n", &v) && v == 7);

	/* the bare form, and an array key */
	r = jparse("{{\"brokerName\":\"b\",\"queueId\":2,\"topic\":\"t\"}:{\"x\":1}}");
	CHECK(r && r->nchildren == 1 && r->child->key == NULL);
	r = jparse("{[1,2]:3,\"k\":4}");
	CHECK(r && r->nchildren == 2 && r->child->key == NULL);
	CHECK(r && rmq_json_get_int64(r, "k", &v) && v == 4);
	/* object key that is itself malformed */
	CHECK(JFAILS("{{\"a\":}:1}"));
	CHECK(JFAILS("{{\"a\":1}}"));
}

TEST(test_json_nan)
{
	RmqJson    *r = jparse("{\"a\":NaN,\"b\":Infinity,\"c\":-Infinity,\"d\":[NaN, 1.5e3]}");
	int64		v;

	CHECK(r != NULL);
	if (!r)
		return;
	CHECK_INT(rmq_json_get(r, "a")->type, RMQ_JSON_NUMBER);
	CHECK_STR(rmq_json_get_str(r, "a"), "NaN");
	CHECK_STR(rmq_json_get_str(r, "b"), "Infinity");
	CHECK_STR(rmq_json_get_str(r, "c"), "-Infinity");
	CHECK(!rmq_json_get_int64(r, "a", &v));
	CHECK(!rmq_json_get_int64(r, "b", &v));
	CHECK_INT(rmq_json_get(r, "d")->nchildren, 2);
	CHECK_STR(rmq_json_get(r, "d")->child->next->str, "1.5e3");

	r = jparse("[null,true,false]");
	CHECK(r && r->nchildren == 3);
	if (r && r->nchildren == 3)
	{
		CHECK_INT(r->child->type, RMQ_JSON_NULL);
		CHECK_INT(r->child->next->type, RMQ_JSON_BOOL);
		CHECK_STR(r->child->next->str, "true");
		CHECK_STR(r->child->next->next->str, "false");
	}
	r = jparse("{\"n\":null}");
	CHECK_STR(rmq_json_get_str(r, "n"), NULL);
}

static const char *
jstr(const char *json)
{
	RmqJson    *r = jparse(json);

	if (r == NULL || r->type != RMQ_JSON_STRING)
		return NULL;
	return r->str;
}

TEST(test_json_escapes)
{
	CHECK_STR(jstr("\"\\u00e9\""), "\xC3\xA9");
	CHECK_STR(jstr("\"\\u00E9t\\u00E9\""), "\xC3\xA9t\xC3\xA9");
	CHECK_STR(jstr("\"\\u20AC\""), "\xE2\x82\xAC");
	CHECK_STR(jstr("\"\\u0041\""), "A");
	CHECK_STR(jstr("\"\\u07ff\""), "\xDF\xBF");
	CHECK_STR(jstr("\"\\uffff\""), "\xEF\xBF\xBF");
	/* surrogate pairs */
	CHECK_STR(jstr("\"\\ud83d\\ude00\""), "\xF0\x9F\x98\x80");
	CHECK_STR(jstr("\"\\uD83D\\uDE00!\""), "\xF0\x9F\x98\x80!");
	CHECK_STR(jstr("\"\\udbff\\udfff\""), "\xF4\x8F\xBF\xBF");
	/* lone surrogates become U+FFFD */
	CHECK_STR(jstr("\"\\ud83dx\""), "\xEF\xBF\xBDx");
	CHECK_STR(jstr("\"\\ude00\""), "\xEF\xBF\xBD");
	CHECK_STR(jstr("\"\\ud83d\\u0041\""), "\xEF\xBF\xBD" "A");
	CHECK_STR(jstr("\"\\ud83d\""), "\xEF\xBF\xBD");
	/* simple escapes */
	CHECK_STR(jstr("\"a\\/b\""), "a/b");
	CHECK_STR(jstr("\"http:\\/\\/x\\/y\""), "http://x/y");
	CHECK_STR(jstr("\"\\\"\\\\\\b\\f\\n\\r\\t\""), "\"\\\b\f\n\r\t");
	CHECK_STR(jstr("\"\""), "");
	/* raw UTF-8 passes through */
	CHECK_STR(jstr("\"\xE6\x97\xA5\xE6\x9C\xAC\""), "\xE6\x97\xA5\xE6\x9C\xAC");
	/* bad escapes */
	CHECK(JFAILS("\"\\u12G4\""));
	CHECK(JFAILS("\"\\u12\""));
	CHECK(JFAILS("\"\\u12"));
	CHECK(JFAILS("\"\\u0000\""));
	CHECK(JFAILS("\"abc\\"));
	CHECK(jfails("\"a\0b\"", 5));	/* raw NUL in a string */
	CHECK(jfails("\0", 1));
}

TEST(test_json_escape_roundtrip)
{
	const char *samples[] = {
		"plain", "", "quote\"back\\slash", "nl\ncr\rtab\t", "ctl\x01\x02\x1f",
		"utf8 \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", "slash/", "\x7f"
	};

	for (int i = 0; i < (int) lengthof(samples); i++)
	{
		StringInfoData s;
		RmqJson    *r;

		initStringInfo(&s);
		rmq_json_escape(&s, samples[i]);
		CHECK_MSG(s.data[0] == '"' && s.data[s.len - 1] == '"', "%s", s.data);
		for (int j = 0; j < s.len; j++)
			CHECK_MSG((unsigned char) s.data[j] >= 0x20, "raw control char in %s", s.data);
		r = rmq_json_parse(s.data, s.len, NULL);
		CHECK(r && r->type == RMQ_JSON_STRING);
		if (r)
			CHECK_STR(r->str, samples[i]);
	}
}

TEST(test_json_truncated)
{
	const char *docs[] = {route_std, route_nonstd, cluster_info,
		"{\"offsetTable\":{{\"brokerName\":\"b\",\"queueId\":2}:{\"x\":1}}}",
	"[\"\\ud83d\\ude00\",NaN,{\"a\":[true,null]}]"};

	for (int d = 0; d < (int) lengthof(docs); d++)
	{
		size_t		len = strlen(docs[d]);
		int			bad = 0;

		CHECK(!jfails(docs[d], len));
		for (size_t cut = 0; cut < len; cut++)
			if (!jfails(docs[d], cut))
			{
				bad++;
				printf("  accepted truncated doc %d at %zu\n", d, cut);
			}
		CHECK_INT(bad, 0);
	}
	CHECK(JFAILS(""));
	CHECK(JFAILS("   "));
	CHECK(JFAILS("{"));
	CHECK(JFAILS("{\"a\""));
	CHECK(JFAILS("{\"a\":"));
	CHECK(JFAILS("{\"a\":1"));
	CHECK(JFAILS("{\"a\":1,"));
	CHECK(JFAILS("[1,"));
	CHECK(JFAILS("\"abc"));
}

static char *
repeat_str(const char *open, const char *mid, const char *close, int n)
{
	StringInfoData s;

	initStringInfo(&s);
	for (int i = 0; i < n; i++)
		appendStringInfoString(&s, open);
	appendStringInfoString(&s, mid);
	for (int i = 0; i < n; i++)
		appendStringInfoString(&s, close);
	return s.data;
}

TEST(test_json_depth)
{
	char	   *s;
	char	   *err = NULL;

	/* 10000 levels: must fail cleanly */
	s = repeat_str("[", "", "]", 10000);
	CHECK(rmq_json_parse(s, strlen(s), &err) == NULL);
	CHECK(err != NULL && strstr(err, "deep") != NULL);
	s = repeat_str("{\"a\":", "1", "}", 10000);
	err = NULL;
	CHECK(rmq_json_parse(s, strlen(s), &err) == NULL);
	CHECK(err != NULL && strstr(err, "deep") != NULL);
	/* nesting through object keys */
	s = repeat_str("{", "1", ":1}", 10000);
	CHECK(jfails(s, strlen(s)));
	/* unbalanced deep input */
	s = repeat_str("[", "", "", 100000);
	CHECK(jfails(s, strlen(s)));
	/* reasonable nesting is fine, up to the limit */
	s = repeat_str("[", "1", "]", 40);
	CHECK(jparse(s) != NULL);
	s = repeat_str("[", "1", "]", RMQ_JSON_MAX_DEPTH);
	CHECK(jparse(s) != NULL);
	s = repeat_str("[", "1", "]", RMQ_JSON_MAX_DEPTH + 1);
	CHECK(jfails(s, strlen(s)));
}

TEST(test_json_garbage)
{
	CHECK(JFAILS("{\"a\":1} x"));
	CHECK(JFAILS("{\"a\":1}}"));
	CHECK(JFAILS("{\"a\":1},"));
	CHECK(JFAILS("[1]]"));
	CHECK(JFAILS("1 2"));
	CHECK(jfails("{\"a\":1}\0", 8));
	CHECK(!JFAILS("  {\"a\":1} \r\n\t "));
	CHECK(JFAILS("[1,]"));
	CHECK(JFAILS("[,1]"));
	CHECK(JFAILS("{\"a\" 1}"));
	CHECK(JFAILS("{\"a\":1,}"));
	CHECK(JFAILS("{,}"));
	CHECK(JFAILS("{\"a\"::1}"));
	CHECK(JFAILS("@"));
	CHECK(JFAILS("]"));
	CHECK(!JFAILS("{}"));
	CHECK(!JFAILS("[ ]"));
	CHECK(!JFAILS("42"));
}

TEST(test_json_int64)
{
	RmqJson    *r = jparse("{\"a\":-5,\"b\":\"123\",\"c\":99999999999999999999,\"d\":1.5,\"e\":\"\","
						   "\"f\":9223372036854775807,\"g\":-9223372036854775808,\"h\":true}");
	int64		v = 0;

	CHECK(r != NULL);
	CHECK(rmq_json_get_int64(r, "a", &v) && v == -5);
	CHECK(rmq_json_get_int64(r, "b", &v) && v == 123);	/* BrowserCompatible longs */
	CHECK(!rmq_json_get_int64(r, "c", &v));
	CHECK(!rmq_json_get_int64(r, "d", &v));
	CHECK(!rmq_json_get_int64(r, "e", &v));
	CHECK(rmq_json_get_int64(r, "f", &v) && v == PG_INT64_MAX);
	CHECK(rmq_json_get_int64(r, "g", &v) && v == PG_INT64_MIN);
	CHECK(!rmq_json_get_int64(r, "h", &v));
}

/* ------------------------------------------------------------------ */
/* frames                                                              */
/* ------------------------------------------------------------------ */

/* decode a frame given with its length prefix, via exact heap copy */
static bool
decode_whole(const char *frame, size_t len, RmqCommand *cmd, char **err)
{
	uint32		flen = 0;
	char	   *c;
	bool		ok;

	*err = NULL;
	if (len < 4 || !rmq_frame_length((const unsigned char *) frame, &flen, err))
		return false;
	if (flen != len - 4)
	{
		*err = "length prefix mismatch";
		return false;
	}
	c = exact_copy(frame + 4, len - 4);
	ok = rmq_frame_decode(c, len - 4, cmd, err);
	/* body points into c; keep it alive (leaks are off) */
	return ok;
}

TEST(test_frame_roundtrip)
{
	RmqCommand	cmd,
				out;
	StringInfoData f;
	char	   *err = NULL;
	int64		v = 0;
	static const char body[] = "hello\0world";

	rmq_cmd_init(&cmd, RMQ_GET_ROUTEINFO_BY_TOPIC);
	CHECK_INT(cmd.version, RMQ_CLIENT_VERSION);
	CHECK_STR(cmd.language, "CPP");
	cmd.opaque = 7;
	cmd.flag = RMQ_FLAG_ONEWAY;
	rmq_cmd_add(&cmd, "topic", "TopicTest");
	rmq_cmd_add_int64(&cmd, "queueId", -1);
	rmq_cmd_add_int64(&cmd, "offset", PG_INT64_MAX);
	rmq_cmd_add(&cmd, "skipped", NULL);
	rmq_cmd_add(&cmd, "esc\"key", "v\\al\nue\x01 \xC3\xA9");
	rmq_cmd_add(&cmd, "empty", "");
	/* more than the initial capacity of 16 */
	for (int i = 0; i < 40; i++)
		rmq_cmd_add(&cmd, psprintf("k%d", i), psprintf("v%d", i));
	cmd.remark = "remark \"quoted\"\n";
	cmd.body = body;
	cmd.body_len = sizeof(body) - 1;
	CHECK_STR(rmq_cmd_field(&cmd, "topic"), "TopicTest");
	CHECK(rmq_cmd_field_int64(&cmd, "queueId", &v) && v == -1);

	initStringInfo(&f);
	appendStringInfoString(&f, "XY");	/* encode appends */
	rmq_frame_encode(&f, &cmd);
	CHECK(f.data[0] == 'X' && f.data[1] == 'Y');
	CHECK_INT(be32(f.data + 2), f.len - 2 - 4);
	CHECK_INT((unsigned char) f.data[6], RMQ_SERIALIZE_JSON);
	CHECK_INT(be32(f.data + 6) & 0xFFFFFF, f.len - 2 - 8 - cmd.body_len);

	CHECK(decode_whole(f.data + 2, f.len - 2, &out, &err));
	CHECK_INT(out.code, RMQ_GET_ROUTEINFO_BY_TOPIC);
	CHECK_INT(out.opaque, 7);
	CHECK_INT(out.flag, RMQ_FLAG_ONEWAY);
	CHECK_INT(out.version, RMQ_CLIENT_VERSION);
	CHECK_STR(out.language, "CPP");
	CHECK_STR(out.remark, "remark \"quoted\"\n");
	CHECK_STR(rmq_cmd_field(&out, "topic"), "TopicTest");
	CHECK(rmq_cmd_field_int64(&out, "queueId", &v) && v == -1);
	CHECK(rmq_cmd_field_int64(&out, "offset", &v) && v == PG_INT64_MAX);
	CHECK_STR(rmq_cmd_field(&out, "skipped"), NULL);
	CHECK_STR(rmq_cmd_field(&out, "esc\"key"), "v\\al\nue\x01 \xC3\xA9");
	CHECK_STR(rmq_cmd_field(&out, "empty"), "");
	CHECK_STR(rmq_cmd_field(&out, "k39"), "v39");
	CHECK_INT(out.nfields, 5 + 40);
	CHECK(!rmq_cmd_field_int64(&out, "topic", &v));
	CHECK(!rmq_cmd_field_int64(&out, "missing", &v));
	CHECK_MEM(out.body, out.body_len, body, sizeof(body) - 1);

	/* no remark, no body, negative code and opaque */
	rmq_cmd_init(&cmd, -3);
	cmd.opaque = PG_INT32_MIN;
	cmd.flag = RMQ_FLAG_RESPONSE;
	resetStringInfo(&f);
	rmq_frame_encode(&f, &cmd);
	CHECK(decode_whole(f.data, f.len, &out, &err));
	CHECK_INT(out.code, -3);
	CHECK_INT(out.opaque, PG_INT32_MIN);
	CHECK_INT(out.flag, RMQ_FLAG_RESPONSE);
	CHECK(out.remark == NULL);
	CHECK_INT(out.nfields, 0);
	CHECK_INT(out.body_len, 0);

	/* the language is a JSON string like any other: escaped */
	cmd.language = "A\"B\\C";
	resetStringInfo(&f);
	rmq_frame_encode(&f, &cmd);
	CHECK(decode_whole(f.data, f.len, &out, &err));
	CHECK_STR(out.language, "A\"B\\C");
	/* a NULL language (as decoded from an unknown binary byte) goes out as OTHER */
	cmd.language = NULL;
	resetStringInfo(&f);
	rmq_frame_encode(&f, &cmd);
	CHECK(decode_whole(f.data, f.len, &out, &err));
	CHECK_STR(out.language, "OTHER");
}

TEST(test_frame_json_example)
{
	/* §1.1 worked example, a broker reply */
	const char *h = "{\"code\":0,\"flag\":1,\"language\":\"JAVA\",\"opaque\":0,"
	"\"serializeTypeCurrentRPC\":\"JSON\",\"version\":403}";
	unsigned char f[200];
	RmqCommand	cmd;
	char	   *err;
	uint32		len;

	CHECK_INT(strlen(h), 0x5f);
	put32(f, 0x63);
	put32(f + 4, 0x5f);
	memcpy(f + 8, h, strlen(h));
	CHECK(rmq_frame_length(f, &len, &err) && len == 99);
	CHECK(decode_whole((char *) f, 4 + 99, &cmd, &err));
	CHECK_INT(cmd.code, 0);
	CHECK_INT(cmd.flag, 1);
	CHECK_STR(cmd.language, "JAVA");
	CHECK_INT(cmd.version, 403);
	CHECK_INT(cmd.body_len, 0);

	/* §1.3: the same request in JSON is 97 header bytes */
	h = "{\"code\":105,\"extFields\":{\"topic\":\"TopicTest\"},\"flag\":0,\"language\":\"CPP\","
		"\"opaque\":1,\"version\":401}";
	CHECK_INT(strlen(h), 97);
	put32(f, 0x65);
	put32(f + 4, 0x61);
	memcpy(f + 8, h, strlen(h));
	CHECK(decode_whole((char *) f, 4 + 0x65, &cmd, &err));
	CHECK_INT(cmd.code, 105);
	CHECK_STR(rmq_cmd_field(&cmd, "topic"), "TopicTest");
	CHECK_INT(cmd.version, 401);
	CHECK_INT(cmd.opaque, 1);

	/* cpp-style numeric extFields; null and container values are absent */
	{
		const char *hh = "{\"code\":11,\"extFields\":{\"queueId\":3,\"x\":null,\"o\":{},\"b\":true},"
		"\"remark\":\"\"}";
		size_t		hl = strlen(hh);
		char	   *buf = palloc(4 + hl + 3);
		int64		v;

		put32((unsigned char *) buf, hl);
		memcpy(buf + 4, hh, hl);
		memcpy(buf + 4 + hl, "abc", 3);
		CHECK(rmq_frame_decode(buf, 4 + hl + 3, &cmd, &err));
		CHECK(rmq_cmd_field_int64(&cmd, "queueId", &v) && v == 3);
		CHECK_STR(rmq_cmd_field(&cmd, "x"), NULL);
		CHECK_STR(rmq_cmd_field(&cmd, "o"), NULL);
		CHECK_STR(rmq_cmd_field(&cmd, "b"), "true");
		CHECK_STR(cmd.remark, "");
		CHECK(cmd.language == NULL);
		CHECK_MEM(cmd.body, cmd.body_len, "abc", 3);
	}
}

/* §1.3 worked example */
static const unsigned char bin_example[] = {
	0x00, 0x00, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29,
	0x00, 0x69, 0x01, 0x01, 0x91, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14,
	0x00, 0x05, 't', 'o', 'p', 'i', 'c',
	0x00, 0x00, 0x00, 0x09, 'T', 'o', 'p', 'i', 'c', 'T', 'e', 's', 't'
};

static bool
decode_raw(const void *buf, size_t len, RmqCommand *cmd, char **err)
{
	char	   *c = exact_copy(buf, len);

	*err = NULL;
	return rmq_frame_decode(c, len, cmd, err);
}

TEST(test_frame_binary)
{
	RmqCommand	cmd;
	char	   *err = NULL;
	uint32		len = 0;
	unsigned char b[256];
	size_t		n;
	int			bad;

	CHECK_INT(sizeof(bin_example), 4 + 45);
	CHECK(rmq_frame_length(bin_example, &len, &err) && len == 45);
	CHECK(decode_whole((const char *) bin_example, sizeof(bin_example), &cmd, &err));
	CHECK_INT(cmd.code, 105);
	CHECK_STR(cmd.language, "CPP");
	CHECK_INT(cmd.version, 401);
	CHECK_INT(cmd.opaque, 1);
	CHECK_INT(cmd.flag, 0);
	CHECK(cmd.remark == NULL);
	CHECK_INT(cmd.nfields, 1);
	CHECK_STR(rmq_cmd_field(&cmd, "topic"), "TopicTest");
	CHECK_INT(cmd.body_len, 0);

	/* Build one with a remark, several fields, empty key/value, a body. */
	n = 0;
	put32(b + n, 0);			/* type+hlen, fill later */
	n += 4;
	b[n++] = 0xFF;				/* code -2 as int16 */
	b[n++] = 0xFE;
	b[n++] = 9;					/* GO */
	b[n++] = 0x01;
	b[n++] = 0xDF;				/* version 479 */
	put32(b + n, 0xFFFFFFFF);	/* opaque -1 */
	n += 4;
	put32(b + n, 1);			/* flag: response */
	n += 4;
	put32(b + n, 5);
	n += 4;
	memcpy(b + n, "oops!", 5);
	n += 5;
	{
		size_t		extpos = n;

		n += 4;
		/* "a" -> "1" */
		b[n++] = 0; b[n++] = 1; b[n++] = 'a';
		put32(b + n, 1); n += 4; b[n++] = '1';
		/* "" -> "x": dropped */
		b[n++] = 0; b[n++] = 0;
		put32(b + n, 1); n += 4; b[n++] = 'x';
		/* "e" -> "": dropped */
		b[n++] = 0; b[n++] = 1; b[n++] = 'e';
		put32(b + n, 0); n += 4;
		/* "n\0" -> "x" and "m" -> "a\0": NUL bytes, dropped */
		b[n++] = 0; b[n++] = 2; b[n++] = 'n'; b[n++] = 0;
		put32(b + n, 1); n += 4; b[n++] = 'x';
		b[n++] = 0; b[n++] = 1; b[n++] = 'm';
		put32(b + n, 2); n += 4; b[n++] = 'a'; b[n++] = 0;
		/* "bb" -> "22" */
		b[n++] = 0; b[n++] = 2; b[n++] = 'b'; b[n++] = 'b';
		put32(b + n, 2); n += 4; b[n++] = '2'; b[n++] = '2';
		put32(b + extpos, n - extpos - 4);
	}
	put32(b, (1u << 24) | (n - 4));
	memcpy(b + n, "BODY", 4);
	n += 4;
	CHECK(decode_raw(b, n, &cmd, &err));
	CHECK_INT(cmd.code, -2);
	CHECK_STR(cmd.language, "GO");
	CHECK_INT(cmd.version, 479);
	CHECK_INT(cmd.opaque, -1);
	CHECK_INT(cmd.flag, 1);
	CHECK_STR(cmd.remark, "oops!");
	CHECK_INT(cmd.nfields, 2);
	CHECK_STR(rmq_cmd_field(&cmd, "a"), "1");
	CHECK_STR(rmq_cmd_field(&cmd, "bb"), "22");
	CHECK_STR(rmq_cmd_field(&cmd, "e"), NULL);
	CHECK_STR(rmq_cmd_field(&cmd, "n"), NULL);
	CHECK_STR(rmq_cmd_field(&cmd, "m"), NULL);
	CHECK_STR(rmq_cmd_field(&cmd, ""), NULL);
	CHECK_MEM(cmd.body, cmd.body_len, "BODY", 4);

	/* unknown language byte decodes as NULL */
	b[4 + 2] = 200;
	CHECK(decode_raw(b, n, &cmd, &err));
	CHECK(cmd.language == NULL);
	b[4 + 2] = 13;
	CHECK(decode_raw(b, n, &cmd, &err));
	CHECK_STR(cmd.language, "NODE_JS");
	b[4 + 2] = 14;
	CHECK(decode_raw(b, n, &cmd, &err));
	CHECK(cmd.language == NULL);

	/* Truncating the example header at any length (HLEN adjusted) fails. */
	bad = 0;
	for (uint32 hl = 0; hl < 41; hl++)
	{
		unsigned char t[64];

		put32(t, (1u << 24) | hl);
		memcpy(t + 4, bin_example + 8, hl);
		if (decode_raw(t, 4 + hl, &cmd, &err) || err == NULL)
		{
			bad++;
			printf("  binary header cut at %u accepted\n", hl);
		}
	}
	CHECK_INT(bad, 0);
}

TEST(test_frame_reject)
{
	RmqCommand	cmd;
	char	   *err;
	unsigned char b[64];
	uint32		len;

	/* header length > frame */
	memcpy(b, bin_example + 4, 45);
	put32(b, (1u << 24) | 46);
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	put32(b, (1u << 24) | 0xFFFFFF);
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	put32(b, 0x00FFFFFF);		/* JSON */
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	/* unknown serialize type */
	put32(b, (2u << 24) | 41);
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	put32(b, (0x81u << 24) | 41);
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	/* frame shorter than the type+hlen word */
	CHECK(!decode_raw(b, 0, &cmd, &err) && err);
	CHECK(!decode_raw(b, 3, &cmd, &err) && err);

	/* bad lengths inside the binary header */
#define RESET() do { memcpy(b, bin_example + 4, 45); } while (0)
	RESET();
	put32(b + 4 + 13, 100);		/* remark longer than header */
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 13, 0xFFFFFFFF);
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 13, 20);		/* remark eats the ext length */
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 13, 22);		/* leaves 2 bytes: too few for ext length */
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 17, 21);		/* extLen > header */
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 17, 0x80000000);
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	b[4 + 21] = 0;
	b[4 + 22] = 50;				/* key length > ext */
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	b[4 + 21] = 0xFF;
	b[4 + 22] = 0xFF;
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 28, 10);		/* value length > ext */
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 28, 0xFFFFFFFF);
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 17, 19);		/* ext ends inside the value */
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 17, 6);		/* ext ends before the value length */
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 17, 1);		/* ext ends inside the key length */
	CHECK(!decode_raw(b, 45, &cmd, &err) && err);
	RESET();
	put32(b + 4 + 17, 0);		/* empty ext: fine, rest is body */
	CHECK(decode_raw(b, 45, &cmd, &err));
	CHECK_INT(cmd.nfields, 0);
#undef RESET

	/* JSON header problems */
	{
		const char *bad[] = {"[1]", "{}", "{\"code\":\"abc\"}", "{\"code\":2147483648}",
			"{\"code\":-2147483649}", "{\"code\":1", "{\"code\":1}x", "\"s\"", ""};

		for (int i = 0; i < (int) lengthof(bad); i++)
		{
			size_t		hl = strlen(bad[i]);
			char	   *buf = palloc(4 + hl);

			put32((unsigned char *) buf, hl);
			memcpy(buf + 4, bad[i], hl);
			CHECK_MSG(!decode_raw(buf, 4 + hl, &cmd, &err) && err, "%s", bad[i]);
		}
	}

	/* rmq_frame_length range */
	put32(b, 0);
	CHECK(!rmq_frame_length(b, &len, &err));
	put32(b, 3);
	CHECK(!rmq_frame_length(b, &len, &err));
	put32(b, 4);
	CHECK(rmq_frame_length(b, &len, &err) && len == 4);
	put32(b, 16777212);
	CHECK(rmq_frame_length(b, &len, &err) && len == 16777212);
	put32(b, 16777213);
	CHECK(!rmq_frame_length(b, &len, &err));
	put32(b, 16777216);
	CHECK(!rmq_frame_length(b, &len, &err));
	put32(b, 0x80000000);
	CHECK(!rmq_frame_length(b, &len, &err));
	put32(b, 0xFFFFFFFF);
	CHECK(!rmq_frame_length(b, &len, &err));
	/* a TLS ClientHello's first bytes */
	b[0] = 0x16;
	b[1] = 0x03;
	b[2] = 0x01;
	b[3] = 0x02;
	CHECK(!rmq_frame_length(b, &len, &err) && err);
}


TEST(test_msg_v1_ipv4)
{
	MsgSpec		spec;
	StringInfoData s;
	RmqMessage *msgs;
	int			n;
	char	   *err;
	int			size;

	default_spec(&spec);
	initStringInfo(&s);
	size = build_msg(&s, &spec);
	CHECK_INT(size, 91 + 14 + 9 + (int) sizeof(std_props) - 1);
	CHECK(decode_buf(s.data, s.len, true, &msgs, &n, &err));
	CHECK_INT(n, 1);
	if (n != 1)
		return;
	CHECK_INT(msgs[0].queue_id, 3);
	CHECK_INT(msgs[0].flag, 0x12345678);
	CHECK_INT(msgs[0].queue_offset, 42);
	CHECK_INT(msgs[0].physical_offset, 0x1234);
	CHECK_INT(msgs[0].sysflag, 0);
	CHECK_INT(msgs[0].born_timestamp, INT64CONST(1700000000123));
	CHECK_STR(msgs[0].born_host, "127.0.0.1:1234");
	CHECK_INT(msgs[0].store_timestamp, INT64CONST(1700000000456));
	CHECK_STR(msgs[0].store_host, "127.0.0.1:10911");
	CHECK_INT(msgs[0].reconsume_times, 2);
	CHECK_INT(msgs[0].prepared_tx_offset, 0);
	CHECK_STR(msgs[0].topic, "TopicTest");
	CHECK_MEM(msgs[0].body, msgs[0].body_len, "Hello RocketMQ", 14);
	CHECK_STR(msgs[0].msg_id, "7F00000100002A9F0000000000001234");
	CHECK_INT(strlen(msgs[0].msg_id), 32);
	CHECK_INT(msgs[0].nprops, 4);
	CHECK_STR(rmq_msg_prop(&msgs[0], "TAGS"), "TagA");
	CHECK_STR(rmq_msg_prop(&msgs[0], "KEYS"), "k1 k2");
	CHECK_STR(rmq_msg_prop(&msgs[0], "UNIQ_KEY"), "7F0000010001B4AAC2E5000000000000");
	CHECK_STR(rmq_msg_prop(&msgs[0], "WAIT"), "true");
	CHECK_STR(rmq_msg_prop(&msgs[0], "NOPE"), NULL);

	/* large values in every field, no properties, empty body */
	default_spec(&spec);
	spec.queue_id = -1;
	spec.flag = PG_INT32_MIN;
	spec.queue_offset = PG_INT64_MAX;
	spec.phys_offset = INT64CONST(0x0102030405060708);
	spec.born_ts = -1;
	spec.born_ip[0] = 10;
	spec.born_ip[3] = 255;
	spec.born_port = 65535;
	spec.store_ip[0] = 192;
	spec.store_ip[1] = 168;
	spec.store_ip[2] = 1;
	spec.store_ip[3] = 200;
	spec.store_port = 1;
	spec.prepared = INT64CONST(0x7000000000000001);
	spec.sysflag = 0x8 | 0x2;	/* commit + multi tags: not compressed */
	spec.body = "";
	spec.body_len = 0;
	spec.props_len = 0;
	resetStringInfo(&s);
	CHECK_INT(build_msg(&s, &spec), 91 + 9);
	CHECK(decode_buf(s.data, s.len, true, &msgs, &n, &err));
	CHECK_INT(n, 1);
	if (n != 1)
		return;
	CHECK_INT(msgs[0].queue_id, -1);
	CHECK_INT(msgs[0].flag, PG_INT32_MIN);
	CHECK_INT(msgs[0].queue_offset, PG_INT64_MAX);
	CHECK_INT(msgs[0].born_timestamp, -1);
	CHECK_STR(msgs[0].born_host, "10.0.0.255:65535");
	CHECK_STR(msgs[0].store_host, "192.168.1.200:1");
	CHECK_STR(msgs[0].msg_id, "C0A801C8000000010102030405060708");
	CHECK_INT(msgs[0].prepared_tx_offset, INT64CONST(0x7000000000000001));
	CHECK_INT(msgs[0].sysflag, 0xA);
	CHECK_INT(msgs[0].body_len, 0);
	CHECK_INT(msgs[0].nprops, 0);
}

TEST(test_msg_v2_ipv6)
{
	MsgSpec		spec;
	StringInfoData s;
	RmqMessage *msgs;
	int			n;
	char	   *err;
	char		longtopic[301];
	static const unsigned char v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42};

	memset(longtopic, 'T', 300);
	longtopic[300] = '\0';

	default_spec(&spec);
	spec.v2 = true;
	spec.topic = longtopic;
	spec.sysflag = RMQ_SYSFLAG_BORNHOST_V6 | RMQ_SYSFLAG_STOREHOST_V6;
	memset(spec.born_ip, 0, 16);
	spec.born_ip[15] = 1;		/* ::1 */
	memcpy(spec.store_ip, v6, 16);
	initStringInfo(&s);
	CHECK_INT(build_msg(&s, &spec), 91 + 1 + 24 + 14 + 300 + (int) sizeof(std_props) - 1);
	CHECK(decode_buf(s.data, s.len, true, &msgs, &n, &err));
	CHECK_INT(n, 1);
	if (n != 1)
		return;
	CHECK_STR(msgs[0].born_host, "[::1]:1234");
	CHECK_STR(msgs[0].store_host, "[2001:db8::42]:10911");
	CHECK_STR(msgs[0].topic, longtopic);
	CHECK_INT(strlen(msgs[0].msg_id), 56);
	CHECK_STR(msgs[0].msg_id, "20010DB8000000000000000000000042" "00002A9F" "0000000000001234");
	CHECK_STR(rmq_msg_prop(&msgs[0], "TAGS"), "TagA");
	CHECK_INT(msgs[0].store_timestamp, INT64CONST(1700000000456));
	CHECK_INT(msgs[0].reconsume_times, 2);

	/* mixed: v6 born host only, then v6 store host only */
	default_spec(&spec);
	spec.sysflag = RMQ_SYSFLAG_BORNHOST_V6;
	memset(spec.born_ip, 0, 16);
	spec.born_ip[15] = 1;
	resetStringInfo(&s);
	build_msg(&s, &spec);
	default_spec(&spec);
	spec.sysflag = RMQ_SYSFLAG_STOREHOST_V6;
	memset(spec.store_ip, 0, 16);
	spec.store_ip[15] = 1;
	spec.v2 = true;
	spec.queue_offset = 43;
	build_msg(&s, &spec);
	CHECK(decode_buf(s.data, s.len, true, &msgs, &n, &err));
	CHECK_INT(n, 2);
	if (n != 2)
		return;
	CHECK_STR(msgs[0].born_host, "[::1]:1234");
	CHECK_STR(msgs[0].store_host, "127.0.0.1:10911");
	CHECK_STR(msgs[0].msg_id, "7F00000100002A9F0000000000001234");
	CHECK_INT(msgs[0].store_timestamp, INT64CONST(1700000000456));
	CHECK_STR(msgs[1].born_host, "127.0.0.1:1234");
	CHECK_STR(msgs[1].store_host, "[::1]:10911");
	CHECK_STR(msgs[1].msg_id, "0000000000000000000000000000000100002A9F0000000000001234");
	CHECK_INT(msgs[1].queue_offset, 43);
	CHECK_STR(msgs[1].topic, "TopicTest");
}

TEST(test_msg_batch_and_append)
{
	MsgSpec		spec;
	StringInfoData s;
	RmqMessage *msgs = NULL;
	int			n = 0;
	char	   *err = NULL;

	initStringInfo(&s);
	for (int i = 0; i < 50; i++)
	{
		default_spec(&spec);
		spec.v2 = (i % 3 == 0);
		spec.queue_offset = 100 + i;
		spec.body = psprintf("body-%d", i);
		spec.body_len = strlen(spec.body);
		build_msg(&s, &spec);
	}
	CHECK(rmq_decode_messages(s.data, s.len, RMQ_DECODE_CHECK_CRC, &msgs, &n, &err));
	CHECK_INT(n, 50);
	/* decoding again appends */
	CHECK(rmq_decode_messages(s.data, s.len, RMQ_DECODE_CHECK_CRC, &msgs, &n, &err));
	CHECK_INT(n, 100);
	for (int i = 0; i < n; i++)
	{
		char	   *want = psprintf("body-%d", i % 50);

		CHECK_MEM(msgs[i].body, msgs[i].body_len, want, strlen(want));
		CHECK_INT(msgs[i].queue_offset, 100 + i % 50);
	}
	/* empty buffer: nothing, success */
	n = 0;
	msgs = NULL;
	CHECK(rmq_decode_messages(s.data, 0, RMQ_DECODE_CHECK_CRC, &msgs, &n, &err));
	CHECK_INT(n, 0);
}

TEST(test_msg_props_rules)
{
	int			n;
	char	  **k,
			  **v;
	const char *p;

#define PARSE(lit) rmq_props_parse(exact_copy(lit, sizeof(lit) - 1), sizeof(lit) - 1, &n, &k, &v, NULL)
	/* empty value dropped, empty key dropped */
	PARSE("A\001\002B\001b\002\001x\002");
	CHECK_INT(n, 1);
	CHECK_STR(k[0], "B");
	CHECK_STR(v[0], "b");
	/* later duplicate wins, keeps first position */
	PARSE("TAGS\001x\002K\001k\002TAGS\001y\002");
	CHECK_INT(n, 2);
	CHECK_STR(k[0], "TAGS");
	CHECK_STR(v[0], "y");
	CHECK_STR(k[1], "K");
	/* no trailing separator */
	PARSE("a\001b\002c\001d");
	CHECK_INT(n, 2);
	CHECK_STR(v[1], "d");
	/* trailing separators, junk segments, missing 0x01 */
	PARSE("\002\002ab\002a\001b\002\002\002");
	CHECK_INT(n, 1);
	CHECK_STR(k[0], "a");
	CHECK_STR(v[0], "b");
	/* value containing 0x01 keeps it (key is up to the first 0x01) */
	PARSE("k\001v\001w\002");
	CHECK_INT(n, 1);
	CHECK_STR(v[0], "v\001w");
	/* interleaved duplicates: first place kept, last value wins */
	PARSE("a\0011\002b\0012\002a\0013\002c\0014\002b\0015\002a\0016\002");
	CHECK_INT(n, 3);
	if (n == 3)
	{
		CHECK_STR(k[0], "a");
		CHECK_STR(v[0], "6");
		CHECK_STR(k[1], "b");
		CHECK_STR(v[1], "5");
		CHECK_STR(k[2], "c");
		CHECK_STR(v[2], "4");
	}
	/* a full 32 KiB property string of distinct keys, then duplicates of them */
	{
		StringInfoData ps;
		int			nkeys = 0;
		bool		order_ok = true;

		initStringInfo(&ps);
		/* printable ASCII only: other bytes are not UTF-8 by themselves */
		for (int a = 0x21; a < 0x7F && ps.len < 32000; a++)
			for (int b = 0x21; b < 0x7F && ps.len < 32000; b++)
			{
				appendStringInfoChar(&ps, (char) a);
				appendStringInfoChar(&ps, (char) b);
				appendStringInfoString(&ps, "\001v\002");
				nkeys++;
			}
		for (int j = 0; j < 20; j++)
		{
			appendStringInfoChar(&ps, 0x21);
			appendStringInfoChar(&ps, (char) (0x21 + j));
			appendStringInfo(&ps, "\001w%d\002", j);
		}
		rmq_props_parse(ps.data, ps.len, &n, &k, &v, NULL);
		CHECK_INT(n, nkeys);
		for (int j = 0; j < n && j < 0x7F - 0x21; j++)
			if ((unsigned char) k[j][0] != 0x21 || (unsigned char) k[j][1] != 0x21 + j)
				order_ok = false;
		CHECK(order_ok);
		CHECK_STR(v[0], "w0");
		CHECK_STR(v[19], "w19");
		CHECK_STR(v[20], "v");
	}
	/* NUL reads as U+FFFD, wherever it is: nothing is cut short or lost */
	{
		bool		lossy = false;
		static const char in[] = "a\001\000\002b\001x\000y\002\000c\001z\002d\001w\002";

		rmq_props_parse(exact_copy(in, sizeof(in) - 1), sizeof(in) - 1, &n, &k, &v, &lossy);
		CHECK(lossy);
		CHECK_INT(n, 4);
		if (n == 4)
		{
			CHECK_STR(k[0], "a");
			CHECK_STR(v[0], "\xEF\xBF\xBD");
			CHECK_STR(v[1], "x\xEF\xBF\xBDy");
			CHECK_STR(k[2], "\xEF\xBF\xBD" "c");
			CHECK_STR(v[2], "z");
			CHECK_STR(k[3], "d");
		}
		lossy = false;
		PARSE("a\001b\002");
		rmq_props_parse(exact_copy("a\001b\002", 4), 4, &n, &k, &v, &lossy);
		CHECK(!lossy);
	}
	/* a lone key with 0x01 and nothing after */
	PARSE("k\001");
	CHECK_INT(n, 0);
	PARSE("");
	CHECK_INT(n, 0);
	/* many distinct keys (array growth) */
	{
		StringInfoData s;

		initStringInfo(&s);
		for (int i = 0; i < 100; i++)
			rmq_props_append(&s, psprintf("key%d", i), psprintf("val%d", i));
		rmq_props_parse(s.data, s.len, &n, &k, &v, NULL);
		CHECK_INT(n, 100);
		CHECK_STR(k[99], "key99");
		CHECK_STR(v[57], "val57");
	}
#undef PARSE
	/* props inside a record follow the same rules */
	{
		MsgSpec		spec;
		StringInfoData s;
		RmqMessage *msgs;
		char	   *err;
		static const char pr[] = "TAGS\001a\002EMPTY\001\002TAGS\001b\002LAST\001z";

		default_spec(&spec);
		spec.props = pr;
		spec.props_len = sizeof(pr) - 1;
		initStringInfo(&s);
		build_msg(&s, &spec);
		CHECK(decode_buf(s.data, s.len, true, &msgs, &n, &err));
		if (n == 1)
		{
			CHECK_INT(msgs[0].nprops, 2);
			p = rmq_msg_prop(&msgs[0], "TAGS");
			CHECK_STR(p, "b");
			CHECK_STR(rmq_msg_prop(&msgs[0], "EMPTY"), NULL);
			CHECK_STR(rmq_msg_prop(&msgs[0], "LAST"), "z");
		}
	}
}

static void model_props(const char *buf, int len, char **mk, char **mv, int *mn);

/* Random property strings against a naive model of Java's rules. */
TEST(test_props_random)
{
	uint32		seed = 12345;
	int			bad = 0;

	for (int iter = 0; iter < 2000; iter++)
	{
		char		buf[400];
		int			len = 0;
		int			target;
		int			n;
		char	  **k,
				  **v;
		/* model */
		char	   *mk[200],
				   *mv[200];
		int			mn = 0;

		seed = seed * 1103515245 + 12345;
		target = (seed >> 16) % 390;
		while (len < target)
		{
			seed = seed * 1103515245 + 12345;
			/* small alphabet so keys repeat: a b c \1 \2, rarely \0 */
			switch ((seed >> 16) % 11)
			{
				case 0: case 1: case 2: buf[len++] = 'a'; break;
				case 3: case 4: buf[len++] = 'b'; break;
				case 5: buf[len++] = 'c'; break;
				case 6: case 7: buf[len++] = 1; break;
				case 8: case 9: buf[len++] = 2; break;
				default: buf[len++] = ((seed >> 20) % 8) ? 'd' : 0; break;
			}
		}
		/* naive model of string2messageProperties after NUL -> U+FFFD */
		{
			char		u[1200];
			int			ulen = 0;

			for (int i = 0; i < len; i++)
			{
				if (buf[i] == 0)
				{
					memcpy(u + ulen, "\xEF\xBF\xBD", 3);
					ulen += 3;
				}
				else
					u[ulen++] = buf[i];
			}
			model_props(u, ulen, mk, mv, &mn);
		}
		rmq_props_parse(exact_copy(buf, len), len, &n, &k, &v, NULL);
		if (n != mn)
			bad++;
		else
			for (int j = 0; j < n; j++)
				if (strcmp(k[j], mk[j]) != 0 || strcmp(v[j], mv[j]) != 0)
				{
					bad++;
					break;
				}
	}
	CHECK_INT(bad, 0);
}

/* string2messageProperties, naively: split on 0x02, key up to the first 0x01. */
static void
model_props(const char *buf, int len, char **mk, char **mv, int *mn)
{
	*mn = 0;
	for (int i = 0; i < len;)
	{
		int			e = i;
		int			sep = -1;

		while (e < len && buf[e] != 2)
			e++;
		for (int j = i; j < e; j++)
			if (buf[j] == 1 && sep < 0)
				sep = j;
		if (e - i >= 3 && sep > i && sep < e - 1)
		{
			char	   *kk = pnstrdup(buf + i, sep - i);
			char	   *vv = pnstrdup(buf + sep + 1, e - sep - 1);
			int			j;

			for (j = 0; j < *mn; j++)
				if (strcmp(mk[j], kk) == 0)
					break;
			if (j < *mn)
				mv[j] = vv;
			else
			{
				mk[*mn] = kk;
				mv[(*mn)++] = vv;
			}
		}
		i = e + 1;
	}
}

TEST(test_props_roundtrip)
{
	StringInfoData s;
	int			n;
	char	  **k,
			  **v;

	initStringInfo(&s);
	rmq_props_append(&s, "TAGS", "TagA");
	rmq_props_append(&s, "KEYS", "k1 k2");
	rmq_props_append(&s, "EMPTY", "");
	rmq_props_append(&s, "NULLV", NULL);
	rmq_props_append(&s, "", "noval");
	rmq_props_append(&s, NULL, "x");
	rmq_props_append(&s, "UTF8", "\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80");
	rmq_props_append(&s, "UNIQ_KEY", "7F000001");
	CHECK_MEM(s.data, s.len,
			  "TAGS\001TagA\002KEYS\001k1 k2\002UTF8\001\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80\002"
			  "UNIQ_KEY\0017F000001\002",
			  sizeof("TAGS\001TagA\002KEYS\001k1 k2\002UTF8\001\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80\002"
					 "UNIQ_KEY\0017F000001\002") - 1);
	rmq_props_parse(s.data, s.len, &n, &k, &v, NULL);
	CHECK_INT(n, 4);
	if (n == 4)
	{
		CHECK_STR(k[0], "TAGS");
		CHECK_STR(v[0], "TagA");
		CHECK_STR(k[1], "KEYS");
		CHECK_STR(v[1], "k1 k2");
		CHECK_STR(k[2], "UTF8");
		CHECK_STR(v[2], "\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80");
		CHECK_STR(k[3], "UNIQ_KEY");
		CHECK_STR(v[3], "7F000001");
	}
}

static char *
make_body(size_t len)
{
	char	   *b = palloc(len);

	for (size_t i = 0; i < len; i++)
		b[i] = "abcdefghij"[i % 10] + (i / 997) % 7;
	return b;
}

static void
check_compressed(const char *what, int32 sysflag, const char *comp, size_t clen,
				 const char *orig, size_t olen)
{
	MsgSpec		spec;
	StringInfoData s;
	RmqMessage *msgs;
	int			n;
	char	   *err;

	cur_test = what;
	default_spec(&spec);
	spec.sysflag = sysflag;
	spec.body = comp;
	spec.body_len = clen;
	initStringInfo(&s);
	build_msg(&s, &spec);
	/* followed by an uncompressed one, to check record boundaries */
	default_spec(&spec);
	build_msg(&s, &spec);
	CHECK_MSG(decode_buf(s.data, s.len, true, &msgs, &n, &err), "%s", err ? err : "");
	CHECK_INT(n, 2);
	if (n == 2)
	{
		CHECK_MEM(msgs[0].body, msgs[0].body_len, orig, olen);
		CHECK_INT(msgs[0].sysflag, sysflag);
		CHECK_STR(rmq_msg_prop(&msgs[0], "TAGS"), "TagA");
		CHECK_MEM(msgs[1].body, msgs[1].body_len, "Hello RocketMQ", 14);
	}
	/* every truncation of the compressed stream fails cleanly */
	{
		int			bad = 0;
		size_t		step = clen > 2000 ? clen / 97 : 1;

		for (size_t cut = 0; cut < clen; cut += step)
		{
			char	   *c = exact_copy(comp, cut);
			char	   *out = NULL;
			size_t		outlen = 0;

			err = NULL;
			if (rmq_decompress(sysflag, c, cut, &out, &outlen, &err) || err == NULL)
			{
				bad++;
				printf("  %s: truncated stream (%zu of %zu) accepted\n", what, cut, clen);
			}
			free(c);
		}
		CHECK_INT(bad, 0);
	}
	/* corrupting a byte in the middle either fails or (rarely) yields data; never crashes */
	{
		char	   *c = exact_copy(comp, clen);
		char	   *out;
		size_t		outlen;

		for (size_t i = 0; i < clen; i += (clen / 31) + 1)
		{
			c[i] ^= 0x5A;
			err = NULL;
			if (!rmq_decompress(sysflag, c, clen, &out, &outlen, &err))
				CHECK(err != NULL);
			c[i] ^= 0x5A;
		}
		free(c);
	}
}

TEST(test_msg_compressed)
{
	size_t		olen = 100000;
	char	   *orig = make_body(olen);
	uLongf		zlen = compressBound(olen);
	char	   *z = palloc(zlen);
	size_t		l4cap = LZ4F_compressFrameBound(olen, NULL);
	char	   *l4 = palloc(l4cap);
	size_t		l4len;
	size_t		zscap = ZSTD_compressBound(olen);
	char	   *zs = palloc(zscap);
	size_t		zslen;
	const char *saved = cur_test;

	CHECK(compress2((Bytef *) z, &zlen, (const Bytef *) orig, olen, 5) == Z_OK);
	l4len = LZ4F_compressFrame(l4, l4cap, orig, olen, NULL);
	CHECK(!LZ4F_isError(l4len));
	zslen = ZSTD_compress(zs, zscap, orig, olen, 3);
	CHECK(!ZSTD_isError(zslen));

	check_compressed("zlib 0x301", 0x301, z, zlen, orig, olen);
	check_compressed("zlib legacy 0x1", 0x1, z, zlen, orig, olen);
	check_compressed("lz4 0x101", 0x101, l4, l4len, orig, olen);
	check_compressed("zstd 0x201", 0x201, zs, zslen, orig, olen);
	/* flags beside the compression bits do not matter */
	check_compressed("zlib 0x30B", 0x30B, z, zlen, orig, olen);
	cur_test = saved;

	/* LZ4 with 4 MiB blocks (lz4-java's default) and content checksum */
	{
		LZ4F_preferences_t prefs;
		size_t		big = 5 * 1024 * 1024 + 17;
		char	   *bo = make_body(big);
		size_t		cap;
		char	   *c;
		size_t		clen;
		char	   *out;
		size_t		outlen;
		char	   *err = NULL;

		memset(&prefs, 0, sizeof(prefs));
		prefs.frameInfo.blockSizeID = LZ4F_max4MB;
		prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
		prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
		cap = LZ4F_compressFrameBound(big, &prefs);
		c = palloc(cap);
		clen = LZ4F_compressFrame(c, cap, bo, big, &prefs);
		CHECK(!LZ4F_isError(clen));
		CHECK_MSG(rmq_decompress(0x101, c, clen, &out, &outlen, &err), "%s", err ? err : "");
		CHECK_MEM(out, outlen, bo, big);
		/* a content-checksum mismatch is detected */
		c[clen - 1] ^= 1;
		err = NULL;
		CHECK(!rmq_decompress(0x101, c, clen, &out, &outlen, &err) && err);

		/* zstd streaming frame without content size, with checksum */
		{
			ZSTD_CCtx  *cc = ZSTD_createCCtx();
			ZSTD_inBuffer ib = {bo, big, 0};
			ZSTD_outBuffer ob;
			size_t		zc = ZSTD_compressBound(big);

			ob.dst = palloc(zc);
			ob.size = zc;
			ob.pos = 0;
			ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
			ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
			while (ZSTD_compressStream2(cc, &ob, &ib, ZSTD_e_end) != 0)
				;
			ZSTD_freeCCtx(cc);
			err = NULL;
			CHECK_MSG(rmq_decompress(0x201, ob.dst, ob.pos, &out, &outlen, &err), "%s", err ? err : "");
			CHECK_MEM(out, outlen, bo, big);
			((char *) ob.dst)[ob.pos - 1] ^= 1;
			CHECK(!rmq_decompress(0x201, ob.dst, ob.pos, &out, &outlen, &err));
		}
		/* zlib of the same, via the codec's own compressor */
		{
			StringInfoData zz;

			initStringInfo(&zz);
			CHECK(rmq_compress_zlib(bo, big, &zz));
			err = NULL;
			CHECK_MSG(rmq_decompress(0x301, zz.data, zz.len, &out, &outlen, &err), "%s", err ? err : "");
			CHECK_MEM(out, outlen, bo, big);
			/* zlib stream check (adler32) mismatch detected */
			zz.data[zz.len - 1] ^= 1;
			CHECK(!rmq_decompress(0x301, zz.data, zz.len, &out, &outlen, &err));
		}
	}

	/* unknown compression type, garbage, empty input */
	{
		char	   *out;
		size_t		outlen;
		char	   *err = NULL;

		CHECK(!rmq_decompress(0x401, z, zlen, &out, &outlen, &err) && err);
		CHECK(!rmq_decompress(0x701, z, zlen, &out, &outlen, &err) && err);
		CHECK(!rmq_decompress(0x101, z, zlen, &out, &outlen, &err) && err);
		CHECK(!rmq_decompress(0x201, z, zlen, &out, &outlen, &err) && err);
		CHECK(!rmq_decompress(0x301, l4, l4len, &out, &outlen, &err) && err);
		CHECK(!rmq_decompress(0x301, "", 0, &out, &outlen, &err) && err);
		CHECK(!rmq_decompress(0x101, "", 0, &out, &outlen, &err) && err);
		CHECK(!rmq_decompress(0x201, "", 0, &out, &outlen, &err) && err);
		/* empty payloads compressed properly decode to empty */
		{
			char		e[64];
			uLongf		el = sizeof(e);

			CHECK(compress2((Bytef *) e, &el, (const Bytef *) "", 0, 5) == Z_OK);
			CHECK(rmq_decompress(0x301, e, el, &out, &outlen, &err) && outlen == 0);
			el = LZ4F_compressFrame(e, sizeof(e), "", 0, NULL);
			CHECK(rmq_decompress(0x101, e, el, &out, &outlen, &err) && outlen == 0);
			el = ZSTD_compress(e, sizeof(e), "", 0, 3);
			CHECK(rmq_decompress(0x201, e, el, &out, &outlen, &err) && outlen == 0);
		}
		/* a compressed record whose body is garbage is rejected */
		{
			MsgSpec		spec;
			StringInfoData s;
			RmqMessage *msgs;
			int			n;

			default_spec(&spec);
			spec.sysflag = 0x301;
			initStringInfo(&s);
			build_msg(&s, &spec);
			CHECK(!decode_buf(s.data, s.len, false, &msgs, &n, &err) && err);
		}
	}
}

/*
 * Streaming bombs: `total` zero bytes compressed without ever holding them.
 */
static char *
zlib_zeros(size_t total, size_t *clen)
{
	static char zeros[1 << 20];
	z_stream	zs;
	StringInfoData out;
	int			rc;

	memset(&zs, 0, sizeof(zs));
	deflateInit(&zs, 9);
	initStringInfo(&out);
	do
	{
		if (zs.avail_in == 0 && total > 0)
		{
			size_t		n = Min(total, sizeof(zeros));

			zs.next_in = (Bytef *) zeros;
			zs.avail_in = n;
			total -= n;
		}
		enlargeStringInfo(&out, 65536);
		zs.next_out = (Bytef *) out.data + out.len;
		zs.avail_out = 65536;
		rc = deflate(&zs, total == 0 ? Z_FINISH : Z_NO_FLUSH);
		out.len += 65536 - zs.avail_out;
	} while (rc != Z_STREAM_END);
	deflateEnd(&zs);
	*clen = out.len;
	return out.data;
}

static char *
lz4_zeros(size_t total, size_t *clen)
{
	static char zeros[1 << 20];
	LZ4F_cctx  *cc;
	LZ4F_preferences_t prefs;
	StringInfoData out;
	size_t		bound = LZ4F_compressBound(sizeof(zeros), NULL);

	memset(&prefs, 0, sizeof(prefs));
	LZ4F_createCompressionContext(&cc, LZ4F_VERSION);
	initStringInfo(&out);
	enlargeStringInfo(&out, bound + 64);
	out.len += LZ4F_compressBegin(cc, out.data, out.maxlen, &prefs);
	while (total > 0)
	{
		size_t		n = Min(total, sizeof(zeros));

		enlargeStringInfo(&out, bound + 64);
		out.len += LZ4F_compressUpdate(cc, out.data + out.len, out.maxlen - out.len - 1,
									   zeros, n, NULL);
		total -= n;
	}
	enlargeStringInfo(&out, bound + 64);
	out.len += LZ4F_compressEnd(cc, out.data + out.len, out.maxlen - out.len - 1, NULL);
	LZ4F_freeCompressionContext(cc);
	*clen = out.len;
	return out.data;
}

static char *
zstd_zeros(size_t total, size_t *clen)
{
	static char zeros[1 << 20];
	ZSTD_CCtx  *cc = ZSTD_createCCtx();
	StringInfoData out;

	initStringInfo(&out);
	while (total > 0)
	{
		size_t		n = Min(total, sizeof(zeros));
		ZSTD_inBuffer ib = {zeros, n, 0};
		ZSTD_EndDirective mode = (total == n) ? ZSTD_e_end : ZSTD_e_continue;
		size_t		rem;

		total -= n;
		do
		{
			ZSTD_outBuffer ob;

			enlargeStringInfo(&out, 65536);
			ob.dst = out.data + out.len;
			ob.size = 65536;
			ob.pos = 0;
			rem = ZSTD_compressStream2(cc, &ob, &ib, mode);
			out.len += ob.pos;
		} while (mode == ZSTD_e_end ? rem != 0 : ib.pos < ib.size);
	}
	ZSTD_freeCCtx(cc);
	*clen = out.len;
	return out.data;
}

typedef char *(*bomb_fn) (size_t total, size_t *clen);

TEST(test_msg_bomb)
{
	static const struct
	{
		const char *name;
		int32		sysflag;
		bomb_fn		fn;
	}			kinds[] = {
		{"zlib", 0x301, zlib_zeros},
		{"lz4", 0x101, lz4_zeros},
		{"zstd", 0x201, zstd_zeros},
	};

	for (int i = 0; i < (int) lengthof(kinds); i++)
	{
		size_t		clen;
		char	   *c;
		char	   *out = NULL;
		size_t		outlen = 0;
		char	   *err = NULL;
		bool		ok;

		/* 100 MiB: rejected */
		c = kinds[i].fn((size_t) 100 << 20, &clen);
		CHECK_MSG(clen < 4 * 1024 * 1024, "%s bomb is %zu bytes", kinds[i].name, clen);
		ok = rmq_decompress(kinds[i].sysflag, c, clen, &out, &outlen, &err);
		CHECK_MSG(!ok && err && strstr(err, "exceeds"), "%s 100MiB: ok=%d err=%s",
				  kinds[i].name, ok, err ? err : "(null)");
		pfree(c);

		/* one byte over the limit: rejected */
		err = NULL;
		c = kinds[i].fn((size_t) RMQ_MAX_BODY_LEN + 1, &clen);
		ok = rmq_decompress(kinds[i].sysflag, c, clen, &out, &outlen, &err);
		CHECK_MSG(!ok && err && strstr(err, "exceeds"), "%s limit+1: ok=%d err=%s",
				  kinds[i].name, ok, err ? err : "(null)");
		pfree(c);

		/* exactly the limit: accepted */
		err = NULL;
		c = kinds[i].fn((size_t) RMQ_MAX_BODY_LEN, &clen);
		ok = rmq_decompress(kinds[i].sysflag, c, clen, &out, &outlen, &err);
		CHECK_MSG(ok && outlen == RMQ_MAX_BODY_LEN, "%s exact limit: ok=%d outlen=%zu err=%s",
				  kinds[i].name, ok, outlen, err ? err : "(null)");
		if (ok)
		{
			CHECK(out[0] == 0 && out[outlen - 1] == 0 && out[outlen] == '\0');
			pfree(out);
		}

		/* inside a record */
		{
			MsgSpec		spec;
			StringInfoData s;
			RmqMessage *msgs;
			int			n;

			pfree(c);
			c = kinds[i].fn((size_t) 100 << 20, &clen);
			default_spec(&spec);
			spec.sysflag = kinds[i].sysflag;
			spec.body = c;
			spec.body_len = clen;
			initStringInfo(&s);
			build_msg(&s, &spec);
			err = NULL;
			CHECK_MSG(!decode_buf(s.data, s.len, true, &msgs, &n, &err) && err,
					  "%s bomb record accepted", kinds[i].name);
			pfree(s.data);
			pfree(c);
		}
	}
}

/* Bombs that each pass RMQ_MAX_BODY_LEN add up to more than one answer may hold. */
TEST(test_answer_budget)
{
	size_t		clen;
	char	   *c = zlib_zeros((size_t) RMQ_MAX_BODY_LEN, &clen);
	int			fit = (int) (RMQ_MAX_ANSWER_BODIES / RMQ_MAX_BODY_LEN);
	MsgSpec		spec;
	StringInfoData s;
	RmqMessage *msgs;
	int			n;
	char	   *err;

	default_spec(&spec);
	spec.sysflag = 0x301;
	spec.body = c;
	spec.body_len = clen;
	initStringInfo(&s);
	for (int i = 0; i < fit; i++)
		build_msg(&s, &spec);
	CHECK_MSG(decode_buf(s.data, s.len, false, &msgs, &n, &err) && n == fit,
			  "%d bombs at the limit: n=%d err=%s", fit, n, err ? err : "(null)");
	for (int i = 0; i < n; i++)
		pfree((char *) msgs[i].body);
	pfree(msgs);
	build_msg(&s, &spec);
	CHECK_MSG(!decode_buf(s.data, s.len, false, &msgs, &n, &err) && err && strstr(err, "one pull answer"),
			  "%d bombs: n=%d err=%s", fit + 1, n, err ? err : "(null)");
	pfree(s.data);
	pfree(c);
}

TEST(test_msg_crc)
{
	MsgSpec		spec;
	StringInfoData s;
	RmqMessage *msgs;
	int			n;
	char	   *err;

	CHECK_INT(rmq_crc32("123456789", 9), 0x4BF43926);
	CHECK_INT(rmq_crc32("", 0), 0);

	default_spec(&spec);
	spec.bad_crc = true;
	initStringInfo(&s);
	build_msg(&s, &spec);
	CHECK(!decode_buf(s.data, s.len, true, &msgs, &n, &err));
	CHECK(err && strstr(err, "CRC"));
	CHECK_INT(n, 0);
	CHECK(decode_buf(s.data, s.len, false, &msgs, &n, &err));
	CHECK_INT(n, 1);
	/* the stored CRC's top bit is ignored */
	default_spec(&spec);
	resetStringInfo(&s);
	build_msg(&s, &spec);
	s.data[8] |= 0x80;
	CHECK(decode_buf(s.data, s.len, true, &msgs, &n, &err));
	/* a bad CRC in the second record fails the whole body */
	resetStringInfo(&s);
	default_spec(&spec);
	build_msg(&s, &spec);
	spec.bad_crc = true;
	build_msg(&s, &spec);
	CHECK(!decode_buf(s.data, s.len, true, &msgs, &n, &err));
	CHECK_INT(n, 1);
	/* the CRC covers the stored (compressed) bytes */
	{
		StringInfoData z;

		initStringInfo(&z);
		rmq_compress_zlib("payload payload payload", 23, &z);
		default_spec(&spec);
		spec.sysflag = 0x301;
		spec.body = z.data;
		spec.body_len = z.len;
		resetStringInfo(&s);
		build_msg(&s, &spec);
		CHECK(decode_buf(s.data, s.len, true, &msgs, &n, &err));
		CHECK(n == 1 && msgs[0].body_len == 23);
	}
}

/*
 * KEEP_DAMAGED: a record that does not decode becomes a message with
 * `damage` and its raw bytes; its neighbours decode as usual.  Bad magic
 * still fails everything (alignment is gone).
 */
TEST(test_msg_keep_damaged)
{
	MsgSpec		spec;
	StringInfoData s;
	RmqMessage *msgs = NULL;
	int			n = 0;
	char	   *err = NULL;
	int			flags = RMQ_DECODE_CHECK_CRC | RMQ_DECODE_KEEP_DAMAGED;
	int			rec2_at,
				rec3_at;

	initStringInfo(&s);
	default_spec(&spec);
	spec.queue_offset = 7;
	spec.props = "TAGS\001good\002";
	spec.props_len = strlen(spec.props);
	build_msg(&s, &spec);
	rec2_at = s.len;
	/* claims zlib, is not */
	default_spec(&spec);
	spec.queue_offset = 8;
	spec.sysflag = 0x301;
	spec.body = "not zlib at all";
	spec.body_len = strlen(spec.body);
	spec.props = "TAGS\001bad\002KEYS\001k1\002";
	spec.props_len = strlen(spec.props);
	build_msg(&s, &spec);
	rec3_at = s.len;
	default_spec(&spec);
	spec.queue_offset = 9;
	spec.bad_crc = true;
	build_msg(&s, &spec);
	default_spec(&spec);
	spec.queue_offset = 10;
	build_msg(&s, &spec);

	/* without the flag: the whole answer fails */
	CHECK(!decode_buf(s.data, s.len, true, &msgs, &n, &err) && err);

	msgs = NULL;
	n = 0;
	err = NULL;
	CHECK_MSG(rmq_decode_messages(s.data, s.len, flags, &msgs, &n, &err), "%s", err ? err : "");
	CHECK_INT(n, 4);
	CHECK(msgs[0].damage == NULL && msgs[3].damage == NULL);
	CHECK_INT(msgs[0].queue_offset, 7);
	CHECK_INT(msgs[3].queue_offset, 10);
	/* the compressed one: offset, properties and id kept, raw record as body */
	CHECK(msgs[1].damage != NULL);
	CHECK_INT(msgs[1].queue_offset, 8);
	CHECK(rmq_msg_prop(&msgs[1], "TAGS") && strcmp(rmq_msg_prop(&msgs[1], "TAGS"), "bad") == 0);
	CHECK(rmq_msg_prop(&msgs[1], "KEYS") && strcmp(rmq_msg_prop(&msgs[1], "KEYS"), "k1") == 0);
	CHECK_INT(strlen(msgs[1].msg_id), 32);
	CHECK_MEM(msgs[1].body, msgs[1].body_len, s.data + rec2_at, rec3_at - rec2_at);
	/* the bad CRC one */
	CHECK(msgs[2].damage != NULL && strstr(msgs[2].damage, "CRC"));
	CHECK_INT(msgs[2].queue_offset, 9);
	/* without the CRC check the third is fine */
	msgs = NULL;
	n = 0;
	CHECK(rmq_decode_messages(s.data, s.len, RMQ_DECODE_KEEP_DAMAGED, &msgs, &n, &err));
	CHECK_INT(n, 4);
	CHECK(msgs[1].damage != NULL && msgs[2].damage == NULL);

	/* inner lengths that overrun their record: damaged, next record fine */
	{
		char	   *c = exact_copy(s.data, s.len);

		/* record 1's body length: 84 bytes in (IPv4 hosts) */
		put32((unsigned char *) c + 84, 0x00FFFFFF);
		msgs = NULL;
		n = 0;
		err = NULL;
		CHECK(rmq_decode_messages(c, s.len, flags, &msgs, &n, &err));
		CHECK_INT(n, 4);
		CHECK(msgs[0].damage && strstr(msgs[0].damage, "truncated"));
		CHECK_INT(msgs[0].queue_offset, 7);
		CHECK(msgs[3].damage == NULL);
		/* bad magic in record 2: the answer fails even with the flag */
		c = exact_copy(s.data, s.len);
		put32((unsigned char *) c + rec2_at + 4, 0x12345678);
		msgs = NULL;
		n = 0;
		err = NULL;
		CHECK(!rmq_decode_messages(c, s.len, flags, &msgs, &n, &err) && err && strstr(err, "magic"));
	}
}

TEST(test_msg_truncated)
{
	MsgSpec		spec;
	StringInfoData s;
	RmqMessage *msgs;
	int			n;
	char	   *err;
	static const unsigned char v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};

	for (int variant = 0; variant < 4; variant++)
	{
		int			size;
		int			bad = 0;

		default_spec(&spec);
		if (variant & 1)
		{
			spec.v2 = true;
			spec.sysflag = 0x30;
			memcpy(spec.born_ip, v6, 16);
			memcpy(spec.store_ip, v6, 16);
		}
		if (variant & 2)
		{
			spec.props_len = 0;
			spec.body_len = 0;
		}
		initStringInfo(&s);
		size = build_msg(&s, &spec);
		CHECK(decode_buf(s.data, s.len, true, &msgs, &n, &err));
		for (int cut = 0; cut < size; cut++)
		{
			/* buffer cut short, TOTALSIZE unchanged (0 bytes = no messages) */
			if (cut > 0 && (decode_buf(s.data, cut, false, &msgs, &n, &err) || err == NULL))
			{
				bad++;
				printf("  variant %d: cut buffer %d accepted\n", variant, cut);
			}
			/* TOTALSIZE itself says the record is shorter */
			if (cut >= 4)
			{
				char	   *c = exact_copy(s.data, cut);

				put32((unsigned char *) c, cut);
				if (decode_buf(c, cut, false, &msgs, &n, &err) || err == NULL)
				{
					bad++;
					printf("  variant %d: TOTALSIZE %d accepted\n", variant, cut);
				}
				free(c);
			}
		}
		CHECK_INT(bad, 0);

		/* TOTALSIZE larger than the buffer */
		put32((unsigned char *) s.data, size + 1);
		CHECK(!decode_buf(s.data, size, false, &msgs, &n, &err) && err);
		put32((unsigned char *) s.data, 0xFFFFFFFF);
		CHECK(!decode_buf(s.data, size, false, &msgs, &n, &err) && err);
		put32((unsigned char *) s.data, 0x80000000);
		CHECK(!decode_buf(s.data, size, false, &msgs, &n, &err) && err);
		put32((unsigned char *) s.data, 0);
		CHECK(!decode_buf(s.data, size, false, &msgs, &n, &err) && err);
		put32((unsigned char *) s.data, 90);
		CHECK(!decode_buf(s.data, size, false, &msgs, &n, &err) && err);
		put32((unsigned char *) s.data, size);
	}

	/* inner lengths pointing past the record */
	default_spec(&spec);
	spec.props_len = 0;
	spec.body_len = 0;
	spec.topic = "T";
	initStringInfo(&s);
	build_msg(&s, &spec);		/* V1, IPv4: body len at 84, topic len at 88 */
	{
		char	   *c = exact_copy(s.data, s.len);

		put32((unsigned char *) c + 84, 0xFFFFFFFF);
		CHECK(!decode_buf(c, s.len, false, &msgs, &n, &err) && err);
		put32((unsigned char *) c + 84, 4);
		CHECK(!decode_buf(c, s.len, false, &msgs, &n, &err) && err);
		put32((unsigned char *) c + 84, 0);
		c[88] = (char) 0xFF;
		CHECK(!decode_buf(c, s.len, false, &msgs, &n, &err) && err);
		c[88] = 1;
		c[90] = (char) 0x80;	/* negative PROPLEN */
		CHECK(!decode_buf(c, s.len, false, &msgs, &n, &err) && err);
		c[90] = 0;
		c[91] = 1;
		CHECK(!decode_buf(c, s.len, false, &msgs, &n, &err) && err);
		c[91] = 0;
		CHECK(decode_buf(c, s.len, false, &msgs, &n, &err));
		/* sysflag claiming IPv6 hosts in a record that has IPv4 ones */
		put32((unsigned char *) c + 36, 0x30);
		CHECK(!decode_buf(c, s.len, false, &msgs, &n, &err) && err);
		put32((unsigned char *) c + 36, 0);
		/* bad and blank magic */
		put32((unsigned char *) c + 4, 0xCBD43194);
		CHECK(!decode_buf(c, s.len, false, &msgs, &n, &err) && err);
		put32((unsigned char *) c + 4, 0);
		CHECK(!decode_buf(c, s.len, false, &msgs, &n, &err) && err);
		free(c);
	}
	/* trailing 1..3 bytes after a good record */
	for (int extra = 1; extra <= 3; extra++)
	{
		appendStringInfoChar(&s, 0);
		CHECK(!decode_buf(s.data, s.len, false, &msgs, &n, &err) && err);
	}
}

/* ------------------------------------------------------------------ */
/* proto helpers                                                       */
/* ------------------------------------------------------------------ */
TEST(test_split_addr)
{
	char		h[64];
	int			p = 0;

	CHECK(rmq_split_addr("127.0.0.1:10911", h, sizeof(h), &p));
	CHECK_STR(h, "127.0.0.1");
	CHECK_INT(p, 10911);
	CHECK(rmq_split_addr("[::1]:10911", h, sizeof(h), &p));
	CHECK_STR(h, "::1");
	CHECK_INT(p, 10911);
	CHECK(rmq_split_addr("::1:10911", h, sizeof(h), &p));
	CHECK_STR(h, "::1");
	CHECK_INT(p, 10911);
	CHECK(rmq_split_addr("[2001:db8::1]:9876", h, sizeof(h), &p));
	CHECK_STR(h, "2001:db8::1");
	CHECK_INT(p, 9876);
	CHECK(rmq_split_addr("broker-a.local:1", h, sizeof(h), &p));
	CHECK_STR(h, "broker-a.local");
	CHECK_INT(p, 1);
	CHECK(rmq_split_addr("h:65535", h, sizeof(h), &p));
	CHECK_INT(p, 65535);
	CHECK(rmq_split_addr(" 10.0.0.1:9876 ", h, sizeof(h), &p));
	CHECK_STR(h, "10.0.0.1");
	CHECK_INT(p, 9876);

	CHECK(!rmq_split_addr("127.0.0.1", h, sizeof(h), &p));
	CHECK(!rmq_split_addr("127.0.0.1:", h, sizeof(h), &p));
	CHECK(!rmq_split_addr(":10911", h, sizeof(h), &p));
	CHECK(!rmq_split_addr("h:0", h, sizeof(h), &p));
	CHECK(!rmq_split_addr("h:65536", h, sizeof(h), &p));
	CHECK(!rmq_split_addr("h:-1", h, sizeof(h), &p));
	CHECK(!rmq_split_addr("h:12ab", h, sizeof(h), &p));
	CHECK(!rmq_split_addr("h:99999999999999999999999", h, sizeof(h), &p));
	CHECK(!rmq_split_addr("[]:80", h, sizeof(h), &p));
	CHECK(!rmq_split_addr("", h, sizeof(h), &p));
	CHECK(!rmq_split_addr("a-host-name-that-is-too-long:80", h, 8, &p));
	CHECK(rmq_split_addr("1234567:80", h, 8, &p));
	CHECK(!rmq_split_addr("12345678:80", h, 8, &p));
}

TEST(test_java_hash)
{
	CHECK_INT(rmq_java_hash("TagA"), 2598919);
	CHECK_INT(rmq_java_hash(""), 0);
	CHECK_INT(rmq_java_hash("a"), 97);
	CHECK_INT(rmq_java_hash("\xC3\xA9"), 233);	/* é */
	CHECK_INT(rmq_java_hash("h\xC3\xA9llo w\xC3\xB6rld"), 1628148953);
	CHECK_INT(rmq_java_hash("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x82\xBF\xE3\x82\xB0"), -858417240);
	CHECK_INT(rmq_java_hash("\xF0\x9F\x98\x80"), 1772899);	/* U+1F600 */
	CHECK_INT(rmq_java_hash("a\xF0\x9F\x98\x80" "b"), 57849694);
	CHECK_INT(rmq_java_hash("abcdefghijklmnopqrstuvwxyz"), 958031277);
	CHECK_INT(rmq_java_hash("TagB||TagC"), -1617987183);
	CHECK_INT(rmq_java_hash("\xEF\xBF\xBD"), 65533);
	/* malformed UTF-8 must not read past the terminator */
	{
		char	   *s = exact_copy("\xF0\x9F\0", 3);

		(void) rmq_java_hash(s);
		free(s);
		s = exact_copy("\xE6\0", 2);
		(void) rmq_java_hash(s);
		free(s);
		s = exact_copy("\xC3\0", 2);
		CHECK_INT(rmq_java_hash(s), 65533);
		free(s);
	}
}

TEST(test_route)
{
	RmqRoute	r;
	char	   *err = NULL;

	for (int form = 0; form < 2; form++)
	{
		const char *j = form ? route_nonstd : route_std;

		CHECK(rmq_parse_route(j, strlen(j), &r, &err));
		CHECK_INT(r.nbrokers, 1);
		CHECK_INT(r.nqueues, 1);
		if (r.nbrokers != 1 || r.nqueues != 1)
			continue;
		CHECK_STR(r.brokers[0].name, "broker-a");
		CHECK_STR(r.brokers[0].cluster, "DefaultCluster");
		CHECK_STR(r.brokers[0].master_addr, "127.0.0.1:10911");
		CHECK_STR(r.queues[0].broker_name, "broker-a");
		CHECK_INT(r.queues[0].perm, 6);
		CHECK(r.queues[0].perm & RMQ_PERM_READ);
		CHECK(r.queues[0].perm & RMQ_PERM_WRITE);
		CHECK_INT(r.queues[0].read_queue_nums, 4);
		CHECK_INT(r.queues[0].write_queue_nums, form ? 4 : 8);
		CHECK_STR(rmq_route_broker_addr(&r, "broker-a"), "127.0.0.1:10911");
		CHECK_STR(rmq_route_broker_addr(&r, "broker-b"), NULL);
	}

	/* 4.x form, two brokers, one without a master, a junk entry */
	{
		const char *j = "{\"brokerDatas\":[{\"brokerAddrs\":{1:\"10.0.0.2:10911\"},\"brokerName\":\"b\","
		"\"cluster\":\"C\"},42,{\"brokerAddrs\":{0:\"10.0.0.1:10911\"},\"brokerName\":\"a\",\"cluster\":\"C\"},"
		"{\"cluster\":\"noname\"}],\"filterServerTable\":{},\"queueDatas\":[{\"brokerName\":\"a\",\"perm\":4,"
		"\"readQueueNums\":2,\"topicSynFlag\":0,\"writeQueueNums\":0},{\"perm\":6},"
		"{\"brokerName\":\"b\",\"perm\":6,\"readQueueNums\":0,\"writeQueueNums\":3}]}";

		CHECK(rmq_parse_route(j, strlen(j), &r, &err));
		CHECK_INT(r.nbrokers, 2);
		CHECK_INT(r.nqueues, 2);
		if (r.nbrokers == 2 && r.nqueues == 2)
		{
			CHECK_STR(r.brokers[0].name, "b");
			CHECK(r.brokers[0].master_addr == NULL);
			CHECK_STR(r.brokers[1].name, "a");
			CHECK_STR(rmq_route_broker_addr(&r, "a"), "10.0.0.1:10911");
			CHECK_STR(rmq_route_broker_addr(&r, "b"), NULL);
			CHECK_INT(r.queues[0].perm, 4);
			CHECK_INT(r.queues[0].read_queue_nums, 2);
			CHECK_INT(r.queues[0].write_queue_nums, 0);
			CHECK_STR(r.queues[1].broker_name, "b");
			CHECK_INT(r.queues[1].read_queue_nums, 0);
			CHECK_INT(r.queues[1].write_queue_nums, 3);
		}
	}
	/* empty arrays */
	{
		const char *j = "{\"brokerDatas\":[],\"queueDatas\":[]}";

		CHECK(rmq_parse_route(j, strlen(j), &r, &err));
		CHECK_INT(r.nbrokers, 0);
		CHECK_INT(r.nqueues, 0);
		CHECK_STR(rmq_route_broker_addr(&r, "a"), NULL);
	}
	/* failures */
	{
		const char *bad[] = {"", "null", "[]", "{}", "{\"brokerDatas\":[]}",
			"{\"queueDatas\":[]}", "{\"brokerDatas\":{},\"queueDatas\":[]}",
		"{\"brokerDatas\":[],\"queueDatas\":[]", "{\"brokerDatas\":[],\"queueDatas\":[]}x"};

		for (int i = 0; i < (int) lengthof(bad); i++)
		{
			err = NULL;
			CHECK_MSG(!rmq_parse_route(bad[i], strlen(bad[i]), &r, &err) && err, "%s", bad[i]);
		}
	}
}

TEST(test_cluster_info)
{
	RmqRoute	r;
	char	   *err = NULL;

	CHECK(rmq_parse_cluster_info(cluster_info, strlen(cluster_info), &r, &err));
	CHECK_INT(r.nbrokers, 1);
	CHECK_INT(r.nqueues, 0);
	if (r.nbrokers == 1)
	{
		CHECK_STR(r.brokers[0].name, "broker-a");
		CHECK_STR(r.brokers[0].cluster, "DefaultCluster");
		CHECK_STR(r.brokers[0].master_addr, "127.0.0.1:10911");
		CHECK_STR(rmq_route_broker_addr(&r, "broker-a"), "127.0.0.1:10911");
	}
	{
		const char *j = "{\"brokerAddrTable\":{\"a\":{\"brokerAddrs\":{\"0\":\"[::1]:10911\"},\"brokerName\":\"a\","
		"\"cluster\":\"C\"},\"b\":{\"brokerAddrs\":{},\"brokerName\":\"b\",\"cluster\":\"C\"},\"x\":7}}";

		CHECK(rmq_parse_cluster_info(j, strlen(j), &r, &err));
		CHECK_INT(r.nbrokers, 2);
		CHECK_STR(rmq_route_broker_addr(&r, "a"), "[::1]:10911");
		CHECK_STR(rmq_route_broker_addr(&r, "b"), NULL);
	}
	err = NULL;
	CHECK(!rmq_parse_cluster_info("{}", 2, &r, &err) && err);
	err = NULL;
	CHECK(!rmq_parse_cluster_info("{\"brokerAddrTable\":[]}", 22, &r, &err) && err);
	err = NULL;
	CHECK(!rmq_parse_cluster_info("{\"brokerAddrTable\":{}", 21, &r, &err) && err);
	CHECK(rmq_parse_cluster_info("{\"brokerAddrTable\":{}}", 22, &r, &err));
	CHECK_INT(r.nbrokers, 0);
}

TEST(test_batch_append)
{
	StringInfoData s;
	static const unsigned char want1[] = {
		0, 0, 0, 31,			/* TOTALSIZE = 20 + 5 + 2 + 4 */
		0, 0, 0, 0,				/* MAGICCODE */
		0, 0, 0, 0,				/* BODYCRC */
		0x12, 0x34, 0x56, 0x78,	/* FLAG */
		0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o',
		0, 4, 'a', 1, 'b', 2
	};
	static const unsigned char want2[] = {
		0, 0, 0, 22,
		0, 0, 0, 0, 0, 0, 0, 0,
		0xFF, 0xFF, 0xFF, 0xFF,	/* flag -1 */
		0, 0, 0, 0,
		0, 0
	};

	initStringInfo(&s);
	rmq_batch_append(&s, 0x12345678, "hello", 5, "a\001b\002", 4);
	CHECK_MEM(s.data, s.len, want1, sizeof(want1));
	rmq_batch_append(&s, -1, "", 0, "", 0);
	CHECK_INT(s.len, sizeof(want1) + sizeof(want2));
	CHECK_MEM(s.data + sizeof(want1), s.len - sizeof(want1), want2, sizeof(want2));

	/* a 300-byte property string: PROPLEN big-endian int16 */
	{
		char		props[300];

		memset(props, 'p', sizeof(props));
		resetStringInfo(&s);
		rmq_batch_append(&s, 0, "b", 1, props, sizeof(props));
		CHECK_INT(be32(s.data), 20 + 1 + 2 + 300);
		CHECK_INT(s.len, 20 + 1 + 2 + 300);
		CHECK_INT((unsigned char) s.data[21], 1);
		CHECK_INT((unsigned char) s.data[22], 44);
	}
}

TEST(test_hex)
{
	char		out[16];
	static const unsigned char in[] = {0x00, 0x7F, 0xAB, 0xFF};

	rmq_hex(in, 4, out);
	CHECK_STR(out, "007FABFF");
	rmq_hex(in, 0, out);
	CHECK_STR(out, "");
}

int
main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);

	RUN(test_json_standard);
	RUN(test_json_nonstandard_keys);
	RUN(test_json_object_keys);
	RUN(test_json_nan);
	RUN(test_json_escapes);
	RUN(test_json_escape_roundtrip);
	RUN(test_json_truncated);
	RUN(test_json_depth);
	RUN(test_json_garbage);
	RUN(test_json_int64);
	RUN(test_frame_roundtrip);
	RUN(test_frame_json_example);
	RUN(test_frame_binary);
	RUN(test_frame_reject);
	RUN(test_msg_v1_ipv4);
	RUN(test_msg_v2_ipv6);
	RUN(test_msg_batch_and_append);
	RUN(test_msg_props_rules);
	RUN(test_props_random);
	RUN(test_props_roundtrip);
	RUN(test_msg_compressed);
	RUN(test_msg_bomb);
	RUN(test_msg_crc);
	RUN(test_msg_keep_damaged);
	RUN(test_msg_truncated);
	RUN(test_split_addr);
	RUN(test_java_hash);
	RUN(test_route);
	RUN(test_cluster_info);
	RUN(test_batch_append);
	RUN(test_hex);
	RUN(test_answer_budget);
	run_batch_tests();
	run_route_tests();
	run_sign_tests();
	run_alloc_tests();
	run_group_tests();

	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail == 0 ? 0 : 1;
}
