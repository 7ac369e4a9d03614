/*
 * unit.h — the unit tests' tiny framework (checks counted across files)
 * and the builders shared by test_codec.c and test_batch.c.
 */
#ifndef RMQ_UNIT_H
#define RMQ_UNIT_H

#include "rmq_codec.h"

#include <zlib.h>

extern int	n_pass,
			n_fail;
extern const char *cur_test;

/* ------------------------------------------------------------------ */
/* tiny assertion framework                                            */
/* ------------------------------------------------------------------ */

#define CHECK(cond) \
	do { \
		if (cond) n_pass++; \
		else { n_fail++; \
			printf("FAIL [%s] %s:%d: %s\n", cur_test, __FILE__, __LINE__, #cond); } \
	} while (0)

#define CHECK_MSG(cond, ...) \
	do { \
		if (cond) n_pass++; \
		else { n_fail++; \
			printf("FAIL [%s] %s:%d: %s: ", cur_test, __FILE__, __LINE__, #cond); \
			printf(__VA_ARGS__); printf("\n"); } \
	} while (0)

#define CHECK_INT(a, b) \
	do { \
		long long _a = (long long) (a), _b = (long long) (b); \
		if (_a == _b) n_pass++; \
		else { n_fail++; \
			printf("FAIL [%s] %s:%d: %s == %s: got %lld, want %lld\n", \
				   cur_test, __FILE__, __LINE__, #a, #b, _a, _b); } \
	} while (0)

#define CHECK_STR(a, b) \
	do { \
		const char *_a = (a), *_b = (b); \
		if ((_a == NULL && _b == NULL) || (_a && _b && strcmp(_a, _b) == 0)) n_pass++; \
		else { n_fail++; \
			printf("FAIL [%s] %s:%d: %s == %s: got \"%s\", want \"%s\"\n", \
				   cur_test, __FILE__, __LINE__, #a, #b, \
				   _a ? _a : "(null)", _b ? _b : "(null)"); } \
	} while (0)

#define CHECK_MEM(a, alen, b, blen) \
	do { \
		size_t _al = (size_t) (alen), _bl = (size_t) (blen); \
		if (_al == _bl && (_al == 0 || memcmp((a), (b), _al) == 0)) n_pass++; \
		else { n_fail++; \
			printf("FAIL [%s] %s:%d: %s[%zu] == %s[%zu]\n", \
				   cur_test, __FILE__, __LINE__, #a, _al, #b, _bl); } \
	} while (0)

#define TEST(name) static void name(void)
#define RUN(name) do { cur_test = #name; name(); } while (0)

/* A heap copy of exactly len bytes, so ASan catches any over-read. */
pg_attribute_unused() static char *
exact_copy(const void *p, size_t len)
{
	char	   *c = malloc(len ? len : 1);

	if (len)
		memcpy(c, p, len);
	return c;
}

pg_attribute_unused() static uint32
be32(const void *p)
{
	const unsigned char *b = p;

	return ((uint32) b[0] << 24) | ((uint32) b[1] << 16) | ((uint32) b[2] << 8) | b[3];
}

pg_attribute_unused() static void
put32(unsigned char *b, uint32 v)
{
	b[0] = v >> 24;
	b[1] = v >> 16;
	b[2] = v >> 8;
	b[3] = v;
}

/* ------------------------------------------------------------------ */
/* messages                                                            */
/* ------------------------------------------------------------------ */
typedef struct MsgSpec
{
	bool		v2;
	int32		queue_id;
	int32		flag;
	int64		queue_offset;
	int64		phys_offset;
	int32		sysflag;
	int64		born_ts;
	unsigned char born_ip[16];
	int32		born_port;
	int64		store_ts;
	unsigned char store_ip[16];
	int32		store_port;
	int32		reconsume;
	int64		prepared;
	const char *body;
	uint32		body_len;
	const char *topic;
	const char *props;
	int			props_len;
	bool		bad_crc;
} MsgSpec;

pg_attribute_unused() static void
app32(StringInfo s, uint32 v)
{
	unsigned char b[4];

	put32(b, v);
	appendBinaryStringInfo(s, (char *) b, 4);
}

pg_attribute_unused() static void
app64(StringInfo s, uint64 v)
{
	app32(s, (uint32) (v >> 32));
	app32(s, (uint32) v);
}

pg_attribute_unused() static void
app16(StringInfo s, uint16 v)
{
	appendStringInfoChar(s, (char) (v >> 8));
	appendStringInfoChar(s, (char) v);
}

/* Write one §4.1 stored-message record; returns its size. */
pg_attribute_unused() static int
build_msg(StringInfo s, const MsgSpec *m)
{
	int			start = s->len;
	size_t		tlen = strlen(m->topic);
	uint32		crc = (uint32) (crc32(0L, (const Bytef *) m->body, m->body_len) & 0x7FFFFFFF);

	app32(s, 0);				/* TOTALSIZE, patched */
	app32(s, m->v2 ? 0xDAA320AB : 0xDAA320A7);
	app32(s, m->bad_crc ? crc ^ 1 : crc);
	app32(s, m->queue_id);
	app32(s, m->flag);
	app64(s, m->queue_offset);
	app64(s, m->phys_offset);
	app32(s, m->sysflag);
	app64(s, m->born_ts);
	appendBinaryStringInfo(s, (const char *) m->born_ip, (m->sysflag & 0x10) ? 16 : 4);
	app32(s, m->born_port);
	app64(s, m->store_ts);
	appendBinaryStringInfo(s, (const char *) m->store_ip, (m->sysflag & 0x20) ? 16 : 4);
	app32(s, m->store_port);
	app32(s, m->reconsume);
	app64(s, m->prepared);
	app32(s, m->body_len);
	appendBinaryStringInfo(s, m->body, m->body_len);
	if (m->v2)
		app16(s, tlen);
	else
		appendStringInfoChar(s, (char) tlen);
	appendBinaryStringInfo(s, m->topic, tlen);
	app16(s, m->props_len);
	appendBinaryStringInfo(s, m->props, m->props_len);
	put32((unsigned char *) s->data + start, s->len - start);
	return s->len - start;
}

pg_attribute_unused() static const char std_props[] = "TAGS\001TagA\002KEYS\001k1 k2\002UNIQ_KEY\0017F0000010001B4AAC2E5000000000000\002WAIT\001true\002";

pg_attribute_unused() static void
default_spec(MsgSpec *m)
{
	static const unsigned char lo4[4] = {127, 0, 0, 1};

	memset(m, 0, sizeof(*m));
	m->queue_id = 3;
	m->flag = 0x12345678;
	m->queue_offset = 42;
	m->phys_offset = 0x1234;
	m->born_ts = INT64CONST(1700000000123);
	memcpy(m->born_ip, lo4, 4);
	m->born_port = 1234;
	m->store_ts = INT64CONST(1700000000456);
	memcpy(m->store_ip, lo4, 4);
	m->store_port = 10911;
	m->reconsume = 2;
	m->prepared = 0;
	m->body = "Hello RocketMQ";
	m->body_len = 14;
	m->topic = "TopicTest";
	m->props = std_props;
	m->props_len = sizeof(std_props) - 1;
}

pg_attribute_unused() static bool
decode_buf(const char *buf, size_t len, bool check_crc, RmqMessage **msgs, int *n, char **err)
{
	char	   *c = exact_copy(buf, len);

	*msgs = NULL;
	*n = 0;
	*err = NULL;
	return rmq_decode_messages(c, len, check_crc ? RMQ_DECODE_CHECK_CRC : 0, msgs, n, err);
}

#endif
