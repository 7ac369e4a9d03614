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
 * it is JSON and notes where each wanted value lies (rmq_json_scan.c, the
 * wanted paths from json_paths, rmq_json_paths.c, and the column names),
 * then only those values are converted, straight into COPY binary fields.
 * Types whose binary form is the text itself (text, json, jsonb) skip the
 * input function, and so do ISO 8601 times with a zone.
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
#include "rmq_json_scan.h"
#include "rmq_stream.h"

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
	int			nslots;
	bool		numbered;
	JcScan		scan;
	JcColumn   *cur;			/* being converted: errors name it */
	StringInfoData scratch;		/* a value's text */
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

/* ---------------------------------------------------------------- plan */

RmqJcPlan *
rmq_jc_begin(Relation rel, Jsonb *json_paths)
{
	RmqJcPlan  *plan = palloc0(sizeof(RmqJcPlan));

	plan->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "rocketmq_stream json_columns row",
										  ALLOCSET_DEFAULT_SIZES);
	plan->estate = CreateExecutorState();
	plan->econtext = GetPerTupleExprContext(plan->estate);
	plan->utf8db = GetDatabaseEncoding() == PG_UTF8;
	plan->root = palloc0(sizeof(JcNode));
	plan->root->slot = -1;
	initStringInfo(&plan->scratch);
	initStringInfo(&plan->scan.keybuf);
	plan->paths = json_paths ? jc_read_paths(rel, json_paths) : NIL;
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
	col->node = jc_tree_insert(plan->root, jp ? jp->steps : list_make1(jc_key_step(col->name, strlen(col->name))));
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

void
rmq_jc_end(RmqJcPlan *plan)
{
	FreeExecutorState(plan->estate);
	MemoryContextDelete(plan->row_cxt);
}

/* ---------------------------------------------------------------- values */

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
		else if (!jc_unescape(v->start + 1, v->len - 2, &plan->scratch, &why))
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

/* A JSON array into an array of the column's type, element by element. */
static Datum
array_value(RmqJcPlan *plan, JcColumn *col, const JcValue *v)
{
	int			ndims,
				nelems,
				dims[MAXDIM],
				lbs[MAXDIM];
	JcValue    *elems = jc_array_elements(&plan->scan, v, &ndims, dims, &nelems);
	Datum	   *values;
	bool	   *nulls;

	if (nelems == 0)
		return PointerGetDatum(construct_empty_array(col->elemtype));
	values = palloc(sizeof(Datum) * nelems);
	nulls = palloc(sizeof(bool) * nelems);
	for (int i = 0; i < nelems; i++)
	{
		nulls[i] = elems[i].type == JV_NULL;
		values[i] = nulls[i] ? (Datum) 0
			: InputFunctionCall(&col->elem_in, text_form(plan, &elems[i], col->elem_json),
								col->elem_ioparam, col->typmod);
	}
	for (int d = 0; d < ndims; d++)
		lbs[d] = 1;
	return PointerGetDatum(construct_md_array(values, nulls, ndims, dims, lbs, col->elemtype,
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
	const JcValue *v = &plan->scan.slots[col->node->slot];

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
		plan->nslots = jc_number_slots(plan->root);
		plan->scan.slots = MemoryContextAllocZero(GetMemoryChunkContext(plan),
												  sizeof(JcValue) * Max(plan->nslots, 1));
		plan->numbered = true;
	}
	plan->cur = NULL;
	PG_TRY();
	{
		jc_scan_body(&plan->scan, plan->root, plan->nslots, body, len);
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
