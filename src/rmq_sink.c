/*
 * rmq_sink.c — where a batch's messages go.
 *
 * Formats message, json and json_columns feed PostgreSQL's own COPY FROM
 * machinery with rows in COPY binary format (as logical replication's table
 * sync does), so triggers, constraints, indexes and partitioned targets
 * behave as for any COPY, at multi-insert speed.  The checks COPY itself
 * would make are repeated here: INSERT privilege, and no row-level security.
 * json_columns' fields from the body come from rmq_json_columns.c.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "commands/copyfrom_internal.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/regproc.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "rmq_json_columns.h"
#include "rmq_sql.h"
#include "rmq_stream.h"

/* The body as jsonb (formats json, json_columns): beside the 16 columns. */
#define BODY_JSONB RMQ_MESSAGE_NATTS

/* The standard message columns, in rmq_message order. */
static const struct
{
	const char *name;
	Oid			type;
}			std_cols[RMQ_MESSAGE_NATTS] = {
	{"topic", TEXTOID}, {"broker", TEXTOID}, {"queue_id", INT4OID}, {"queue_offset", INT8OID},
	{"msg_id", TEXTOID}, {"unique_key", TEXTOID}, {"keys", TEXTARRAYOID}, {"tags", TEXTOID},
	{"body", BYTEAOID}, {"properties", JSONBOID}, {"born_timestamp", TIMESTAMPTZOID},
	{"born_host", TEXTOID}, {"store_timestamp", TIMESTAMPTZOID}, {"store_host", TEXTOID},
	{"reconsume_times", INT4OID}, {"properties_raw", BYTEAOID}
};

/* COPY's data source callback has no argument: the buffer being copied. */
static StringInfo copy_src = NULL;

static int
copy_read(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_src->len - copy_src->cursor);

	memcpy(outbuf, copy_src->data + copy_src->cursor, n);
	copy_src->cursor += n;
	return n;
}

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

static void
put_bytes(StringInfo b, const char *s, size_t len)
{
	put32(b, (uint32) len);
	appendBinaryStringInfo(b, s, len);
}

static void
put_text(StringInfo b, const char *s)
{
	if (s == NULL)
		put32(b, (uint32) -1);
	else
		put_bytes(b, s, strlen(s));
}

static void
put_json_str(StringInfo b, const char *s)
{
	appendStringInfoChar(b, '"');
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if (*p == '"' || *p == '\\')
		{
			appendStringInfoChar(b, '\\');
			appendStringInfoChar(b, (char) *p);
		}
		else if (*p < 0x20)
			appendStringInfo(b, "\\u%04x", *p);
		else
			appendStringInfoChar(b, (char) *p);
	}
	appendStringInfoChar(b, '"');
}

/* One field in binary COPY format. */
static void
put_field(StringInfo b, int col, const RmqBatchMsg *bm, StringInfo tmp)
{
	const RmqMessage *m = &bm->m;

	switch (col)
	{
		case 0:
			put_text(b, bm->cursor->topic);
			break;
		case 1:
			put_text(b, bm->cursor->broker);
			break;
		case 2:
			put32(b, 4);
			put32(b, (uint32) m->queue_id);
			break;
		case 3:
			put32(b, 8);
			put64(b, (uint64) m->queue_offset);
			break;
		case 4:
			put_text(b, m->msg_id[0] ? m->msg_id : NULL);
			break;
		case 5:
			put_text(b, rmq_msg_prop(m, "UNIQ_KEY"));
			break;
		case 6:
			{
				const char *keys = rmq_msg_prop(m, "KEYS");
				int			n = 0;

				if (keys == NULL)
				{
					put32(b, (uint32) -1);
					break;
				}
				resetStringInfo(tmp);
				for (const char *p = keys; *p;)
				{
					const char *sp = strchr(p, ' ');
					size_t		len = sp ? (size_t) (sp - p) : strlen(p);

					if (len > 0)
					{
						put_bytes(tmp, p, len);
						n++;
					}
					p += len + (sp ? 1 : 0);
				}
				/* array_recv: ndim, hasnull, element type, dim, lower bound */
				put32(b, 20 + tmp->len);
				put32(b, 1);
				put32(b, 0);
				put32(b, TEXTOID);
				put32(b, n);
				put32(b, 1);
				appendBinaryStringInfo(b, tmp->data, tmp->len);
				break;
			}
		case 7:
			put_text(b, rmq_msg_prop(m, "TAGS"));
			break;
		case BODY_JSONB:
			/* jsonb_recv: version byte, then the JSON text */
			put32(b, m->body_len + 1);
			appendStringInfoChar(b, 1);
			appendBinaryStringInfo(b, m->body, m->body_len);
			break;
		case 8:
			put_bytes(b, m->body, m->body_len);
			break;
		case 9:
			resetStringInfo(tmp);
			appendStringInfoChar(tmp, 1);
			appendStringInfoChar(tmp, '{');
			for (int i = 0; i < m->nprops; i++)
			{
				if (i > 0)
					appendStringInfoChar(tmp, ',');
				put_json_str(tmp, m->prop_keys[i]);
				appendStringInfoChar(tmp, ':');
				put_json_str(tmp, m->prop_values[i]);
			}
			appendStringInfoChar(tmp, '}');
			put_bytes(b, tmp->data, tmp->len);
			break;
		case 10:
		case 12:
			put32(b, 8);
			put64(b, (uint64) rmq_ms_to_timestamptz(col == 10 ? m->born_timestamp : m->store_timestamp));
			break;
		case 11:
			put_text(b, m->born_host);
			break;
		case 13:
			put_text(b, m->store_host);
			break;
		case 14:
			put32(b, 4);
			put32(b, (uint32) m->reconsume_times);
			break;
		case 15:
			if (m->props_lossy)
				put_bytes(b, m->props_raw, m->props_len);
			else
				put32(b, (uint32) -1);
			break;
	}
}

/*
 * Which standard column each target column takes, checking types.  Under
 * json_columns (*jc) a column named in json_paths is the body's, then a
 * standard name is the message's, then any other column is the body's: the
 * body's columns follow the standard ones in COPY's column list.
 */
static List *
map_columns(Relation rel, RmqFormat fmt, Jsonb *json_paths, int *cols, int *ncols, RmqJcPlan **jc)
{
	TupleDesc	td = RelationGetDescr(rel);
	List	   *names = NIL;

	*ncols = 0;
	*jc = fmt == RMQ_FORMAT_JSON_COLUMNS ? rmq_jc_begin(rel, json_paths) : NULL;
	for (int a = 0; a < td->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(td, a);
		bool		standard = false;

		if (att->attisdropped || att->attgenerated)
			continue;
		if (*jc && rmq_jc_has_path(*jc, NameStr(att->attname)))
		{
			rmq_jc_add_column(*jc, rel, a + 1);
			continue;
		}
		for (int c = 0; c < RMQ_MESSAGE_NATTS; c++)
		{
			Oid			want = std_cols[c].type;

			if (strcmp(NameStr(att->attname), std_cols[c].name) != 0)
				continue;
			standard = true;
			if (c == 8 && (fmt == RMQ_FORMAT_JSON || (fmt == RMQ_FORMAT_JSON_COLUMNS && att->atttypid == JSONBOID)))
				want = JSONBOID;
			if (att->atttypid != want)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("column \"%s\" of stream target \"%s\" has type %s, but the stream writes %s",
								std_cols[c].name, RelationGetRelationName(rel),
								format_type_be(att->atttypid), format_type_be(want)),
						 *jc ? errhint("To fill it from the message body instead, name it in the stream option json_paths, "
									   "e.g. {\"json_paths\": {\"%s\": \"$.%s\"}}.", std_cols[c].name, std_cols[c].name) : 0));
			cols[(*ncols)++] = c == 8 && want == JSONBOID ? BODY_JSONB : c;
			names = lappend(names, makeString(pstrdup(std_cols[c].name)));
		}
		if (*jc && !standard)
			rmq_jc_add_column(*jc, rel, a + 1);
	}
	for (int i = 0; *jc && i < rmq_jc_ncolumns(*jc); i++)
		names = lappend(names, makeString(pstrdup(rmq_jc_column_name(*jc, i))));
	if (*ncols == 0 && (*jc == NULL || rmq_jc_ncolumns(*jc) == 0))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("stream target \"%s\" has none of the message columns",
						RelationGetRelationName(rel)),
				 errhint("Give it columns named like those of rmq_create_rdd, e.g. body bytea, queue_offset bigint.")));
	return names;
}

/* Would a stream of this format take this target? */
static void
sink_check(Relation rel, RmqFormat fmt, Jsonb *json_paths)
{
	int			cols[RMQ_MESSAGE_NATTS];
	int			ncols;
	RmqJcPlan  *jc;

	(void) map_columns(rel, fmt, json_paths, cols, &ncols, &jc);
	if (jc)
		rmq_jc_end(jc);
}

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
	sink_check(rel, RMQ_FORMAT_JSON_COLUMNS, paths);
	table_close(rel, AccessShareLock);
	PG_RETURN_VOID();
}

/*
 * CopyFrom, naming the column in the message of an error its input raises
 * (only the context does otherwise, and rmq_dead_letter keeps the message).
 */
static uint64
copy_from_naming_column(CopyFromState cstate)
{
	MemoryContext cxt = CurrentMemoryContext;
	uint64		done = 0;

	PG_TRY();
	{
		done = CopyFrom(cstate);
	}
	PG_CATCH();
	{
		ErrorData  *ed;
		const char *att = cstate->cur_attname;

		if (att == NULL)
			PG_RE_THROW();
		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		FlushErrorState();
		ed->message = psprintf("column \"%s\": %s", att, ed->message);
		ReThrowError(ed);
	}
	PG_END_TRY();
	return done;
}

uint64
rmq_sink_copy(const char *target, RmqFormat fmt, Jsonb *json_paths, RmqBatchMsg *msgs, int n)
{
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(target));
	Relation	rel = table_openrv(rv, RowExclusiveLock);
	AclResult	acl;
	int			cols[RMQ_MESSAGE_NATTS];
	int			ncols;
	RmqJcPlan  *jc;
	List	   *names;
	StringInfoData buf,
				tmp;
	CopyFromState cstate;
	ParseState *pstate;
	uint64		done;
	static const char sig[11] = "PGCOPY\n\377\r\n\0";

	acl = pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_INSERT);
	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, get_relkind_objtype(rel->rd_rel->relkind), RelationGetRelationName(rel));
	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("stream target \"%s\" has row-level security enabled", RelationGetRelationName(rel)),
				 errdetail("Streams insert through COPY FROM, which does not support row-level security.")));
	rmq_target_check(rel);
	names = map_columns(rel, fmt, json_paths, cols, &ncols, &jc);

	initStringInfo(&buf);
	initStringInfo(&tmp);
	appendBinaryStringInfo(&buf, sig, 11);
	put32(&buf, 0);				/* flags */
	put32(&buf, 0);				/* header extension length */
	for (int i = 0; i < n; i++)
	{
		uint16		nf = pg_hton16((uint16) (ncols + (jc ? rmq_jc_ncolumns(jc) : 0)));

		appendBinaryStringInfo(&buf, (char *) &nf, 2);
		for (int c = 0; c < ncols; c++)
			put_field(&buf, cols[c], &msgs[i], &tmp);
		if (jc)
			rmq_jc_put_row(jc, msgs[i].m.body, msgs[i].m.body_len, &buf);
	}
	appendBinaryStringInfo(&buf, "\377\377", 2);

	copy_src = &buf;
	/* CopyFrom finds its result relation in the range table. */
	pstate = make_parsestate(NULL);
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_read, names,
						   list_make1(makeDefElem("format", (Node *) makeString("binary"), -1)));
	done = jc ? copy_from_naming_column(cstate) : CopyFrom(cstate);
	EndCopyFrom(cstate);
	copy_src = NULL;
	if (jc)
		rmq_jc_end(jc);
	table_close(rel, NoLock);
	return done;
}

/* A type of this extension, wherever it was installed (SPI connected). */
static Oid
ext_type(const char *name)
{
	Oid			argt[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};
	bool		isnull;
	Datum		d;

	if (SPI_execute_with_args("SELECT t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_extension e "
							  "ON t.typnamespace = e.extnamespace "
							  "WHERE e.extname = 'rocketmq_stream' AND t.typname = $1",
							  1, argt, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "type %s of rocketmq_stream is missing", name);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return DatumGetObjectId(d);
}

void
rmq_sink_handler(Oid handler, RmqBatchMsg *msgs, int n, RmqBatchRange *ranges, int nranges)
{
	Oid			msg_type = ext_type("rmq_message");
	Oid			range_type = ext_type("rmq_offset_range");
	TupleDesc	mtd = lookup_rowtype_tupdesc_copy(msg_type, -1);
	TupleDesc	rtd = lookup_rowtype_tupdesc_copy(range_type, -1);
	Datum	   *mds = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *rds = palloc(sizeof(Datum) * Max(nranges, 1));
	Datum		args[2];
	Oid			argtypes[2];
	char	   *sql;
	int			rc;

	BlessTupleDesc(mtd);
	BlessTupleDesc(rtd);
	for (int i = 0; i < n; i++)
	{
		Datum		v[RMQ_MESSAGE_NATTS];
		bool		nulls[RMQ_MESSAGE_NATTS];

		rmq_message_datums(&msgs[i].m, CStringGetTextDatum(msgs[i].cursor->topic),
						   CStringGetTextDatum(msgs[i].cursor->broker), v, nulls);
		mds[i] = HeapTupleGetDatum(heap_form_tuple(mtd, v, nulls));
	}
	for (int i = 0; i < nranges; i++)
	{
		RmqCursor  *c = ranges[i].cursor;
		Datum		v[5] = {CStringGetTextDatum(c->topic), CStringGetTextDatum(c->broker),
		Int32GetDatum(c->queue_id), Int64GetDatum(ranges[i].from), Int64GetDatum(c->next)};
		bool		nulls[5] = {false};

		rds[i] = HeapTupleGetDatum(heap_form_tuple(rtd, v, nulls));
	}
	args[0] = PointerGetDatum(construct_array(mds, n, msg_type, -1, false, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(rds, nranges, range_type, -1, false, TYPALIGN_DOUBLE));
	argtypes[0] = get_array_type(msg_type);
	argtypes[1] = get_array_type(range_type);
	sql = psprintf("SELECT %s($1, $2)", format_procedure_qualified(handler));
	/* Strip the argument list format_procedure_qualified appends. */
	*strchr(sql + 7, '(') = '\0';
	sql = psprintf("%s($1, $2)", sql);
	rc = SPI_execute_with_args(sql, 2, argtypes, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "stream handler call failed: %s", SPI_result_code_string(rc));
}
