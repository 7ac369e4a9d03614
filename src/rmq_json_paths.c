/*
 * rmq_json_paths.c — the stream option json_paths of format json_columns:
 * target columns mapped to paths in the body, "$.order.total",
 * "$.items[0].sku", '$."a key"', or ["items", 0, "sku"].  Checked against
 * the target at rmq_create_stream and rmq_alter_stream and at every batch.
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

#include "rmq_json_columns.h"
#include "rmq_json_scan.h"

static bool
ident_char(char c)
{
	return c != '.' && c != '[' && c != ']' && c != '"' && c != '\'' && !isspace((unsigned char) c) && c != '\0';
}

JcStep *
jc_key_step(const char *s, int len)
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
			steps = lappend(steps, jc_key_step(k.data, k.len));
		}
		else if (*p == '.')
		{
			const char *k = ++p;

			while (ident_char(*p))
				p++;
			if (p == k)
				bad_path(column, path, "a key is empty (quote keys that hold . [ ] quotes or spaces)");
			steps = lappend(steps, jc_key_step(k, p - k));
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
			steps = lappend(steps, jc_key_step(v.val.string.val, v.val.string.len));
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

/* json_paths: its columns must be the target's, and not generated. */
List *
jc_read_paths(Relation rel, Jsonb *json_paths)
{
	TupleDesc	td = RelationGetDescr(rel);
	List	   *paths = NIL;

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
				paths = lappend(paths, jp);
			}
		}
	}
	return paths;
}
