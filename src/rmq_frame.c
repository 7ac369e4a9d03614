/*
 * rmq_frame.c — remoting frames: 4-byte length, serialize type + header
 * length, a JSON or binary ("ROCKETMQ") header, then the body.
 *
 * We always send JSON headers, but the server picks its response header
 * type from a process-wide setting, so both are decoded, per frame.
 */
#include "rmq_codec.h"

static const char *const lang_names[] = {
	"JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER",
	"HTTP", "GO", "PHP", "OMS", "RUST", "NODE_JS"
};

static uint32
get_u32(const unsigned char *p)
{
	return ((uint32) p[0] << 24) | ((uint32) p[1] << 16) | ((uint32) p[2] << 8) | p[3];
}

static uint16
get_u16(const unsigned char *p)
{
	return (uint16) (((uint16) p[0] << 8) | p[1]);
}

static void
put_u32(StringInfo out, uint32 v)
{
	unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};

	appendBinaryStringInfo(out, (char *) b, 4);
}

void
rmq_cmd_init(RmqCommand *cmd, int32 code)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->code = code;
	cmd->language = "CPP";
	cmd->version = RMQ_CLIENT_VERSION;
}

void
rmq_cmd_add(RmqCommand *cmd, const char *key, const char *value)
{
	if (cmd->nfields == cmd->fields_cap)
	{
		int			ncap = cmd->fields_cap ? cmd->fields_cap * 2 : 16;

		if (cmd->keys == NULL)
		{
			cmd->keys = palloc(sizeof(char *) * ncap);
			cmd->values = palloc(sizeof(char *) * ncap);
		}
		else
		{
			cmd->keys = repalloc(cmd->keys, sizeof(char *) * ncap);
			cmd->values = repalloc(cmd->values, sizeof(char *) * ncap);
		}
		cmd->fields_cap = ncap;
	}
	cmd->keys[cmd->nfields] = (char *) key;
	cmd->values[cmd->nfields] = (char *) value;
	cmd->nfields++;
}

void
rmq_cmd_add_int64(RmqCommand *cmd, const char *key, int64 value)
{
	rmq_cmd_add(cmd, key, psprintf(INT64_FORMAT, value));
}

const char *
rmq_cmd_field(const RmqCommand *cmd, const char *key)
{
	for (int i = 0; i < cmd->nfields; i++)
		if (cmd->keys[i] && strcmp(cmd->keys[i], key) == 0)
			return cmd->values[i];
	return NULL;
}

bool
rmq_cmd_field_int64(const RmqCommand *cmd, const char *key, int64 *out)
{
	return rmq_parse_int64(rmq_cmd_field(cmd, key), out);
}

void
rmq_frame_encode(StringInfo out, const RmqCommand *cmd)
{
	StringInfoData h;
	int			start = out->len;

	initStringInfo(&h);
	appendStringInfo(&h, "{\"code\":%d,\"extFields\":{", cmd->code);
	for (int i = 0; i < cmd->nfields; i++)
	{
		if (cmd->values[i] == NULL)
			continue;
		if (h.data[h.len - 1] != '{')
			appendStringInfoChar(&h, ',');
		rmq_json_escape(&h, cmd->keys[i]);
		appendStringInfoChar(&h, ':');
		rmq_json_escape(&h, cmd->values[i]);
	}
	appendStringInfo(&h, "},\"flag\":%d,\"language\":", cmd->flag);
	rmq_json_escape(&h, cmd->language ? cmd->language : "OTHER");
	appendStringInfo(&h, ",\"opaque\":%d,", cmd->opaque);
	if (cmd->remark)
	{
		appendStringInfoString(&h, "\"remark\":");
		rmq_json_escape(&h, cmd->remark);
		appendStringInfoChar(&h, ',');
	}
	appendStringInfo(&h, "\"serializeTypeCurrentRPC\":\"JSON\",\"version\":%d}",
					 cmd->version);

	put_u32(out, 4 + h.len + cmd->body_len);
	put_u32(out, (uint32) h.len);	/* type byte 0 = JSON */
	appendBinaryStringInfo(out, h.data, h.len);
	if (cmd->body_len > 0)
		appendBinaryStringInfo(out, cmd->body, cmd->body_len);
	pfree(h.data);
	(void) start;
}

bool
rmq_frame_length(const unsigned char *prefix, uint32 *len, char **err)
{
	uint32		v = get_u32(prefix);

	if (v < 4 || v > RMQ_MAX_FRAME_LEN)
	{
		*err = psprintf("frame length %u out of range [4, %d]", v, RMQ_MAX_FRAME_LEN);
		return false;
	}
	*len = v;
	return true;
}

static bool
decode_json_header(const char *h, size_t hlen, RmqCommand *cmd, char **err)
{
	RmqJson    *root = rmq_json_parse(h, hlen, err);
	RmqJson    *ext;
	int64		v;

	if (root == NULL)
		return false;
	if (root->type != RMQ_JSON_OBJECT)
	{
		*err = pstrdup("header is not a JSON object");
		return false;
	}
	if (!rmq_json_get_int64(root, "code", &v) || v < PG_INT32_MIN || v > PG_INT32_MAX)
	{
		*err = pstrdup("header has no valid \"code\"");
		return false;
	}
	cmd->code = (int32) v;
	if (rmq_json_get_int64(root, "opaque", &v))
		cmd->opaque = (int32) v;
	if (rmq_json_get_int64(root, "flag", &v))
		cmd->flag = (int32) v;
	if (rmq_json_get_int64(root, "version", &v))
		cmd->version = (int32) v;
	cmd->language = rmq_json_get_str(root, "language");
	if (rmq_json_get_str(root, "remark"))
		cmd->remark = pstrdup(rmq_json_get_str(root, "remark"));
	ext = rmq_json_get(root, "extFields");
	if (ext && ext->type == RMQ_JSON_OBJECT)
		for (RmqJson *c = ext->child; c; c = c->next)
			if (c->key && c->str && c->type != RMQ_JSON_NULL)
				rmq_cmd_add(cmd, c->key, c->str);
	return true;
}

static bool
decode_binary_header(const unsigned char *h, size_t hlen, RmqCommand *cmd, char **err)
{
	size_t		pos;
	uint32		rlen,
				extlen;
	size_t		extend;
	int			lang;

	if (hlen < 21)
	{
		*err = psprintf("binary header too short (%zu bytes)", hlen);
		return false;
	}
	cmd->code = (int16) get_u16(h);
	lang = h[2];
	cmd->language = lang < (int) lengthof(lang_names) ? lang_names[lang] : NULL;
	cmd->version = (int16) get_u16(h + 3);
	cmd->opaque = (int32) get_u32(h + 5);
	cmd->flag = (int32) get_u32(h + 9);
	rlen = get_u32(h + 13);
	pos = 17;
	if (rlen > hlen - pos)
	{
		*err = psprintf("binary header remark length %u exceeds header", rlen);
		return false;
	}
	if (rlen > 0)
		cmd->remark = pnstrdup((const char *) h + pos, rlen);
	pos += rlen;
	if (hlen - pos < 4)
	{
		*err = pstrdup("binary header truncated before extFields length");
		return false;
	}
	extlen = get_u32(h + pos);
	pos += 4;
	if (extlen > hlen - pos)
	{
		*err = psprintf("binary header extFields length %u exceeds header", extlen);
		return false;
	}
	extend = pos + extlen;
	while (pos < extend)
	{
		uint16		klen;
		uint32		vlen;
		char	   *k;

		if (extend - pos < 2)
			goto trunc;
		klen = get_u16(h + pos);
		pos += 2;
		if (klen > extend - pos)
			goto trunc;
		k = (char *) h + pos;
		pos += klen;
		if (extend - pos < 4)
			goto trunc;
		vlen = get_u32(h + pos);
		pos += 4;
		if (vlen > extend - pos)
			goto trunc;

		/*
		 * Zero-length key or value decodes as null in Java: absent.  One
		 * holding a NUL byte cannot be a C string without being cut short
		 * (a key could even become "" or shadow another): skip it too.
		 */
		if (klen > 0 && vlen > 0 && memchr(k, '\0', klen) == NULL &&
			memchr(h + pos, '\0', vlen) == NULL)
			rmq_cmd_add(cmd, pnstrdup(k, klen), pnstrdup((const char *) h + pos, vlen));
		pos += vlen;
	}
	return true;
trunc:
	*err = pstrdup("binary header extFields entry truncated");
	return false;
}

bool
rmq_frame_decode(const char *buf, size_t len, RmqCommand *cmd, char **err)
{
	uint32		th;
	uint32		hlen;
	int			type;
	bool		ok;

	memset(cmd, 0, sizeof(*cmd));
	if (len < 4)
	{
		*err = psprintf("frame too short (%zu bytes)", len);
		return false;
	}
	th = get_u32((const unsigned char *) buf);
	type = (th >> 24) & 0xFF;
	hlen = th & 0xFFFFFF;
	if (hlen > len - 4)
	{
		*err = psprintf("header length %u exceeds frame (%zu bytes)", hlen, len - 4);
		return false;
	}
	if (hlen > RMQ_MAX_HEADER_LEN)
	{
		*err = psprintf("header of %u bytes is longer than the %d a RocketMQ header may have here",
						hlen, RMQ_MAX_HEADER_LEN);
		return false;
	}
	if (type == RMQ_SERIALIZE_JSON)
		ok = decode_json_header(buf + 4, hlen, cmd, err);
	else if (type == RMQ_SERIALIZE_ROCKETMQ)
		ok = decode_binary_header((const unsigned char *) buf + 4, hlen, cmd, err);
	else
	{
		*err = psprintf("unknown serialize type %d", type);
		return false;
	}
	if (!ok)
		return false;
	cmd->body = buf + 4 + hlen;
	cmd->body_len = (uint32) (len - 4 - hlen);
	return true;
}
