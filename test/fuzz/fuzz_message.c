/*
 * fuzz_message.c — rmq_decode_messages on a pull body, with check_crc
 * false and true, and the three decompressors on the raw input.
 *
 * Invariants: a body that decodes with the CRC check also decodes without
 * it, to the same messages; every decoded field is within its bounds and
 * every byte of every body is readable.  Keeping damaged records only ever
 * accepts more: the same messages where the strict decode succeeds, and a
 * damaged record's body is a record-sized slice of the input.  Offsets
 * rise through an answer (a batch's messages take consecutive ones), the
 * answer's message count stays bounded, and property text is valid UTF-8
 * without NUL, whatever the input.
 * Suggested: -max_len=1048576
 */
#include "fuzz_common.h"

/* PostgreSQL text: well-formed UTF-8, no NUL (sanitizing changes nothing). */
static void
check_text(const char *s)
{
	bool		lossy = false;
	char	   *again = rmq_utf8_sanitize(s, strlen(s), &lossy);

	FUZZ_ASSERT(!lossy && strcmp(again, s) == 0);
}

static void
check_msgs(const RmqMessage *msgs, int n, const uint8_t *data, size_t size)
{
	FUZZ_ASSERT(n >= 0 && n <= RMQ_MAX_ANSWER_MESSAGES);
	for (int i = 0; i < n; i++)
	{
		const RmqMessage *m = &msgs[i];
		size_t		idlen = strlen(m->msg_id);
		bool		inner = (m->sysflag & (RMQ_SYSFLAG_INNER_BATCH | RMQ_SYSFLAG_NEED_UNWRAP)) ==
			(RMQ_SYSFLAG_INNER_BATCH | RMQ_SYSFLAG_NEED_UNWRAP);

		FUZZ_ASSERT(m->span >= 1 && m->span <= RMQ_MAX_INNER_MESSAGES);
		FUZZ_ASSERT(m->span == 1 || (m->damage && inner));
		for (int j = 0; j < m->nprops; j++)
		{
			check_text(m->prop_keys[j]);
			check_text(m->prop_values[j]);
		}
		if (m->props_len > 0)
			fuzz_touch(m->props_raw, m->props_len);

		if (m->damage)
		{
			FUZZ_ASSERT(m->body >= (const char *) data && m->body_len >= 91 &&
						m->body_len <= size - (size_t) (m->body - (const char *) data));
			FUZZ_ASSERT(m->nprops >= 0 && (idlen == 0 || idlen == 32 || idlen == 56));
			fuzz_touch(m->damage, strlen(m->damage));
			for (int j = 0; j < m->nprops; j++)
				fuzz_touch(m->prop_values[j], strlen(m->prop_values[j]));
			continue;
		}
		FUZZ_ASSERT(m->topic != NULL);
		FUZZ_ASSERT(m->body != NULL || m->body_len == 0);
		FUZZ_ASSERT(m->body_len <= RMQ_MAX_BODY_LEN);
		fuzz_touch(m->body, m->body_len);
		/* an inner batch's messages have no offset id of their own */
		FUZZ_ASSERT(idlen == (m->sysflag & RMQ_SYSFLAG_STOREHOST_V6 ? 56 : 32) || (idlen == 0 && inner));
		FUZZ_ASSERT(strlen(m->born_host) > 0 && strlen(m->store_host) > 0);
		FUZZ_ASSERT(m->nprops >= 0);
		for (int j = 0; j < m->nprops; j++)
		{
			FUZZ_ASSERT(m->prop_keys[j][0] != '\0' && m->prop_values[j][0] != '\0');
			/* keys are unique: lookup finds this very entry (the lookup is
			 * linear, so only for the first few: callers ask for a handful) */
			if (j < 64)
				FUZZ_ASSERT(rmq_msg_prop(m, m->prop_keys[j]) == m->prop_values[j]);
		}
		(void) rmq_msg_prop(m, "TAGS");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	RmqMessage *a = NULL,
			   *b = NULL,
			   *k = NULL;
	int			na = 0,
				nb = 0,
				nk = 0;
	char	   *err = NULL;
	bool		ok_nocrc,
				ok_crc,
				ok_keep;

	ok_nocrc = rmq_decode_messages((const char *) data, size, 0, &a, &na, &err);
	FUZZ_ASSERT(ok_nocrc || err != NULL);
	check_msgs(a, na, data, size);

	err = NULL;
	ok_crc = rmq_decode_messages((const char *) data, size, RMQ_DECODE_CHECK_CRC, &b, &nb, &err);
	FUZZ_ASSERT(ok_crc || err != NULL);
	check_msgs(b, nb, data, size);

	/* the CRC check only ever rejects more */
	if (ok_crc)
	{
		FUZZ_ASSERT(ok_nocrc && na == nb);
		for (int i = 0; i < na; i++)
		{
			FUZZ_ASSERT(a[i].body_len == b[i].body_len);
			FUZZ_ASSERT(memcmp(a[i].body, b[i].body, a[i].body_len) == 0);
			FUZZ_ASSERT(strcmp(a[i].msg_id, b[i].msg_id) == 0);
		}
	}
	else
		FUZZ_ASSERT(nb <= na);

	err = NULL;
	ok_keep = rmq_decode_messages((const char *) data, size,
								  RMQ_DECODE_CHECK_CRC | RMQ_DECODE_KEEP_DAMAGED, &k, &nk, &err);
	FUZZ_ASSERT(ok_keep || err != NULL);
	check_msgs(k, nk, data, size);
	if (ok_crc)
	{
		FUZZ_ASSERT(ok_keep && nk == nb);
		for (int i = 0; i < nk; i++)
			FUZZ_ASSERT(k[i].damage == NULL && k[i].body_len == b[i].body_len &&
						memcmp(k[i].body, b[i].body, b[i].body_len) == 0);
	}
	fuzz_reset();

	/* The decompressors straight on the input: zlib, LZ4 frame, zstd. */
	for (int32 flag = 0x101; flag <= 0x301; flag += 0x100)
	{
		char	   *out = NULL;
		size_t		outlen = 0;

		err = NULL;
		if (rmq_decompress(flag | RMQ_SYSFLAG_COMPRESSED, (const char *) data, size,
						   &out, &outlen, &err))
		{
			FUZZ_ASSERT(outlen <= RMQ_MAX_BODY_LEN && out[outlen] == '\0');
			fuzz_touch(out, outlen);
		}
		else
			FUZZ_ASSERT(err != NULL);
		fuzz_reset();
	}
	return 0;
}
