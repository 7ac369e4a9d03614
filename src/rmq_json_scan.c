/*
 * rmq_json_scan.c — one pass over a message body for format json_columns:
 * checks that it is JSON (RFC 8259, as PostgreSQL's json type takes it)
 * and notes where each wanted value lies, walking the tree of wanted paths
 * beside the document.  Nothing is built or copied: converting the values
 * found is rmq_json_columns.c's.
 */
#include "postgres.h"

#include <ctype.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"

#include "rmq_json_scan.h"

/* Deeper documents are refused as not JSON rather than risk the stack. */
#define JC_MAX_DEPTH 1000

const char *const jc_type_names[] = {"missing", "null", "string", "number", "boolean", "object", "array"};

/* ---------------------------------------------------------------- the tree */

/* The body is UTF-8; keys are compared with its bytes. */
static void
step_to_utf8(JcStep *st)
{
	if (st->key && GetDatabaseEncoding() != PG_UTF8)
	{
		st->key = pg_server_to_any(st->key, st->keylen, PG_UTF8);
		st->keylen = strlen(st->key);
	}
}

JcNode *
jc_tree_insert(JcNode *root, List *steps)
{
	JcNode	   *n = root;
	ListCell   *lc;

	foreach(lc, steps)
	{
		JcStep	   *st = lfirst(lc);
		JcNode	   *child = NULL;
		ListCell   *cc;

		step_to_utf8(st);
		foreach(cc, n->children)
		{
			JcNode	   *c = lfirst(cc);

			if (st->key ? (c->step.key && c->step.keylen == st->keylen && memcmp(c->step.key, st->key, st->keylen) == 0)
				: (c->step.key == NULL && c->step.index == st->index))
				child = c;
		}
		if (child == NULL)
		{
			child = palloc0(sizeof(JcNode));
			child->step = *st;
			child->slot = -1;
			n->children = lappend(n->children, child);
			if (st->key)
				n->has_keys = true;
			else
				n->has_indexes = true;
		}
		n = child;
	}
	n->wanted = true;
	return n;
}

static void
number_slots(JcNode *n, int *next)
{
	ListCell   *lc;

	n->lo = *next;
	if (n->wanted)
		n->slot = (*next)++;
	foreach(lc, n->children)
		number_slots(lfirst(lc), next);
	n->hi = *next;
}

int
jc_number_slots(JcNode *root)
{
	int			next = 0;

	number_slots(root, &next);
	return next;
}

/* ---------------------------------------------------------------- the scan */

static void scan_value(JcScan *sc, JcNode *node, int depth);

static void pg_attribute_noreturn()
not_json(JcScan *sc, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("body is not JSON: %s at byte %d", what, (int) (sc->p - sc->s))));
}

static void pg_attribute_noreturn()
unexpected(JcScan *sc)
{
	unsigned char c = (unsigned char) *sc->p;

	not_json(sc, c > 0x20 && c < 0x7f ? psprintf("unexpected \"%c\"", c) : "an unexpected character");
}

static inline char
peek(JcScan *sc)
{
	return sc->p < sc->end ? *sc->p : '\0';
}

static inline void
skip_ws(JcScan *sc)
{
	while (sc->p < sc->end &&
		   (*sc->p == ' ' || *sc->p == '\n' || *sc->p == '\r' || *sc->p == '\t'))
		sc->p++;
}

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A string; the scan is at its opening quote.  Returns whether it has escapes. */
static bool
scan_string(JcScan *sc)
{
	bool		escaped = false;

	sc->p++;
	for (;;)
	{
		unsigned char c = (unsigned char) peek(sc);

		if (c == '"')
			break;
		if (sc->p >= sc->end)
			not_json(sc, "a string is not closed");
		if (c < 0x20)
			not_json(sc, "a control character in a string");
		if (c == '\\')
		{
			escaped = true;
			sc->p++;
			switch (peek(sc))
			{
				case '"':
				case '\\':
				case '/':
				case 'b':
				case 'f':
				case 'n':
				case 'r':
				case 't':
					break;
				case 'u':
					for (int i = 1; i <= 4; i++)
						if (sc->p + i >= sc->end || !is_hex(sc->p[i]))
							not_json(sc, "\\u needs four hexadecimal digits");
					sc->p += 4;
					break;
				default:
					not_json(sc, "an invalid escape in a string");
			}
		}
		sc->p++;
	}
	sc->p++;
	return escaped;
}

static void
scan_digits(JcScan *sc)
{
	if (!isdigit((unsigned char) peek(sc)))
		not_json(sc, "a digit expected in a number");
	while (isdigit((unsigned char) peek(sc)))
		sc->p++;
}

static void
scan_number(JcScan *sc)
{
	if (peek(sc) == '-')
		sc->p++;
	if (peek(sc) == '0')
		sc->p++;
	else
		scan_digits(sc);
	if (peek(sc) == '.')
	{
		sc->p++;
		scan_digits(sc);
	}
	if (peek(sc) == 'e' || peek(sc) == 'E')
	{
		sc->p++;
		if (peek(sc) == '+' || peek(sc) == '-')
			sc->p++;
		scan_digits(sc);
	}
}

static void
scan_literal(JcScan *sc, const char *lit)
{
	size_t		n = strlen(lit);

	if ((size_t) (sc->end - sc->p) < n || memcmp(sc->p, lit, n) != 0)
		unexpected(sc);
	sc->p += n;
}

static void
clear_slots(JcScan *sc, JcNode *n)
{
	if (n->hi > n->lo)
		memset(&sc->slots[n->lo], 0, sizeof(JcValue) * (n->hi - n->lo));
}

static JcNode *
find_key(JcScan *sc, JcNode *node, const char *k, int len, bool escaped)
{
	ListCell   *lc;

	if (escaped)
	{
		const char *why;

		resetStringInfo(&sc->keybuf);
		if (!jc_unescape(k, len, &sc->keybuf, &why))
			return NULL;		/* \u0000 or a broken surrogate: no column's name */
		k = sc->keybuf.data;
		len = sc->keybuf.len;
	}
	foreach(lc, node->children)
	{
		JcNode	   *c = lfirst(lc);

		if (c->step.key && c->step.keylen == len && memcmp(c->step.key, k, len) == 0)
			return c;
	}
	return NULL;
}

static JcNode *
find_index(JcNode *node, int i)
{
	ListCell   *lc;

	foreach(lc, node->children)
	{
		JcNode	   *c = lfirst(lc);

		if (c->step.key == NULL && c->step.index == i)
			return c;
	}
	return NULL;
}

static void
scan_object(JcScan *sc, JcNode *node, int depth)
{
	sc->p++;
	skip_ws(sc);
	if (peek(sc) == '}')
	{
		sc->p++;
		return;
	}
	for (;;)
	{
		const char *k;
		bool		escaped;
		JcNode	   *child;

		if (peek(sc) != '"')
			not_json(sc, "a key expected");
		k = sc->p + 1;
		escaped = scan_string(sc);
		child = node && node->has_keys ? find_key(sc, node, k, sc->p - 1 - k, escaped) : NULL;
		skip_ws(sc);
		if (peek(sc) != ':')
			not_json(sc, "\":\" expected");
		sc->p++;
		if (child)
			clear_slots(sc, child);
		scan_value(sc, child, depth + 1);
		skip_ws(sc);
		if (peek(sc) == ',')
		{
			sc->p++;
			skip_ws(sc);
			continue;
		}
		if (peek(sc) != '}')
			not_json(sc, "\",\" or \"}\" expected");
		sc->p++;
		return;
	}
}

static void
scan_array(JcScan *sc, JcNode *node, int depth)
{
	sc->p++;
	skip_ws(sc);
	if (peek(sc) == ']')
	{
		sc->p++;
		return;
	}
	for (int i = 0;; i++)
	{
		JcNode	   *child = node && node->has_indexes ? find_index(node, i) : NULL;

		if (child)
			clear_slots(sc, child);
		scan_value(sc, child, depth + 1);
		skip_ws(sc);
		if (peek(sc) == ',')
		{
			sc->p++;
			continue;
		}
		if (peek(sc) != ']')
			not_json(sc, "\",\" or \"]\" expected");
		sc->p++;
		return;
	}
}

/* One value; node (or NULL) is what is wanted of it. */
static void
scan_value(JcScan *sc, JcNode *node, int depth)
{
	const char *start;
	JvType		t;
	bool		escaped = false;

	if (depth > JC_MAX_DEPTH)
		not_json(sc, psprintf("nested deeper than %d levels", JC_MAX_DEPTH));
	check_stack_depth();
	skip_ws(sc);
	start = sc->p;
	switch (peek(sc))
	{
		case '{':
			t = JV_OBJECT;
			scan_object(sc, node, depth);
			break;
		case '[':
			t = JV_ARRAY;
			scan_array(sc, node, depth);
			break;
		case '"':
			t = JV_STRING;
			escaped = scan_string(sc);
			break;
		case 't':
			t = JV_BOOL;
			scan_literal(sc, "true");
			break;
		case 'f':
			t = JV_BOOL;
			scan_literal(sc, "false");
			break;
		case 'n':
			t = JV_NULL;
			scan_literal(sc, "null");
			break;
		case '\0':
			not_json(sc, "the end came where a value was expected");
		default:
			if (peek(sc) != '-' && !isdigit((unsigned char) peek(sc)))
				unexpected(sc);
			t = JV_NUMBER;
			scan_number(sc);
	}
	if (node && node->slot >= 0)
	{
		JcValue    *v = &sc->slots[node->slot];

		v->type = t;
		v->escaped = escaped;
		v->start = start;
		v->len = sc->p - start;
	}
}

void
jc_scan_body(JcScan *sc, JcNode *root, int nslots, const char *body, size_t len)
{
	JvType		top;

	sc->s = sc->p = body;
	sc->end = body + len;
	/* JSON is UTF-8 (RFC 8259); this also keeps NUL out of the scan. */
	if (!pg_verify_mbstr(PG_UTF8, body, (int) len, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("body is not JSON: it is not valid UTF-8")));
	if (nslots)
		memset(sc->slots, 0, sizeof(JcValue) * nslots);
	skip_ws(sc);
	top = peek(sc) == '{' ? JV_OBJECT : peek(sc) == '[' ? JV_ARRAY : peek(sc) == '"' ? JV_STRING
		: peek(sc) == 't' || peek(sc) == 'f' ? JV_BOOL : peek(sc) == 'n' ? JV_NULL : JV_NUMBER;
	scan_value(sc, root, 0);
	skip_ws(sc);
	if (sc->p != sc->end)
		not_json(sc, "more after the value");
	if (top != JV_OBJECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("body is a JSON %s, not an object", jc_type_names[top])));
}

/* ---------------------------------------------------------------- values */

static int
hex4(const char *s)
{
	int			v = 0;

	for (int i = 0; i < 4; i++)
		v = v * 16 + (isdigit((unsigned char) s[i]) ? s[i] - '0' : (tolower((unsigned char) s[i]) - 'a' + 10));
	return v;
}

/*
 * A string's characters (s: between its quotes, already checked by the
 * scan), as UTF-8.  False, with why, where jsonb refuses it too.
 */
bool
jc_unescape(const char *s, int len, StringInfo out, const char **why)
{
	const char *end = s + len;

	while (s < end)
	{
		const char *bs = memchr(s, '\\', end - s);
		pg_wchar	cp;
		unsigned char utf8[8];

		if (bs == NULL)
		{
			appendBinaryStringInfo(out, s, end - s);
			break;
		}
		appendBinaryStringInfo(out, s, bs - s);
		s = bs + 2;
		switch (bs[1])
		{
			case 'b':
				appendStringInfoChar(out, '\b');
				continue;
			case 'f':
				appendStringInfoChar(out, '\f');
				continue;
			case 'n':
				appendStringInfoChar(out, '\n');
				continue;
			case 'r':
				appendStringInfoChar(out, '\r');
				continue;
			case 't':
				appendStringInfoChar(out, '\t');
				continue;
			case 'u':
				break;
			default:
				appendStringInfoChar(out, bs[1]);
				continue;
		}
		cp = hex4(s);
		s += 4;
		if (cp == 0)
		{
			*why = "\\u0000 cannot be converted to text";
			return false;
		}
		if (cp >= 0xDC00 && cp <= 0xDFFF)
		{
			*why = "a Unicode low surrogate must follow a high surrogate";
			return false;
		}
		if (cp >= 0xD800 && cp <= 0xDBFF)
		{
			pg_wchar	lo;

			if (end - s < 6 || s[0] != '\\' || s[1] != 'u' ||
				(lo = hex4(s + 2)) < 0xDC00 || lo > 0xDFFF)
			{
				*why = "a Unicode high surrogate must be followed by a low surrogate";
				return false;
			}
			s += 6;
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		}
		unicode_to_utf8(cp, utf8);
		appendBinaryStringInfo(out, (char *) utf8, pg_utf_mblen(utf8));
	}
	return true;
}

/* Collects a JSON array's elements, checking it is rectangular. */
typedef struct ArrBuild
{
	int			ndims;			/* depth of the scalars; 0 until one is seen */
	int			dims[MAXDIM];
	bool		dimset[MAXDIM];
	JcValue    *elems;
	int			nelems;
	int			cap;
} ArrBuild;

static void
arr_collect(JcScan *sc, ArrBuild *ab, int depth)
{
	int			n = 0;

	sc->p++;
	skip_ws(sc);
	if (peek(sc) == ']')
		sc->p++;
	else
		for (;;)
		{
			skip_ws(sc);
			if (peek(sc) == '[')
			{
				if (depth + 1 >= MAXDIM)
					ereport(ERROR,
							(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
							 errmsg("a JSON array of more than %d dimensions", MAXDIM)));
				if (ab->ndims && ab->ndims <= depth + 1)
					goto ragged;
				arr_collect(sc, ab, depth + 1);
			}
			else
			{
				JcValue    *e;

				if (ab->ndims == 0)
					ab->ndims = depth + 1;
				else if (ab->ndims != depth + 1)
					goto ragged;
				if (ab->nelems == ab->cap)
				{
					ab->cap = Max(16, ab->cap * 2);
					ab->elems = ab->elems ? repalloc(ab->elems, sizeof(JcValue) * ab->cap)
						: palloc(sizeof(JcValue) * ab->cap);
				}
				e = &ab->elems[ab->nelems++];
				e->start = sc->p;
				e->escaped = false;
				switch (peek(sc))
				{
					case '"':
						e->type = JV_STRING;
						e->escaped = scan_string(sc);
						break;
					case 'n':
						e->type = JV_NULL;
						scan_literal(sc, "null");
						break;
					case '{':
						e->type = JV_OBJECT;
						scan_value(sc, NULL, 0);
						break;
					default:
						e->type = JV_NUMBER;	/* or a boolean: the same to an input function */
						scan_value(sc, NULL, 0);
				}
				e->len = sc->p - e->start;
			}
			n++;
			skip_ws(sc);
			if (peek(sc) == ',')
			{
				sc->p++;
				continue;
			}
			sc->p++;			/* ']', as the scan found */
			break;
		}
	if (!ab->dimset[depth])
	{
		ab->dims[depth] = n;
		ab->dimset[depth] = true;
		return;
	}
	if (ab->dims[depth] == n)
		return;
ragged:
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("a JSON array whose sub-arrays differ in size or depth cannot be a PostgreSQL array")));
}

/*
 * The scalars of v, a JSON array already scanned, in order, with its
 * dimensions; an error unless its nesting is rectangular.
 */
JcValue *
jc_array_elements(JcScan *sc, const JcValue *v, int *ndims, int *dims, int *nelems)
{
	ArrBuild	ab = {0};
	const char *save_p = sc->p,
			   *save_end = sc->end;

	sc->p = v->start;
	sc->end = v->start + v->len;
	arr_collect(sc, &ab, 0);
	sc->p = save_p;
	sc->end = save_end;
	*ndims = ab.ndims;
	memcpy(dims, ab.dims, sizeof(int) * MAXDIM);
	*nelems = ab.nelems;
	return ab.elems;
}
