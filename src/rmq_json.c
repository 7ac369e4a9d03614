/*
 * rmq_json.c — a small JSON reader tolerant of fastjson's output.
 *
 * PostgreSQL's jsonapi rejects what the broker actually sends: unquoted
 * numeric map keys ({0:"127.0.0.1:10911"}), objects used as keys
 * ({{"brokerName":..}:{..}}), NaN/Infinity.  This reader accepts those and
 * is bounded: recursion depth is capped, and nodes and strings come from a
 * bump allocator whose total may not pass RMQ_JSON_MAX_EXPANSION times the
 * input (plus a small floor): "[1,1,1,...]" costs one node per two bytes,
 * and a peer must not be able to turn a 16 MiB frame into a gigabyte.
 */
#include "rmq_codec.h"

#define POOL_BLOCK 65536

typedef struct JParser
{
	const char *s;
	size_t		len;
	size_t		pos;
	char	   *err;
	char	   *pool;			/* current block */
	size_t		pool_left;
	size_t		allocated;		/* by this parse, in all */
	size_t		budget;
	StringInfoData scratch;		/* a string being unescaped */
} JParser;

/* MAXALIGNed room from the pool; NULL (and an error) past the budget. */
static void *
jalloc(JParser *p, size_t n)
{
	void	   *r;

	n = MAXALIGN(n);
	if (p->allocated + n > p->budget)
	{
		if (p->err == NULL)
			p->err = psprintf("JSON of %zu bytes needs more than %zu bytes of memory to parse",
							  p->len, p->budget);
		return NULL;
	}
	p->allocated += n;
	if (n > POOL_BLOCK / 4)
		return palloc(n);		/* big strings get their own chunk */
	if (n > p->pool_left)
	{
		p->pool = palloc(POOL_BLOCK);
		p->pool_left = POOL_BLOCK;
	}
	r = p->pool;
	p->pool += n;
	p->pool_left -= n;
	return r;
}

static char *
jstrdup(JParser *p, const char *s, size_t len)
{
	char	   *r = jalloc(p, len + 1);

	if (r == NULL)
		return NULL;
	memcpy(r, s, len);
	r[len] = '\0';
	return r;
}

static RmqJson *parse_value(JParser *p, int depth);

static void
jerr(JParser *p, const char *what)
{
	if (p->err == NULL)
		p->err = psprintf("invalid JSON at byte %zu: %s", p->pos, what);
}

static void
skip_ws(JParser *p)
{
	while (p->pos < p->len)
	{
		char		c = p->s[p->pos];

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			p->pos++;
		else
			break;
	}
}

static RmqJson *
new_node(JParser *p, RmqJsonType t)
{
	RmqJson    *n = jalloc(p, sizeof(RmqJson));

	if (n == NULL)
		return NULL;
	memset(n, 0, sizeof(RmqJson));
	n->type = t;
	return n;
}

static void
append_utf8(StringInfo buf, uint32 cp)
{
	if (cp < 0x80)
		appendStringInfoChar(buf, (char) cp);
	else if (cp < 0x800)
	{
		appendStringInfoChar(buf, (char) (0xC0 | (cp >> 6)));
		appendStringInfoChar(buf, (char) (0x80 | (cp & 0x3F)));
	}
	else if (cp < 0x10000)
	{
		appendStringInfoChar(buf, (char) (0xE0 | (cp >> 12)));
		appendStringInfoChar(buf, (char) (0x80 | ((cp >> 6) & 0x3F)));
		appendStringInfoChar(buf, (char) (0x80 | (cp & 0x3F)));
	}
	else
	{
		appendStringInfoChar(buf, (char) (0xF0 | (cp >> 18)));
		appendStringInfoChar(buf, (char) (0x80 | ((cp >> 12) & 0x3F)));
		appendStringInfoChar(buf, (char) (0x80 | ((cp >> 6) & 0x3F)));
		appendStringInfoChar(buf, (char) (0x80 | (cp & 0x3F)));
	}
}

static bool
read_hex4(JParser *p, uint32 *out)
{
	uint32		v = 0;

	if (p->len - p->pos < 4)
		return false;
	for (int i = 0; i < 4; i++)
	{
		char		c = p->s[p->pos++];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return false;
	}
	*out = v;
	return true;
}

/* p->pos is at the opening quote (either ' or "). */
static char *
parse_string(JParser *p)
{
	StringInfo	buf = &p->scratch;
	char		quote = p->s[p->pos++];

	if (buf->data == NULL)
		initStringInfo(buf);
	resetStringInfo(buf);
	while (p->pos < p->len)
	{
		char		c = p->s[p->pos++];

		if (c == quote)
			return jstrdup(p, buf->data, buf->len);
		if (c == '\0')
		{
			/* Strings become C strings; a NUL would silently truncate. */
			jerr(p, "NUL byte in string");
			return NULL;
		}
		if (c != '\\')
		{
			appendStringInfoChar(buf, c);
			continue;
		}
		if (p->pos >= p->len)
			break;
		c = p->s[p->pos++];
		switch (c)
		{
			case 'b': appendStringInfoChar(buf, '\b'); break;
			case 'f': appendStringInfoChar(buf, '\f'); break;
			case 'n': appendStringInfoChar(buf, '\n'); break;
			case 'r': appendStringInfoChar(buf, '\r'); break;
			case 't': appendStringInfoChar(buf, '\t'); break;
			case 'u':
				{
					uint32		cp;

					if (!read_hex4(p, &cp))
					{
						jerr(p, "bad \\u escape");
						return NULL;
					}
					if (cp >= 0xD800 && cp <= 0xDBFF && p->len - p->pos >= 6 &&
						p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u')
					{
						uint32		lo;
						size_t		save = p->pos;

						p->pos += 2;
						if (read_hex4(p, &lo) && lo >= 0xDC00 && lo <= 0xDFFF)
							cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						else
							p->pos = save;
					}
					if (cp == 0)
					{
						jerr(p, "\\u0000 in string");
						return NULL;
					}
					/* Lone surrogates cannot be UTF-8; keep a replacement. */
					if (cp >= 0xD800 && cp <= 0xDFFF)
						cp = 0xFFFD;
					append_utf8(buf, cp);
					break;
				}
			default:
				/* \" \\ \/ and fastjson's lenient escapes: take literally. */
				appendStringInfoChar(buf, c);
				break;
		}
	}
	jerr(p, "unterminated string");
	return NULL;
}

static bool
is_bare_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		(c >= 'A' && c <= 'Z') || c == '-' || c == '+' || c == '.' || c == '_';
}

/* Numbers, true/false/null, NaN, Infinity, and unquoted keys. */
static RmqJson *
parse_bare(JParser *p)
{
	size_t		start = p->pos;
	RmqJson    *n;
	char	   *text;

	while (p->pos < p->len && is_bare_char(p->s[p->pos]))
		p->pos++;
	if (p->pos == start)
	{
		jerr(p, "unexpected character");
		return NULL;
	}
	text = jstrdup(p, p->s + start, p->pos - start);
	if (text == NULL)
		return NULL;
	if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
		n = new_node(p, RMQ_JSON_BOOL);
	else if (strcmp(text, "null") == 0)
		n = new_node(p, RMQ_JSON_NULL);
	else
		n = new_node(p, RMQ_JSON_NUMBER);
	if (n == NULL)
		return NULL;
	n->str = text;
	return n;
}

static RmqJson *
parse_container(JParser *p, int depth, bool is_object)
{
	RmqJson    *n = new_node(p, is_object ? RMQ_JSON_OBJECT : RMQ_JSON_ARRAY);
	RmqJson   **tail;
	char		close = is_object ? '}' : ']';

	if (n == NULL)
		return NULL;
	tail = &n->child;
	p->pos++;					/* opening bracket */
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == close)
	{
		p->pos++;
		return n;
	}
	for (;;)
	{
		RmqJson    *key = NULL;
		RmqJson    *val;

		skip_ws(p);
		if (is_object)
		{
			key = parse_value(p, depth + 1);
			if (key == NULL)
				return NULL;
			skip_ws(p);
			if (p->pos >= p->len || p->s[p->pos] != ':')
			{
				jerr(p, "expected ':'");
				return NULL;
			}
			p->pos++;
		}
		val = parse_value(p, depth + 1);
		if (val == NULL)
			return NULL;
		if (key != NULL)
			val->key = (key->type == RMQ_JSON_OBJECT || key->type == RMQ_JSON_ARRAY)
				? NULL : key->str;
		*tail = val;
		tail = &val->next;
		n->nchildren++;
		skip_ws(p);
		if (p->pos >= p->len)
		{
			jerr(p, "unterminated container");
			return NULL;
		}
		if (p->s[p->pos] == ',')
		{
			p->pos++;
			continue;
		}
		if (p->s[p->pos] == close)
		{
			p->pos++;
			return n;
		}
		jerr(p, "expected ',' or closing bracket");
		return NULL;
	}
}

static RmqJson *
parse_value(JParser *p, int depth)
{
	char		c;

	if (depth > RMQ_JSON_MAX_DEPTH)
	{
		jerr(p, "nesting too deep");
		return NULL;
	}
	skip_ws(p);
	if (p->pos >= p->len)
	{
		jerr(p, "unexpected end of input");
		return NULL;
	}
	c = p->s[p->pos];
	if (c == '{')
		return parse_container(p, depth, true);
	if (c == '[')
		return parse_container(p, depth, false);
	if (c == '"' || c == '\'')
	{
		char	   *s = parse_string(p);
		RmqJson    *n;

		if (s == NULL)
			return NULL;
		n = new_node(p, RMQ_JSON_STRING);
		if (n == NULL)
			return NULL;
		n->str = s;
		return n;
	}
	return parse_bare(p);
}

RmqJson *
rmq_json_parse(const char *s, size_t len, char **err)
{
	JParser		p;
	RmqJson    *root;

	memset(&p, 0, sizeof(p));
	p.s = s;
	p.len = len;
	p.budget = len * RMQ_JSON_MAX_EXPANSION + POOL_BLOCK;
	root = parse_value(&p, 0);
	if (p.scratch.data)
		pfree(p.scratch.data);

	if (root != NULL)
	{
		skip_ws(&p);
		if (p.pos != p.len)
		{
			jerr(&p, "trailing characters");
			root = NULL;
		}
	}
	if (root == NULL && err)
		*err = p.err ? p.err : pstrdup("invalid JSON");
	return root;
}

RmqJson *
rmq_json_get(const RmqJson *obj, const char *key)
{
	if (obj == NULL || obj->type != RMQ_JSON_OBJECT)
		return NULL;
	for (RmqJson *c = obj->child; c; c = c->next)
		if (c->key && strcmp(c->key, key) == 0)
			return c;
	return NULL;
}

const char *
rmq_json_get_str(const RmqJson *obj, const char *key)
{
	RmqJson    *v = rmq_json_get(obj, key);

	if (v == NULL || v->type == RMQ_JSON_NULL || v->type == RMQ_JSON_ARRAY ||
		v->type == RMQ_JSON_OBJECT)
		return NULL;
	return v->str;
}

bool
rmq_parse_int64(const char *s, int64 *out)
{
	char	   *end;
	long long	v;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = (int64) v;
	return true;
}

bool
rmq_json_get_int64(const RmqJson *obj, const char *key, int64 *out)
{
	return rmq_parse_int64(rmq_json_get_str(obj, key), out);
}

void
rmq_json_escape(StringInfo out, const char *s)
{
	appendStringInfoChar(out, '"');
	for (const unsigned char *c = (const unsigned char *) s; *c; c++)
	{
		switch (*c)
		{
			case '"': appendStringInfoString(out, "\\\""); break;
			case '\\': appendStringInfoString(out, "\\\\"); break;
			case '\n': appendStringInfoString(out, "\\n"); break;
			case '\r': appendStringInfoString(out, "\\r"); break;
			case '\t': appendStringInfoString(out, "\\t"); break;
			default:
				if (*c < 0x20)
					appendStringInfo(out, "\\u%04x", *c);
				else
					appendStringInfoChar(out, (char) *c);
		}
	}
	appendStringInfoChar(out, '"');
}
