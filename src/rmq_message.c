/*
 * rmq_message.c — the stored-message records a pull returns, and the
 * property strings and compressed bodies inside them.
 *
 * Every record is bounded by its own TOTALSIZE, itself bounded by the
 * bytes left in the buffer; every inner length is checked against the
 * record's end before it is used.
 */
#include "rmq_codec.h"

#include <arpa/inet.h>
#include <zlib.h>
#include <lz4frame.h>
#include <zstd.h>

#define MAGIC_V1 ((uint32) 0xDAA320A7)
#define MAGIC_V2 ((uint32) 0xDAA320AB)

typedef struct Reader
{
	const unsigned char *p;
	size_t		pos;
	size_t		end;
	bool		ok;
} Reader;

static bool
need(Reader *r, size_t n)
{
	if (!r->ok || r->end - r->pos < n)
		r->ok = false;
	return r->ok;
}

static uint32
rd32(Reader *r)
{
	uint32		v;

	if (!need(r, 4))
		return 0;
	v = ((uint32) r->p[r->pos] << 24) | ((uint32) r->p[r->pos + 1] << 16) |
		((uint32) r->p[r->pos + 2] << 8) | r->p[r->pos + 3];
	r->pos += 4;
	return v;
}

static uint16
rd16(Reader *r)
{
	uint16		v;

	if (!need(r, 2))
		return 0;
	v = (uint16) ((r->p[r->pos] << 8) | r->p[r->pos + 1]);
	r->pos += 2;
	return v;
}

static int64
rd64(Reader *r)
{
	uint64		hi = rd32(r);
	uint64		lo = rd32(r);

	return (int64) ((hi << 32) | lo);
}

void
rmq_hex(const unsigned char *in, size_t len, char *out)
{
	static const char digits[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++)
	{
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xF];
	}
	out[2 * len] = '\0';
}

/* Host + port; also appends the raw bytes to idbuf for the offsetMsgId. */
static void
rd_host(Reader *r, bool v6, char *out, size_t outlen, unsigned char *idbuf, size_t *idlen)
{
	size_t		alen = v6 ? 16 : 4;
	char		ip[INET6_ADDRSTRLEN];
	const unsigned char *a;
	uint32		port;

	if (!need(r, alen + 4))
		return;
	a = r->p + r->pos;
	if (idbuf)
	{
		memcpy(idbuf, a, alen + 4);
		*idlen = alen + 4;
	}
	r->pos += alen;
	port = rd32(r);
	if (inet_ntop(v6 ? AF_INET6 : AF_INET, a, ip, sizeof(ip)) == NULL)
		strcpy(ip, "?");
	if (v6)
		snprintf(out, outlen, "[%s]:%u", ip, port);
	else
		snprintf(out, outlen, "%s:%u", ip, port);
}

uint32
rmq_crc32(const char *buf, size_t len)
{
	uLong		crc = crc32(0L, Z_NULL, 0);

	/* zlib takes uInt lengths; bodies are < 4 GiB by construction. */
	crc = crc32(crc, (const Bytef *) buf, (uInt) len);
	return (uint32) (crc & 0x7FFFFFFF);
}

typedef struct PropRef
{
	const char *key;
	int			pos;
} PropRef;

/*
 * Stable bottom-up merge sort by key: O(n log n) whatever the input (a
 * quicksort can be driven quadratic by a crafted one).  Equal keys keep
 * their order, which is their position in the property string.
 */
static void
propref_sort(PropRef *a, int n)
{
	PropRef    *tmp = palloc(sizeof(PropRef) * n);

	for (int width = 1; width < n; width *= 2)
	{
		for (int lo = 0; lo < n; lo += 2 * width)
		{
			int			mid = Min(lo + width, n);
			int			hi = Min(lo + 2 * width, n);
			int			i = lo,
						j = mid,
						k = lo;

			while (i < mid && j < hi)
				tmp[k++] = strcmp(a[j].key, a[i].key) < 0 ? a[j++] : a[i++];
			while (i < mid)
				tmp[k++] = a[i++];
			while (j < hi)
				tmp[k++] = a[j++];
		}
		memcpy(a, tmp, sizeof(PropRef) * n);
	}
	pfree(tmp);
}

/*
 * Length of the well-formed UTF-8 sequence at p (1 to 4 bytes), or 0 with
 * *bad set to the length of its maximal malformed subpart, which Java's
 * decoder (like the Unicode standard's recommended practice) reads as one
 * U+FFFD.  NUL counts as malformed: PostgreSQL text cannot hold it.
 */
static int
utf8_seq(const unsigned char *p, size_t left, int *bad)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80,
				hi = 0xBF;
	int			n;

	if (c < 0x80)
	{
		*bad = 1;
		return c != 0 ? 1 : 0;
	}
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;			/* no overlong forms */
		else if (c == 0xED)
			hi = 0x9F;			/* no surrogates */
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;			/* nothing past U+10FFFF */
	}
	else
	{
		*bad = 1;
		return 0;
	}
	for (int i = 1; i < n; i++)
	{
		if ((size_t) i >= left || p[i] < lo || p[i] > hi)
		{
			*bad = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xBF;
	}
	return n;
}

/* Bytes of s that are well-formed UTF-8 without NUL, from the start. */
static size_t
utf8_valid_prefix(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;
	int			bad;

	while (i < len)
	{
		/* ASCII runs are the common case */
		if (p[i] > 0 && p[i] < 0x80)
		{
			i++;
			continue;
		}
		{
			int			n = utf8_seq(p + i, len - i, &bad);

			if (n == 0)
				break;
			i += n;
		}
	}
	return i;
}

char *
rmq_utf8_sanitize(const char *s, size_t len, bool *lossy)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = utf8_valid_prefix(s, len);
	StringInfoData out;

	if (i == len)
		return pnstrdup(s, len);
	if (lossy)
		*lossy = true;
	initStringInfo(&out);
	appendBinaryStringInfo(&out, s, i);
	while (i < len)
	{
		int			bad;
		int			n = utf8_seq(p + i, len - i, &bad);

		if (n > 0)
			appendBinaryStringInfo(&out, s + i, n);
		else
			appendBinaryStringInfo(&out, "\xEF\xBF\xBD", 3);
		i += n > 0 ? n : bad;
	}
	return out.data;
}

void
rmq_props_parse(const char *s, size_t len, int *n, char ***keys, char ***values, bool *lossy)
{
	int			cap = 8;
	size_t		i = 0;

	/* Java turns the bytes into a String first; the separators are ASCII. */
	if (utf8_valid_prefix(s, len) != len)
	{
		s = rmq_utf8_sanitize(s, len, lossy);
		len = strlen(s);
	}
	*n = 0;
	*keys = palloc(sizeof(char *) * cap);
	*values = palloc(sizeof(char *) * cap);
	while (i < len)
	{
		const char *seg = s + i;
		const char *sep = memchr(seg, 2, len - i);
		size_t		seglen = sep ? (size_t) (sep - seg) : len - i;
		const char *kv = memchr(seg, 1, seglen);

		/* Java's rules: key and value both non-empty, else skip the pair. */
		if (kv && kv > seg && (size_t) (kv - seg) < seglen - 1)
		{
			if (*n == cap)
			{
				cap *= 2;
				*keys = repalloc(*keys, sizeof(char *) * cap);
				*values = repalloc(*values, sizeof(char *) * cap);
			}
			(*keys)[*n] = pnstrdup(seg, kv - seg);
			(*values)[*n] = pnstrdup(kv + 1, seglen - (kv - seg) - 1);
			(*n)++;
		}
		i += seglen + 1;
	}

	/*
	 * Duplicate keys: the later value wins, as in Java's HashMap, and the
	 * pair keeps the place of the first occurrence.  Sorting makes this
	 * O(n log n): a 32 KiB property string holds up to ~6500 distinct keys,
	 * and a pairwise search over those took seconds per message.
	 */
	if (*n > 1)
	{
		PropRef    *refs = palloc(sizeof(PropRef) * *n);
		bool	   *drop = palloc0(sizeof(bool) * *n);
		int			k = 0;

		for (int j = 0; j < *n; j++)
		{
			refs[j].key = (*keys)[j];
			refs[j].pos = j;
		}
		propref_sort(refs, *n);
		for (int j = 0; j < *n;)
		{
			int			e = j + 1;

			while (e < *n && strcmp(refs[e].key, refs[j].key) == 0)
				drop[refs[e++].pos] = true;
			/* run j..e-1 sorted by position: first keeps, last's value */
			(*values)[refs[j].pos] = (*values)[refs[e - 1].pos];
			j = e;
		}
		for (int j = 0; j < *n; j++)
			if (!drop[j])
			{
				(*keys)[k] = (*keys)[j];
				(*values)[k] = (*values)[j];
				k++;
			}
		*n = k;
		pfree(refs);
		pfree(drop);
	}
}

void
rmq_props_append(StringInfo out, const char *key, const char *value)
{
	if (key == NULL || value == NULL || *key == '\0' || *value == '\0')
		return;
	appendStringInfoString(out, key);
	appendStringInfoChar(out, 1);
	appendStringInfoString(out, value);
	appendStringInfoChar(out, 2);
}

const char *
rmq_msg_prop(const RmqMessage *m, const char *key)
{
	for (int i = 0; i < m->nprops; i++)
		if (strcmp(m->prop_keys[i], key) == 0)
			return m->prop_values[i];
	return NULL;
}

/*
 * Room for the next piece of decompressed output, which may grow to limit
 * + 1 bytes: that one byte past the limit is how a body of exactly the
 * limit is told apart from a bomb, and it keeps the room returned here > 0
 * while out->len <= limit, so every call of a decompressor either makes
 * progress or reports why it cannot.  Callers stop as soon as out->len >
 * limit and fail.  The buffer grows about twofold, but never past limit + 2
 * bytes: a bomb may not cost twice the limit.
 */
#define OUT_CHUNK 65536

static size_t
out_room(StringInfo out, size_t limit)
{
	size_t		cap_left = limit + 1 - out->len;	/* >= 1 */

	if ((size_t) (out->maxlen - out->len - 1) < Min((size_t) OUT_CHUNK, cap_left))
	{
		size_t		grow = Min(Max((size_t) OUT_CHUNK, (size_t) out->len), cap_left);

		out->maxlen = out->len + grow + 1;
		out->data = repalloc(out->data, out->maxlen);
	}
	return Min((size_t) (out->maxlen - out->len - 1), cap_left);
}

static bool
body_too_big(StringInfo out, size_t limit, char **err)
{
	if ((size_t) out->len <= limit)
		return false;
	*err = psprintf("decompressed body exceeds %zu bytes", limit);
	return true;
}

static bool
inflate_zlib(const char *in, size_t inlen, size_t limit, StringInfo out, char **err)
{
	z_stream	zs;
	int			rc;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit(&zs) != Z_OK)
	{
		*err = pstrdup("zlib initialisation failed");
		return false;
	}
	/* zlib takes uInt lengths; bodies are < 4 GiB by construction. */
	zs.next_in = (Bytef *) in;
	zs.avail_in = (uInt) inlen;
	do
	{
		uInt		room = (uInt) out_room(out, limit);

		zs.next_out = (Bytef *) out->data + out->len;
		zs.avail_out = room;
		rc = inflate(&zs, Z_NO_FLUSH);
		out->len += room - zs.avail_out;
		/* Z_OK means progress was made; with room > 0, Z_BUF_ERROR means
		 * the input ran out before the end of the stream. */
	} while (rc == Z_OK && (size_t) out->len <= limit);
	inflateEnd(&zs);
	if (body_too_big(out, limit, err))
		return false;
	if (rc != Z_STREAM_END)
	{
		*err = rc == Z_BUF_ERROR ? pstrdup("zlib body is truncated")
			: psprintf("zlib body is corrupt (%d)", rc);
		return false;
	}
	return true;
}

static bool
inflate_lz4(const char *in, size_t inlen, size_t limit, StringInfo out, char **err)
{
	LZ4F_dctx  *dctx;
	size_t		pos = 0;
	size_t		rc;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
	{
		*err = pstrdup("lz4 initialisation failed");
		return false;
	}
	do
	{
		size_t		srcsz = inlen - pos;
		size_t		dstsz = out_room(out, limit);

		/* Called with srcsz 0 too: buffered output may still be pending. */
		rc = LZ4F_decompress(dctx, out->data + out->len, &dstsz, in + pos, &srcsz, NULL);
		if (LZ4F_isError(rc))
		{
			LZ4F_freeDecompressionContext(dctx);
			*err = psprintf("lz4 body is corrupt: %s", LZ4F_getErrorName(rc));
			return false;
		}
		pos += srcsz;
		out->len += dstsz;
		if (srcsz == 0 && dstsz == 0)
			break;				/* no progress: input exhausted */
	} while (rc != 0 && (size_t) out->len <= limit);
	LZ4F_freeDecompressionContext(dctx);
	if (body_too_big(out, limit, err))
		return false;
	if (rc != 0)
	{
		*err = pstrdup("lz4 body is truncated");
		return false;
	}
	return true;
}

static bool
inflate_zstd(const char *in, size_t inlen, size_t limit, StringInfo out, char **err)
{
	ZSTD_DStream *ds = ZSTD_createDStream();
	ZSTD_inBuffer ib = {in, inlen, 0};
	size_t		rc;

	if (ds == NULL)
	{
		*err = pstrdup("zstd initialisation failed");
		return false;
	}
	ZSTD_initDStream(ds);
	do
	{
		ZSTD_outBuffer ob;
		size_t		prev_in = ib.pos;

		ob.size = out_room(out, limit);	/* may move out->data */
		ob.dst = out->data + out->len;
		ob.pos = 0;
		rc = ZSTD_decompressStream(ds, &ob, &ib);
		if (ZSTD_isError(rc))
		{
			ZSTD_freeDStream(ds);
			*err = psprintf("zstd body is corrupt: %s", ZSTD_getErrorName(rc));
			return false;
		}
		out->len += ob.pos;
		if (ob.pos == 0 && ib.pos == prev_in)
			break;				/* no progress: truncated */
		/* rc == 0 ends a frame; further input may hold another frame */
	} while ((rc != 0 || ib.pos < ib.size) && (size_t) out->len <= limit);
	ZSTD_freeDStream(ds);
	if (body_too_big(out, limit, err))
		return false;
	if (rc != 0)
	{
		*err = pstrdup("zstd body is truncated");
		return false;
	}
	return true;
}

bool
rmq_decompress(int32 sysflag, const char *in, size_t inlen,
			   char **out, size_t *outlen, char **err)
{
	return rmq_decompress_limited(sysflag, in, inlen, RMQ_MAX_BODY_LEN, out, outlen, err);
}

bool
rmq_decompress_limited(int32 sysflag, const char *in, size_t inlen, size_t limit,
					   char **out, size_t *outlen, char **err)
{
	StringInfoData buf;
	bool		ok;

	buf.data = palloc(1);
	buf.maxlen = 1;
	buf.len = 0;
	buf.cursor = 0;
	limit = Min(limit, (size_t) RMQ_MAX_BODY_LEN);
	switch (sysflag & RMQ_SYSFLAG_COMPRESSION_MASK)
	{
		case 0:					/* old clients set only the compressed bit */
		case RMQ_COMPRESSION_ZLIB:
			ok = inflate_zlib(in, inlen, limit, &buf, err);
			break;
		case RMQ_COMPRESSION_LZ4:
			ok = inflate_lz4(in, inlen, limit, &buf, err);
			break;
		case RMQ_COMPRESSION_ZSTD:
			ok = inflate_zstd(in, inlen, limit, &buf, err);
			break;
		default:
			*err = psprintf("unknown compression type 0x%x",
							sysflag & RMQ_SYSFLAG_COMPRESSION_MASK);
			ok = false;
	}
	if (!ok)
	{
		pfree(buf.data);
		return false;
	}
	/* Keep what the body needs, not what growing it left over. */
	*out = repalloc(buf.data, buf.len + 1);
	(*out)[buf.len] = '\0';
	*outlen = buf.len;
	return true;
}

bool
rmq_compress_zlib(const char *in, size_t inlen, StringInfo out)
{
	uLongf		bound = compressBound((uLong) inlen);

	enlargeStringInfo(out, (int) bound);
	/* Level 5 is the Java producer's default. */
	if (compress2((Bytef *) out->data + out->len, &bound, (const Bytef *) in,
				  (uLong) inlen, 5) != Z_OK)
		return false;
	out->len += (int) bound;
	return true;
}

/*
 * One record.  Returns false with *err for damage; *fatal is set when the
 * records can no longer be trusted to be aligned (bad magic).
 */
static bool
decode_one(const unsigned char *p, size_t end, bool check_crc, size_t budget, RmqMessage *m,
		   char **err, bool *fatal)
{
	Reader		r = {p, 4, end, true};
	uint32		magic;
	uint32		crc;
	uint32		bodylen;
	uint32		topiclen;
	int16		proplen;
	unsigned char idbuf[32];
	size_t		idlen = 0;

	memset(m, 0, sizeof(*m));
	m->span = 1;
	*fatal = false;
	magic = rd32(&r);
	if (r.ok && magic != MAGIC_V1 && magic != MAGIC_V2)
	{
		*err = psprintf("bad message magic code 0x%08X", magic);
		*fatal = true;
		return false;
	}
	crc = rd32(&r);
	m->queue_id = (int32) rd32(&r);
	m->flag = (int32) rd32(&r);
	m->queue_offset = rd64(&r);
	m->physical_offset = rd64(&r);
	m->sysflag = (int32) rd32(&r);
	m->born_timestamp = rd64(&r);
	rd_host(&r, (m->sysflag & RMQ_SYSFLAG_BORNHOST_V6) != 0, m->born_host,
			sizeof(m->born_host), NULL, NULL);
	m->store_timestamp = rd64(&r);
	rd_host(&r, (m->sysflag & RMQ_SYSFLAG_STOREHOST_V6) != 0, m->store_host,
			sizeof(m->store_host), idbuf, &idlen);
	if (!r.ok)
		goto trunc;
	/* offsetMsgId = store host address + port + commit-log offset */
	for (int i = 0; i < 8; i++)
		idbuf[idlen + i] = (unsigned char) ((uint64) m->physical_offset >> (56 - 8 * i));
	rmq_hex(idbuf, idlen + 8, m->msg_id);
	m->reconsume_times = (int32) rd32(&r);
	m->prepared_tx_offset = rd64(&r);
	bodylen = rd32(&r);
	if (!r.ok || bodylen > r.end - r.pos)
		goto trunc;
	m->body = (const char *) p + r.pos;
	m->body_len = bodylen;
	r.pos += bodylen;
	if (magic == MAGIC_V1)
	{
		if (!need(&r, 1))
			goto trunc;
		topiclen = p[r.pos++];
	}
	else
		topiclen = rd16(&r);
	if (!r.ok || topiclen > r.end - r.pos)
		goto trunc;
	m->topic = pnstrdup((const char *) p + r.pos, topiclen);
	r.pos += topiclen;
	proplen = (int16) rd16(&r);
	if (!r.ok || proplen < 0 || (size_t) proplen > r.end - r.pos)
		goto trunc;
	m->props_raw = (const char *) p + r.pos;
	m->props_len = (uint32) proplen;
	rmq_props_parse(m->props_raw, proplen, &m->nprops, &m->prop_keys, &m->prop_values,
					&m->props_lossy);

	if (check_crc && rmq_crc32(m->body, m->body_len) != (crc & 0x7FFFFFFF))
	{
		*err = psprintf("body CRC mismatch for message at queue offset " INT64_FORMAT,
						m->queue_offset);
		return false;
	}
	if (m->sysflag & RMQ_SYSFLAG_COMPRESSED)
	{
		char	   *out;
		size_t		outlen;

		if (!rmq_decompress_limited(m->sysflag, m->body, m->body_len, budget, &out, &outlen, err))
		{
			/* Past the answer's budget, not the body's own limit: fatal. */
			if (budget < RMQ_MAX_BODY_LEN && strstr(*err, "exceeds"))
			{
				*err = psprintf("decompressed bodies of one pull answer exceed %zu bytes",
								RMQ_MAX_ANSWER_BODIES);
				*fatal = true;
			}
			return false;
		}
		m->body = out;
		m->body_len = (uint32) outlen;
	}
	return true;
trunc:
	*err = pstrdup("message record truncated");
	return false;
}

static bool
is_inner_batch(const RmqMessage *m)
{
	return (m->sysflag & (RMQ_SYSFLAG_INNER_BATCH | RMQ_SYSFLAG_NEED_UNWRAP)) ==
		(RMQ_SYSFLAG_INNER_BATCH | RMQ_SYSFLAG_NEED_UNWRAP);
}

/* INNER_NUM of an inner batch record, or 0 if it has no usable one. */
static int
inner_num(const RmqMessage *m)
{
	int64		v;

	if (!rmq_parse_int64(rmq_msg_prop(m, "INNER_NUM"), &v) || v < 1 || v > RMQ_MAX_INNER_MESSAGES)
		return 0;
	return (int) v;
}

/*
 * The messages of an inner batch record into out[0..num), as the Java
 * consumer builds them (MessageDecoder.decodeMessage(MessageExt, List)):
 * the record's queue, hosts, times and flags; each message's own flag, body
 * and properties; queue offsets base, base + 1, ...; no offsetMsgId and no
 * reconsume count.  The body must hold exactly num messages, each exactly
 * as long as its size field says: the broker counts them by that field
 * while Java reads them field by field, and the two must agree.
 */
static bool
unwrap_inner(const RmqMessage *outer, int num, RmqMessage *out, char **err)
{
	const unsigned char *p = (const unsigned char *) outer->body;
	size_t		len = outer->body_len;
	size_t		pos = 0;
	int			i = 0;

	while (pos < len)
	{
		Reader		r = {p + pos, 0, len - pos, true};
		uint32		total = rd32(&r);
		uint32		bodylen;
		int16		proplen;
		RmqMessage *m;

		if (!r.ok || total < 22 || total > len - pos)
		{
			*err = psprintf("inner message %d of the batch at queue offset " INT64_FORMAT " has size %u with %zu bytes left",
							i, outer->queue_offset, r.ok ? total : 0, len - pos);
			return false;
		}
		if (i == num)
		{
			*err = psprintf("batch at queue offset " INT64_FORMAT " holds more messages than its INNER_NUM %d",
							outer->queue_offset, num);
			return false;
		}
		r.end = total;
		m = &out[i];
		*m = *outer;
		(void) rd32(&r);		/* magic code: 0 from Java, not checked */
		(void) rd32(&r);		/* body CRC: 0, the broker never fills it */
		m->flag = (int32) rd32(&r);
		bodylen = rd32(&r);
		if (!r.ok || bodylen > total - 22)
			goto bad_lengths;
		m->body = (const char *) p + pos + r.pos;
		m->body_len = bodylen;
		r.pos += bodylen;
		proplen = (int16) rd16(&r);
		if (!r.ok || proplen < 0 || 22 + bodylen + (uint32) proplen != total)
			goto bad_lengths;
		m->props_raw = (const char *) p + pos + r.pos;
		m->props_len = (uint32) proplen;
		m->props_lossy = false;
		rmq_props_parse(m->props_raw, proplen, &m->nprops, &m->prop_keys, &m->prop_values,
						&m->props_lossy);
		m->queue_offset = outer->queue_offset + i;
		m->msg_id[0] = '\0';
		m->reconsume_times = 0;
		m->prepared_tx_offset = 0;
		m->span = 1;
		pos += total;
		i++;
		continue;
bad_lengths:
		*err = psprintf("inner message %d of the batch at queue offset " INT64_FORMAT " has lengths that do not add up to its size %u",
						i, outer->queue_offset, total);
		return false;
	}
	if (i != num)
	{
		*err = psprintf("batch at queue offset " INT64_FORMAT " holds %d messages, but its INNER_NUM is %d",
						outer->queue_offset, i, num);
		return false;
	}
	return true;
}

/* Room for `more` messages after the first *nmsgs. */
static void
reserve(RmqMessage **msgs, int nmsgs, int *cap, int more)
{
	if (nmsgs + more <= *cap)
		return;
	*cap = Max(*cap < 16 ? 32 : *cap * 2, nmsgs + more);
	*msgs = (*msgs == NULL) ? palloc(sizeof(RmqMessage) * *cap)
		: repalloc(*msgs, sizeof(RmqMessage) * *cap);
}

bool
rmq_decode_messages(const char *buf, size_t len, int flags,
					RmqMessage **msgs, int *nmsgs, char **err)
{
	const unsigned char *p = (const unsigned char *) buf;
	size_t		pos = 0;
	int			cap = *nmsgs;
	size_t		bodies = 0;

	while (pos < len)
	{
		uint32		total;
		RmqMessage	m;
		bool		fatal;
		int			num = 0;

		if (len - pos < 4)
		{
			*err = pstrdup("trailing bytes after last message");
			return false;
		}
		total = ((uint32) p[pos] << 24) | ((uint32) p[pos + 1] << 16) |
			((uint32) p[pos + 2] << 8) | p[pos + 3];
		/* 91 bytes is the smallest possible V1 record. */
		if (total < 91 || total > len - pos)
		{
			*err = psprintf("message record size %u invalid with %zu bytes left",
							total, len - pos);
			return false;
		}
		if (!decode_one(p + pos, total, (flags & RMQ_DECODE_CHECK_CRC) != 0,
						RMQ_MAX_ANSWER_BODIES - bodies, &m, err, &fatal))
		{
			if (fatal || !(flags & RMQ_DECODE_KEEP_DAMAGED))
				return false;
			goto damaged;
		}
		if (is_inner_batch(&m))
		{
			num = inner_num(&m);
			if (num == 0)
			{
				*err = psprintf("batch at queue offset " INT64_FORMAT " has no valid INNER_NUM",
								m.queue_offset);
				goto damaged_or_fail;
			}
			if (*nmsgs + num > RMQ_MAX_ANSWER_MESSAGES)
				goto too_many;
			reserve(msgs, *nmsgs, &cap, num);
			if (!unwrap_inner(&m, num, &(*msgs)[*nmsgs], err))
				goto damaged_or_fail;
			*nmsgs += num;
		}
		else
		{
			if (*nmsgs + 1 > RMQ_MAX_ANSWER_MESSAGES)
				goto too_many;
			reserve(msgs, *nmsgs, &cap, 1);
			(*msgs)[(*nmsgs)++] = m;
		}
		goto next;

damaged_or_fail:
		if (!(flags & RMQ_DECODE_KEEP_DAMAGED))
			return false;
damaged:
		/* An inner batch that does not unpack stands for all its offsets. */
		if (is_inner_batch(&m))
			num = inner_num(&m);
		if (*nmsgs + 1 > RMQ_MAX_ANSWER_MESSAGES)
			goto too_many;
		m.damage = *err;
		*err = NULL;
		m.body = (const char *) p + pos;
		m.body_len = total;
		m.span = Max(num, 1);
		reserve(msgs, *nmsgs, &cap, 1);
		(*msgs)[(*nmsgs)++] = m;
next:
		bodies += m.body_len;
		if (bodies > RMQ_MAX_ANSWER_BODIES)
		{
			*err = psprintf("decompressed bodies of one pull answer exceed %zu bytes", RMQ_MAX_ANSWER_BODIES);
			return false;
		}
		pos += total;
	}
	return true;

too_many:
	*err = psprintf("one pull answer holds more than %d messages", RMQ_MAX_ANSWER_MESSAGES);
	return false;
}
