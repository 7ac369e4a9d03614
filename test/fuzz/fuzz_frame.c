/*
 * fuzz_frame.c — a whole remoting frame as it comes off the socket: the
 * 4-byte length prefix (rmq_frame_length), then rmq_frame_decode on the
 * rest, and when that succeeds the body goes to the body decoders
 * (rmq_parse_route, rmq_parse_cluster_info, rmq_decode_messages).
 *
 * Invariant: a decoded command re-encoded with rmq_frame_encode (always a
 * JSON header) decodes back to the same command.
 * Suggested: -max_len=1048576 -dict=test/fuzz/json.dict
 */
#include "fuzz_common.h"

static uint32
be32(const char *p)
{
	const unsigned char *b = (const unsigned char *) p;

	return ((uint32) b[0] << 24) | ((uint32) b[1] << 16) | ((uint32) b[2] << 8) | b[3];
}

static bool
streq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void
check_reencode(const RmqCommand *cmd)
{
	StringInfoData f;
	RmqCommand	back;
	char	   *err = NULL;
	uint32		len = 0;

	initStringInfo(&f);
	rmq_frame_encode(&f, cmd);
	FUZZ_ASSERT(f.len >= 8);
	FUZZ_ASSERT(rmq_frame_length((const unsigned char *) f.data, &len, &err));
	FUZZ_ASSERT(len == (uint32) f.len - 4);
	if (!rmq_frame_decode(f.data + 4, f.len - 4, &back, &err))
	{
		fprintf(stderr, "re-encoded frame does not decode: %s\n", err);
		abort();
	}
	FUZZ_ASSERT(back.code == cmd->code);
	FUZZ_ASSERT(back.opaque == cmd->opaque);
	FUZZ_ASSERT(back.flag == cmd->flag);
	FUZZ_ASSERT(back.version == cmd->version);
	/* the encoder writes a NULL language as "OTHER" */
	FUZZ_ASSERT(streq(back.language, cmd->language ? cmd->language : "OTHER"));
	FUZZ_ASSERT(streq(back.remark, cmd->remark));
	FUZZ_ASSERT(back.nfields == cmd->nfields);
	for (int i = 0; i < cmd->nfields; i++)
	{
		FUZZ_ASSERT(streq(back.keys[i], cmd->keys[i]));
		FUZZ_ASSERT(streq(back.values[i], cmd->values[i]));
	}
	FUZZ_ASSERT(back.body_len == cmd->body_len);
	FUZZ_ASSERT(cmd->body_len == 0 || memcmp(back.body, cmd->body, cmd->body_len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *) data;
	RmqCommand	cmd;
	char	   *err = NULL;
	uint32		len = 0;

	if (size < 4)
		return 0;
	if (rmq_frame_length(data, &len, &err))
		FUZZ_ASSERT(len >= 4 && len <= RMQ_MAX_FRAME_LEN && len == be32(buf));
	else
		FUZZ_ASSERT(err != NULL);

	err = NULL;
	if (rmq_frame_decode(buf + 4, size - 4, &cmd, &err))
	{
		int64		v;

		FUZZ_ASSERT(cmd.nfields >= 0);
		FUZZ_ASSERT(cmd.body_len <= size - 8);
		FUZZ_ASSERT(cmd.body_len == 0 ||
					(cmd.body >= buf + 8 && cmd.body + cmd.body_len == buf + size));
		for (int i = 0; i < cmd.nfields; i++)
		{
			FUZZ_ASSERT(cmd.keys[i] != NULL && cmd.values[i] != NULL);
			if (((unsigned char) buf[4]) == RMQ_SERIALIZE_ROCKETMQ)
				FUZZ_ASSERT(cmd.keys[i][0] != '\0' && cmd.values[i][0] != '\0');
			/* lookups are linear: callers ask for a handful of fields */
			if (i < 64)
			{
				FUZZ_ASSERT(rmq_cmd_field(&cmd, cmd.keys[i]) != NULL);
				(void) rmq_cmd_field_int64(&cmd, cmd.keys[i], &v);
			}
		}
		if (cmd.remark)
			fuzz_touch(cmd.remark, strlen(cmd.remark));
		check_reencode(&cmd);

		if (cmd.body_len > 0)
		{
			RmqRoute	route;
			RmqMessage *msgs = NULL;
			int			n = 0;

			err = NULL;
			if (!rmq_parse_route(cmd.body, cmd.body_len, &route, &err))
				FUZZ_ASSERT(err != NULL);
			err = NULL;
			if (!rmq_parse_cluster_info(cmd.body, cmd.body_len, &route, &err))
				FUZZ_ASSERT(err != NULL);
			err = NULL;
			if (!rmq_decode_messages(cmd.body, cmd.body_len, RMQ_DECODE_KEEP_DAMAGED, &msgs, &n, &err))
				FUZZ_ASSERT(err != NULL);
			for (int i = 0; i < n; i++)
				fuzz_touch(msgs[i].body, msgs[i].body_len);
		}
	}
	else
		FUZZ_ASSERT(err != NULL);
	fuzz_reset();
	return 0;
}
