/*
 * rmq_json_columns.c — format json_columns: each message body is a JSON
 * object whose values go to the target's columns, as jsonb_populate_record
 * would put them: a column takes the top-level key of its name, or the path
 * json_paths gives it; the value's text (strings unquoted, other values as
 * their JSON text) goes through the column type's input function; JSON
 * arrays become arrays; JSON null is NULL; a key that is absent gives the
 * column its default.
 *
 * Speed is the point, so no jsonb is built: one pass over the body checks
 * it is JSON and notes where each wanted value lies (the wanted paths form
 * a small tree walked beside the document), then only those values are
 * converted, straight into COPY binary fields.  Types whose binary form is
 * the text itself (text, json, jsonb) skip the input function.
 *
 * Errors are the message's, not the stream's: they surface from rmq_sink.c
 * inside the batch's COPY, so rmq_commit.c's on_error policy applies.  A
 * conversion error is re-raised with the column (and path) in its message,
 * the only text rmq_dead_letter keeps.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "rewrite/rewriteHandler.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "rmq_json_columns.h"
#include "rmq_stream.h"

/* Deeper documents are refused as not JSON rather than risk the stack. */
#define JC_MAX_DEPTH 1000

typedef enum JvType
{
	JV_MISSING = 0, JV_NULL, JV_STRING, JV_NUMBER, JV_BOOL, JV_OBJECT, JV_ARRAY
} JvType;

static const char *const jv_names[] = {"missing", "null", "string", "number", "boolean", "object", "array"};

/* Where a wanted value lies in the body being scanned. */
typedef struct JcValue
{
	JvType		type;
	bool		escaped;		/* a string with backslash escapes */
	const char *start;			/* its JSON text, quotes included */
	int			len;
} JcValue;

/* One step of a path: an object member, or an array element. */
typedef struct JcStep
{
	char	   *key;			/* UTF-8; NULL for an array index */
	int			keylen;
	int			index;
} JcStep;

/*
 * The wanted paths as a tree.  Slots are numbered depth first, so a node's
 * subtree owns the contiguous slots [lo, hi): a key seen twice (the last
 * one wins, as in jsonb) clears what its first value left there.
 */
typedef struct JcNode
{
	JcStep		step;
	bool		wanted;
	int			slot;
	int			lo,
				hi;
	List	   *children;
	bool		has_keys,
				has_indexes;
} JcNode;

typedef enum JcKind
{
	JC_TEXT,					/* text: the string's characters */
	JC_JSON,					/* json, jsonb: the value's JSON text */
	JC_JSONB,
	JC_ARRAY,					/* an array type: JSON arrays element by element */
	JC_TIMESTAMPTZ,				/* timestamptz: ISO 8601 with a zone read here */
	JC_INPUT					/* anything else: the type's input function */
} JcKind;

typedef struct JcColumn
{
	char	   *name;
	char	   *path;			/* as given in json_paths, for messages; NULL: by name */
	JcNode	   *node;
	Oid			type;
	int32		typmod;
	JcKind		kind;
	FmgrInfo	in;
	Oid			ioparam;
	FmgrInfo	send;
	ExprState  *dflt;			/* NULL: the column's default is NULL */
	/* arrays */
	Oid			elemtype;
	int16		elemlen;
	bool		elembyval;
	char		elemalign;
	bool		elem_json;
	FmgrInfo	elem_in;
	Oid			elem_ioparam;
} JcColumn;

typedef struct JcPath
{
	char	   *column;
	char	   *text;
	List	   *steps;
} JcPath;

struct RmqJcPlan
{
	MemoryContext row_cxt;		/* reset after every row */
	EState	   *estate;			/* for the columns' defaults */
	ExprContext *econtext;
	bool		utf8db;
	List	   *paths;			/* JcPath, from json_paths */
	JcNode	   *root;
	JcColumn   *cols;
	int			ncols;
	int			cols_cap;
	JcValue    *slots;
	int			nslots;
	bool		numbered;
	JcColumn   *cur;			/* being converted: errors name it */
	StringInfoData scratch;		/* a value's text */
	StringInfoData keybuf;		/* an escaped key, unescaped */
	/* the scan */
	const char *s,
			   *p,
			   *end;
};

/* ---------------------------------------------------------------- output */

static void
put32(StringInfo b, uint32 v)
{
	v = pg_hton32(v);
	appendBinaryStringInfo(b, (char *) &v, 4);
}

static void
put64(StringInfo b, uint64 v)
{
	v = pg_hton64(v);
	appendBinaryStringInfo(b, (char *) &v, 8);
}

/* Text from the body (UTF-8) as the server's encoding. */
static void
put_text(RmqJcPlan *plan, StringInfo b, const char *s, int len, bool jsonb)
{
	if (!plan->utf8db)
	{
		s = pg_any_to_server(s, len, PG_UTF8);
		len = strlen(s);
	}
	put32(b, len + (jsonb ? 1 : 0));
	if (jsonb)
		appendStringInfoChar(b, 1);	/* jsonb_recv's version byte */
	appendBinaryStringInfo(b, s, len);
}

/* A Datum of the column's type as a COPY binary field. */
static void
put_datum(JcColumn *col, StringInfo b, Datum d)
{
	switch (col->type)
	{
		case BOOLOID:
			put32(b, 1);
			appendStringInfoChar(b, DatumGetBool(d) ? 1 : 0);
			return;
		case INT2OID:
			{
				uint16		v = pg_hton16((uint16) DatumGetInt16(d));

				put32(b, 2);
				appendBinaryStringInfo(b, (char *) &v, 2);
				return;
			}
		case INT4OID:
		case DATEOID:
		case OIDOID:
			put32(b, 4);
			put32(b, (uint32) DatumGetInt32(d));
			return;
		case FLOAT4OID:
			{
				union
				{
					float4		f;
					uint32		i;
				}			u;

				u.f = DatumGetFloat4(d);
				put32(b, 4);
				put32(b, u.i);
				return;
			}
		case INT8OID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case TIMEOID:
			put32(b, 8);
			put64(b, (uint64) DatumGetInt64(d));
			return;
		case FLOAT8OID:
			{
				union
				{
					float8		f;
					uint64		i;
				}			u;

				u.f = DatumGetFloat8(d);
				put32(b, 8);
				put64(b, u.i);
				return;
			}
		default:
			{
				bytea	   *v = SendFunctionCall(&col->send, d);

				put32(b, VARSIZE(v) - VARHDRSZ);
				appendBinaryStringInfo(b, VARDATA(v), VARSIZE(v) - VARHDRSZ);
			}
	}
}

/* ---------------------------------------------------------------- paths */

static bool
ident_char(char c)
{
	return c != '.' && c != '[' && c != ']' && c != '"' && c != '\'' && !isspace((unsigned char) c) && c != '\0';
}

static JcStep *
key_step(const char *s, int len)
{
	JcStep	   *st = palloc0(sizeof(JcStep));

	st->key = pnstrdup(s, len);
	st->keylen = len;
	st->index = -1;
	return st;
}

static JcStep *
index_step(int64 i)
{
	JcStep	   *st = palloc0(sizeof(JcStep));

	st->index = (int) i;
	return st;
}

static void
bad_path(const char *column, const char *path, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("json_paths: the path of column \"%s\" is not valid: %s", column, why),
			 errdetail("Got %s.", path),
			 errhint("Give a path like \"$.order.total\", \"$.items[0].sku\" or \"$.\\\"a key\\\"\", "
					 "or an array of keys and indexes like [\"order\", \"total\"].")));
}

/* "$", then .key, ."any key" or [index] steps. */
static List *
parse_path_text(const char *column, const char *path)
{
	const char *p = path;
	List	   *steps = NIL;

	if (*p++ != '$')
		bad_path(column, path, "it must start with $");
	while (*p)
	{
		if (*p == '.' && p[1] == '"')
		{
			StringInfoData k;

			initStringInfo(&k);
			for (p += 2; *p && *p != '"'; p++)
			{
				if (*p == '\\' && p[1])
					p++;
				appendStringInfoChar(&k, *p);
			}
			if (*p != '"')
				bad_path(column, path, "a quoted key is not closed");
			p++;
			steps = lappend(steps, key_step(k.data, k.len));
		}
		else if (*p == '.')
		{
			const char *k = ++p;

			while (ident_char(*p))
				p++;
			if (p == k)
				bad_path(column, path, "a key is empty (quote keys that hold . [ ] quotes or spaces)");
			steps = lappend(steps, key_step(k, p - k));
		}
		else if (*p == '[')
		{
			int64		i = 0;
			const char *d = ++p;

			while (*p >= '0' && *p <= '9' && i <= INT_MAX)
				i = i * 10 + (*p++ - '0');
			if (p == d || *p != ']' || i > INT_MAX)
				bad_path(column, path, "an index must be a non-negative integer in brackets");
			p++;
			steps = lappend(steps, index_step(i));
		}
		else
			bad_path(column, path, psprintf("unexpected \"%c\" at character %d", *p, (int) (p - path) + 1));
	}
	return steps;
}

/* ["order", "total"], ["items", 0, "sku"] */
static List *
parse_path_array(const char *column, JsonbContainer *arr, const char *text)
{
	JsonbIterator *it = JsonbIteratorInit(arr);
	JsonbValue	v;
	JsonbIteratorToken tok;
	List	   *steps = NIL;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (v.type == jbvString)
			steps = lappend(steps, key_step(v.val.string.val, v.val.string.len));
		else if (v.type == jbvNumeric)
		{
			char	   *n = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));

			if (strspn(n, "0123456789") != strlen(n) || strlen(n) > 9)
				bad_path(column, text, "an index must be a non-negative integer");
			steps = lappend(steps, index_step(atoi(n)));
		}
		else
			bad_path(column, text, "its elements must be keys (strings) or indexes (integers)");
	}
	return steps;
}

Jsonb *
rmq_jc_paths_option(Jsonb *options)
{
	JsonbValue	k,
			   *v;

	k.type = jbvString;
	k.val.string.val = "json_paths";
	k.val.string.len = strlen("json_paths");
	v = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream option \"json_paths\" must be a JSON object of column names and JSON paths"),
				 errhint("For example {\"json_paths\": {\"amount\": \"$.order.total\", \"sku\": [\"items\", 0, \"sku\"]}}.")));
	return JsonbValueToJsonb(v);
}

/* ---------------------------------------------------------------- plan */

RmqJcPlan *
rmq_jc_begin(Relation rel, Jsonb *json_paths)
{
	RmqJcPlan  *plan = palloc0(sizeof(RmqJcPlan));
	TupleDesc	td = RelationGetDescr(rel);

	plan->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "rocketmq_stream json_columns row",
										  ALLOCSET_DEFAULT_SIZES);
	plan->estate = CreateExecutorState();
	plan->econtext = GetPerTupleExprContext(plan->estate);
	plan->utf8db = GetDatabaseEncoding() == PG_UTF8;
	plan->root = palloc0(sizeof(JcNode));
	plan->root->slot = -1;
	initStringInfo(&plan->scratch);
	initStringInfo(&plan->keybuf);
	if (json_paths)
	{
		JsonbIterator *it = JsonbIteratorInit(&json_paths->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *column = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				column = pnstrdup(v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE)
			{
				JcPath	   *jp = palloc0(sizeof(JcPath));
				Form_pg_attribute att = NULL;

				for (int a = 0; a < td->natts && att == NULL; a++)
					if (!TupleDescAttr(td, a)->attisdropped &&
						strcmp(NameStr(TupleDescAttr(td, a)->attname), column) == 0)
						att = TupleDescAttr(td, a);
				if (att == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("json_paths names column \"%s\", which stream target \"%s\" does not have",
									column, RelationGetRelationName(rel))));
				if (att->attgenerated)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("json_paths names column \"%s\" of \"%s\", which is generated",
									column, RelationGetRelationName(rel))));
				jp->column = column;
				if (v.type == jbvString)
				{
					jp->text = pnstrdup(v.val.string.val, v.val.string.len);
					jp->steps = parse_path_text(column, jp->text);
				}
				else if (v.type == jbvBinary && JsonContainerIsArray(v.val.binary.data))
				{
					jp->text = JsonbToCString(NULL, v.val.binary.data, v.val.binary.len);
					jp->steps = parse_path_array(column, v.val.binary.data, jp->text);
				}
				else
					bad_path(column, JsonbToCString(NULL, &JsonbValueToJsonb(&v)->root, 0),
							 "it must be a JSON path or an array of steps");
				plan->paths = lappend(plan->paths, jp);
			}
		}
	}
	return plan;
}

static JcPath *
find_path(RmqJcPlan *plan, const char *attname)
{
	ListCell   *lc;

	foreach(lc, plan->paths)
		if (strcmp(((JcPath *) lfirst(lc))->column, attname) == 0)
			return lfirst(lc);
	return NULL;
}

bool
rmq_jc_has_path(RmqJcPlan *plan, const char *attname)
{
	return find_path(plan, attname) != NULL;
}

/* The body is UTF-8; keys are compared with its bytes. */
static void
step_to_utf8(RmqJcPlan *plan, JcStep *st)
{
	if (st->key && !plan->utf8db)
	{
		st->key = pg_server_to_any(st->key, st->keylen, PG_UTF8);
		st->keylen = strlen(st->key);
	}
}

static JcNode *
tree_insert(RmqJcPlan *plan, List *steps)
{
	JcNode	   *n = plan->root;
	ListCell   *lc;

	foreach(lc, steps)
	{
		JcStep	   *st = lfirst(lc);
		JcNode	   *child = NULL;
		ListCell   *cc;

		step_to_utf8(plan, st);
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

void
rmq_jc_add_column(RmqJcPlan *plan, Relation rel, int attnum)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	JcPath	   *jp = find_path(plan, NameStr(att->attname));
	JcColumn   *col;
	Oid			func;
	bool		isvarlena;
	Node	   *def;

	if (plan->ncols == plan->cols_cap)
	{
		plan->cols_cap = Max(8, plan->cols_cap * 2);
		plan->cols = plan->cols ? repalloc(plan->cols, sizeof(JcColumn) * plan->cols_cap)
			: palloc(sizeof(JcColumn) * plan->cols_cap);
	}
	col = &plan->cols[plan->ncols++];
	memset(col, 0, sizeof(JcColumn));
	col->name = pstrdup(NameStr(att->attname));
	col->path = jp ? jp->text : NULL;
	col->node = tree_insert(plan, jp ? jp->steps : list_make1(key_step(col->name, strlen(col->name))));
	col->type = att->atttypid;
	col->typmod = att->atttypmod;
	getTypeInputInfo(col->type, &func, &col->ioparam);
	fmgr_info(func, &col->in);
	getTypeBinaryOutputInfo(col->type, &func, &isvarlena);
	fmgr_info(func, &col->send);
	col->elemtype = get_element_type(col->type);
	if (col->type == TEXTOID || (col->type == VARCHAROID && col->typmod < 0))
		col->kind = JC_TEXT;
	else if (col->type == JSONOID)
		col->kind = JC_JSON;
	else if (col->type == JSONBOID)
		col->kind = JC_JSONB;
	else if (col->type == TIMESTAMPTZOID && col->typmod < 0)
		col->kind = JC_TIMESTAMPTZ;
	else if (OidIsValid(col->elemtype))
	{
		col->kind = JC_ARRAY;
		get_typlenbyvalalign(col->elemtype, &col->elemlen, &col->elembyval, &col->elemalign);
		getTypeInputInfo(col->elemtype, &func, &col->elem_ioparam);
		fmgr_info(func, &col->elem_in);
		col->elem_json = col->elemtype == JSONOID || col->elemtype == JSONBOID;
	}
	else
		col->kind = JC_INPUT;
	/* Absent from a body, the column gets what COPY would have given it. */
	def = build_column_default(rel, attnum);
	if (def)
		col->dflt = ExecPrepareExpr((Expr *) def, plan->estate);
}

int
rmq_jc_ncolumns(RmqJcPlan *plan)
{
	return plan->ncols;
}

const char *
rmq_jc_column_name(RmqJcPlan *plan, int i)
{
	return plan->cols[i].name;
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

void
rmq_jc_end(RmqJcPlan *plan)
{
	FreeExecutorState(plan->estate);
	MemoryContextDelete(plan->row_cxt);
}

/* ---------------------------------------------------------------- the scan */

static void pg_attribute_noreturn()
not_json(RmqJcPlan *plan, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("body is not JSON: %s at byte %d", what, (int) (plan->p - plan->s))));
}

static void pg_attribute_noreturn()
unexpected(RmqJcPlan *plan)
{
	unsigned char c = (unsigned char) *plan->p;

	not_json(plan, c > 0x20 && c < 0x7f ? psprintf("unexpected \"%c\"", c) : "an unexpected character");
}

static inline char
peek(RmqJcPlan *plan)
{
	return plan->p < plan->end ? *plan->p : '\0';
}

static inline void
skip_ws(RmqJcPlan *plan)
{
	while (plan->p < plan->end &&
		   (*plan->p == ' ' || *plan->p == '\n' || *plan->p == '\r' || *plan->p == '\t'))
		plan->p++;
}

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A string; the scan is at its opening quote.  Returns whether it has escapes. */
static bool
scan_string(RmqJcPlan *plan)
{
	bool		escaped = false;

	plan->p++;
	for (;;)
	{
		unsigned char c = (unsigned char) peek(plan);

		if (c == '"')
			break;
		if (plan->p >= plan->end)
			not_json(plan, "a string is not closed");
		if (c < 0x20)
			not_json(plan, "a control character in a string");
		if (c == '\\')
		{
			escaped = true;
			plan->p++;
			switch (peek(plan))
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
						if (plan->p + i >= plan->end || !is_hex(plan->p[i]))
							not_json(plan, "\\u needs four hexadecimal digits");
					plan->p += 4;
					break;
				default:
					not_json(plan, "an invalid escape in a string");
			}
		}
		plan->p++;
	}
	plan->p++;
	return escaped;
}

static void
scan_digits(RmqJcPlan *plan)
{
	if (!isdigit((unsigned char) peek(plan)))
		not_json(plan, "a digit expected in a number");
	while (isdigit((unsigned char) peek(plan)))
		plan->p++;
}

static void
scan_number(RmqJcPlan *plan)
{
	if (peek(plan) == '-')
		plan->p++;
	if (peek(plan) == '0')
		plan->p++;
	else
		scan_digits(plan);
	if (peek(plan) == '.')
	{
		plan->p++;
		scan_digits(plan);
	}
	if (peek(plan) == 'e' || peek(plan) == 'E')
	{
		plan->p++;
		if (peek(plan) == '+' || peek(plan) == '-')
			plan->p++;
		scan_digits(plan);
	}
}

static void
scan_literal(RmqJcPlan *plan, const char *lit)
{
	size_t		n = strlen(lit);

	if ((size_t) (plan->end - plan->p) < n || memcmp(plan->p, lit, n) != 0)
		unexpected(plan);
	plan->p += n;
}

static void scan_value(RmqJcPlan *plan, JcNode *node, int depth);

static void
clear_slots(RmqJcPlan *plan, JcNode *n)
{
	if (n->hi > n->lo)
		memset(&plan->slots[n->lo], 0, sizeof(JcValue) * (n->hi - n->lo));
}

static bool unescape(const char *s, int len, StringInfo out, const char **why);

static JcNode *
find_key(RmqJcPlan *plan, JcNode *node, const char *k, int len, bool escaped)
{
	ListCell   *lc;

	if (escaped)
	{
		const char *why;

		resetStringInfo(&plan->keybuf);
		if (!unescape(k, len, &plan->keybuf, &why))
			return NULL;		/* \u0000 or a broken surrogate: no column's name */
		k = plan->keybuf.data;
		len = plan->keybuf.len;
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
scan_object(RmqJcPlan *plan, JcNode *node, int depth)
{
	plan->p++;
	skip_ws(plan);
	if (peek(plan) == '}')
	{
		plan->p++;
		return;
	}
	for (;;)
	{
		const char *k;
		bool		escaped;
		JcNode	   *child;

		if (peek(plan) != '"')
			not_json(plan, "a key expected");
		k = plan->p + 1;
		escaped = scan_string(plan);
		child = node && node->has_keys ? find_key(plan, node, k, plan->p - 1 - k, escaped) : NULL;
		skip_ws(plan);
		if (peek(plan) != ':')
			not_json(plan, "\":\" expected");
		plan->p++;
		if (child)
			clear_slots(plan, child);
		scan_value(plan, child, depth + 1);
		skip_ws(plan);
		if (peek(plan) == ',')
		{
			plan->p++;
			skip_ws(plan);
			continue;
		}
		if (peek(plan) != '}')
			not_json(plan, "\",\" or \"}\" expected");
		plan->p++;
		return;
	}
}

static void
scan_array(RmqJcPlan *plan, JcNode *node, int depth)
{
	plan->p++;
	skip_ws(plan);
	if (peek(plan) == ']')
	{
		plan->p++;
		return;
	}
	for (int i = 0;; i++)
	{
		JcNode	   *child = node && node->has_indexes ? find_index(node, i) : NULL;

		if (child)
			clear_slots(plan, child);
		scan_value(plan, child, depth + 1);
		skip_ws(plan);
		if (peek(plan) == ',')
		{
			plan->p++;
			continue;
		}
		if (peek(plan) != ']')
			not_json(plan, "\",\" or \"]\" expected");
		plan->p++;
		return;
	}
}

/* One value; node (or NULL) is what is wanted of it. */
static void
scan_value(RmqJcPlan *plan, JcNode *node, int depth)
{
	const char *start;
	JvType		t;
	bool		escaped = false;

	if (depth > JC_MAX_DEPTH)
		not_json(plan, psprintf("nested deeper than %d levels", JC_MAX_DEPTH));
	check_stack_depth();
	skip_ws(plan);
	start = plan->p;
	switch (peek(plan))
	{
		case '{':
			t = JV_OBJECT;
			scan_object(plan, node, depth);
			break;
		case '[':
			t = JV_ARRAY;
			scan_array(plan, node, depth);
			break;
		case '"':
			t = JV_STRING;
			escaped = scan_string(plan);
			break;
		case 't':
			t = JV_BOOL;
			scan_literal(plan, "true");
			break;
		case 'f':
			t = JV_BOOL;
			scan_literal(plan, "false");
			break;
		case 'n':
			t = JV_NULL;
			scan_literal(plan, "null");
			break;
		case '\0':
			not_json(plan, "the end came where a value was expected");
		default:
			if (peek(plan) != '-' && !isdigit((unsigned char) peek(plan)))
				unexpected(plan);
			t = JV_NUMBER;
			scan_number(plan);
	}
	if (node && node->slot >= 0)
	{
		JcValue    *v = &plan->slots[node->slot];

		v->type = t;
		v->escaped = escaped;
		v->start = start;
		v->len = plan->p - start;
	}
}

static void
scan_body(RmqJcPlan *plan, const char *body, size_t len)
{
	JvType		top;

	plan->s = plan->p = body;
	plan->end = body + len;
	/* JSON is UTF-8 (RFC 8259); this also keeps NUL out of the scan. */
	if (!pg_verify_mbstr(PG_UTF8, body, (int) len, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("body is not JSON: it is not valid UTF-8")));
	if (plan->nslots)
		memset(plan->slots, 0, sizeof(JcValue) * plan->nslots);
	skip_ws(plan);
	top = peek(plan) == '{' ? JV_OBJECT : peek(plan) == '[' ? JV_ARRAY : peek(plan) == '"' ? JV_STRING
		: peek(plan) == 't' || peek(plan) == 'f' ? JV_BOOL : peek(plan) == 'n' ? JV_NULL : JV_NUMBER;
	scan_value(plan, plan->root, 0);
	skip_ws(plan);
	if (plan->p != plan->end)
		not_json(plan, "more after the value");
	if (top != JV_OBJECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("body is a JSON %s, not an object", jv_names[top])));
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
static bool
unescape(const char *s, int len, StringInfo out, const char **why)
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

/*
 * The text an input function gets for a value: a string's characters, or
 * the JSON text of anything else (json and jsonb elements: always the JSON
 * text).  In the server's encoding, in plan->scratch.
 */
static char *
text_form(RmqJcPlan *plan, const JcValue *v, bool json_text)
{
	resetStringInfo(&plan->scratch);
	if (v->type == JV_STRING && !json_text)
	{
		const char *why;

		if (!v->escaped)
			appendBinaryStringInfo(&plan->scratch, v->start + 1, v->len - 2);
		else if (!unescape(v->start + 1, v->len - 2, &plan->scratch, &why))
			ereport(ERROR,
					(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
					 errmsg("unsupported Unicode escape sequence: %s", why)));
	}
	else
		appendBinaryStringInfo(&plan->scratch, v->start, v->len);
	if (!plan->utf8db)
		return pg_any_to_server(plan->scratch.data, plan->scratch.len, PG_UTF8);
	return plan->scratch.data;
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
arr_collect(RmqJcPlan *plan, ArrBuild *ab, int depth)
{
	int			n = 0;

	plan->p++;
	skip_ws(plan);
	if (peek(plan) == ']')
		plan->p++;
	else
		for (;;)
		{
			skip_ws(plan);
			if (peek(plan) == '[')
			{
				if (depth + 1 >= MAXDIM)
					ereport(ERROR,
							(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
							 errmsg("a JSON array of more than %d dimensions", MAXDIM)));
				if (ab->ndims && ab->ndims <= depth + 1)
					goto ragged;
				arr_collect(plan, ab, depth + 1);
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
				e->start = plan->p;
				e->escaped = false;
				switch (peek(plan))
				{
					case '"':
						e->type = JV_STRING;
						e->escaped = scan_string(plan);
						break;
					case 'n':
						e->type = JV_NULL;
						scan_literal(plan, "null");
						break;
					case '{':
						e->type = JV_OBJECT;
						scan_value(plan, NULL, 0);
						break;
					default:
						e->type = JV_NUMBER;	/* or a boolean: the same to an input function */
						scan_value(plan, NULL, 0);
				}
				e->len = plan->p - e->start;
			}
			n++;
			skip_ws(plan);
			if (peek(plan) == ',')
			{
				plan->p++;
				continue;
			}
			plan->p++;			/* ']', as the scan found */
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

static Datum
array_value(RmqJcPlan *plan, JcColumn *col, const JcValue *v)
{
	ArrBuild	ab = {0};
	const char *save_end = plan->end;
	Datum	   *values;
	bool	   *nulls;
	int			lbs[MAXDIM];

	plan->p = v->start;
	plan->end = v->start + v->len;
	arr_collect(plan, &ab, 0);
	plan->end = save_end;
	if (ab.nelems == 0)
		return PointerGetDatum(construct_empty_array(col->elemtype));
	values = palloc(sizeof(Datum) * ab.nelems);
	nulls = palloc(sizeof(bool) * ab.nelems);
	for (int i = 0; i < ab.nelems; i++)
	{
		nulls[i] = ab.elems[i].type == JV_NULL;
		values[i] = nulls[i] ? (Datum) 0
			: InputFunctionCall(&col->elem_in, text_form(plan, &ab.elems[i], col->elem_json),
								col->elem_ioparam, col->typmod);
	}
	for (int d = 0; d < ab.ndims; d++)
		lbs[d] = 1;
	return PointerGetDatum(construct_md_array(values, nulls, ab.ndims, ab.dims, lbs, col->elemtype,
											  col->elemlen, col->elembyval, col->elemalign));
}

static bool
digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

/*
 * What timestamptz_in makes of "YYYY-MM-DD(T| )HH:MM:SS[.ffffff](Z|+HH[[:]MM])",
 * for a fraction of its cost (it was most of a typical row's conversion).
 * The zone is in the text, so the session's TimeZone plays no part.
 * Anything else, or out of range, is false: timestamptz_in decides.
 */
static bool
iso_timestamptz(const char *s, int len, TimestampTz *out)
{
	const char *end = s + len;
	int			y,
				mo,
				d,
				h,
				mi,
				sec,
				usec = 0,
				zh = 0,
				zm = 0,
				zsign = 1;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (len < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
		!digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != ' ') || !digits(s + 11, 2, &h) || s[13] != ':' ||
		!digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
		return false;
	s += 19;
	if (*s == '.')
	{
		int			n = 0;

		for (s++; s < end && *s >= '0' && *s <= '9'; s++, n++)
			usec = usec * 10 + (*s - '0');
		if (n == 0 || n > 6)
			return false;		/* more digits round: timestamptz_in's job */
		while (n++ < 6)
			usec *= 10;
	}
	if (s + 1 == end && *s == 'Z')
		;
	else if (s < end && (*s == '+' || *s == '-'))
	{
		zsign = *s == '-' ? -1 : 1;
		if (end - s == 3 && digits(s + 1, 2, &zh))
			;
		else if (end - s == 5 && digits(s + 1, 2, &zh) && digits(s + 3, 2, &zm))
			;
		else if (end - s == 6 && digits(s + 1, 2, &zh) && s[3] == ':' && digits(s + 4, 2, &zm))
			;
		else
			return false;
	}
	else
		return false;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 ||
		d > mdays[mo - 1] + (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) ||
		h > 23 || mi > 59 || sec > 59 || zh > 14 || zm > 59)
		return false;
	*out = ((int64) (date2j(y, mo, d) - POSTGRES_EPOCH_JDATE) * SECS_PER_DAY +
			h * SECS_PER_HOUR + mi * SECS_PER_MINUTE + sec -
			zsign * (zh * SECS_PER_HOUR + zm * SECS_PER_MINUTE)) * USECS_PER_SEC + usec;
	return true;
}

static void
put_column(RmqJcPlan *plan, JcColumn *col, StringInfo out)
{
	const JcValue *v = &plan->slots[col->node->slot];

	if (v->type == JV_MISSING && col->dflt)
	{
		bool		isnull;
		Datum		d = ExecEvalExprSwitchContext(col->dflt, plan->econtext, &isnull);

		if (isnull)
			put32(out, (uint32) -1);
		else
			put_datum(col, out, d);
		return;
	}
	if (v->type == JV_MISSING || v->type == JV_NULL)
	{
		put32(out, (uint32) -1);
		return;
	}
	switch (col->kind)
	{
		case JC_JSON:
		case JC_JSONB:
			put_text(plan, out, v->start, v->len, col->kind == JC_JSONB);
			return;
		case JC_TEXT:
			if (v->type == JV_STRING && !v->escaped)
				put_text(plan, out, v->start + 1, v->len - 2, false);
			else if (v->type != JV_STRING)
				put_text(plan, out, v->start, v->len, false);
			else
			{
				char	   *s = text_form(plan, v, false);

				put32(out, strlen(s));
				appendStringInfoString(out, s);
			}
			return;
		case JC_TIMESTAMPTZ:
			{
				TimestampTz ts;

				if (v->type == JV_STRING && !v->escaped && iso_timestamptz(v->start + 1, v->len - 2, &ts))
				{
					put32(out, 8);
					put64(out, (uint64) ts);
					return;
				}
			}
			put_datum(col, out, InputFunctionCall(&col->in, text_form(plan, v, false), col->ioparam, col->typmod));
			return;
		case JC_ARRAY:
			if (v->type == JV_ARRAY)
			{
				put_datum(col, out, array_value(plan, col, v));
				return;
			}
			/* a string such as "{1,2}" goes to array_in */
			/* FALLTHROUGH */
		case JC_INPUT:
			put_datum(col, out, InputFunctionCall(&col->in, text_form(plan, v, false), col->ioparam, col->typmod));
			return;
	}
}

void
rmq_jc_put_row(RmqJcPlan *plan, const char *body, size_t len, StringInfo out)
{
	MemoryContext outer = MemoryContextSwitchTo(plan->row_cxt);

	if (!plan->numbered)
	{
		int			next = 0;

		number_slots(plan->root, &next);
		plan->nslots = next;
		plan->slots = MemoryContextAllocZero(GetMemoryChunkContext(plan), sizeof(JcValue) * Max(next, 1));
		plan->numbered = true;
	}
	plan->cur = NULL;
	PG_TRY();
	{
		scan_body(plan, body, len);
		for (int i = 0; i < plan->ncols; i++)
		{
			plan->cur = &plan->cols[i];
			put_column(plan, plan->cur, out);
		}
	}
	PG_CATCH();
	{
		JcColumn   *col = plan->cur;
		ErrorData  *ed;

		if (col == NULL)
			PG_RE_THROW();
		MemoryContextSwitchTo(outer);
		ed = CopyErrorData();
		FlushErrorState();
		ed->message = col->path
			? psprintf("column \"%s\" (%s, from %s): %s", col->name, format_type_with_typemod(col->type, col->typmod),
					   col->path, ed->message)
			: psprintf("column \"%s\" (%s): %s", col->name, format_type_with_typemod(col->type, col->typmod),
					   ed->message);
		ReThrowError(ed);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(outer);
	MemoryContextReset(plan->row_cxt);
	ResetExprContext(plan->econtext);
}

/* ---------------------------------------------------------------- SQL */

/*
 * rmq_check_json_columns(target regclass, format text, options jsonb): at
 * rmq_create_stream and rmq_alter_stream, what the worker would find wrong
 * with json_paths and the target, said at once.  A target that no longer
 * exists (NULL), or that the caller may not write, is not looked at (nor
 * locked): the worker, and rmq_create_stream's own check, report those.
 */
PG_FUNCTION_INFO_V1(rmq_check_json_columns);
Datum
rmq_check_json_columns(PG_FUNCTION_ARGS)
{
	char	   *format = PG_ARGISNULL(1) ? "message" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *paths = PG_ARGISNULL(2) ? NULL : rmq_jc_paths_option(PG_GETARG_JSONB_P(2));
	Relation	rel;

	if (strcmp(format, "json_columns") != 0)
	{
		if (paths)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream option \"json_paths\" needs format => 'json_columns', not '%s'", format)));
		PG_RETURN_VOID();
	}
	if (PG_ARGISNULL(0) || pg_class_aclcheck(PG_GETARG_OID(0), GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		PG_RETURN_VOID();
	rel = table_open(PG_GETARG_OID(0), AccessShareLock);
	rmq_sink_check(rel, RMQ_FORMAT_JSON_COLUMNS, paths);
	table_close(rel, AccessShareLock);
	PG_RETURN_VOID();
}
