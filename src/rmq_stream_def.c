/*
 * rmq_stream_def.c — a stream worker's view of its row in rmq_stream: the
 * definition and options it runs with, whether the stream is still its to
 * run (not paused, dropped, reset or resumed since it started), and where
 * it says what went wrong.  Also the SPI helpers every worker file uses.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "rmq_json_columns.h"
#include "rmq_worker.h"

/* A string as a JSON string literal. */
static char *
quote_json_string(const char *v)
{
	StringInfoData b;

	initStringInfo(&b);
	escape_json(&b, v);
	return b.data;
}

static int64
opt_int(Jsonb *o, const char *key, int64 def)
{
	const char *s = rmq_jsonb_text(o, key);

	return s ? strtoll(s, NULL, 10) : def;
}

static bool
opt_bool(Jsonb *o, const char *key, bool def)
{
	const char *s = rmq_jsonb_text(o, key);

	return s ? strcmp(s, "true") == 0 : def;
}

Datum
rmq_text_datum(const char *s)
{
	return CStringGetTextDatum(s);
}

Datum
rmq_bytea_datum(const char *p, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), p, len);
	return PointerGetDatum(b);
}

/*
 * A worker's transaction with SPI and a snapshot.  A background worker
 * never gets a client's statement, so nothing else advances the statement
 * start time that now() is taken from: without it now() would stay the
 * worker's start time in every column a batch or a status update writes
 * (a target table's "DEFAULT now()", last_batch_at, health_since).
 */
void
rmq_xact_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

void
rmq_xact_commit(void)
{
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* SPI must be connected.  Runs a query with text/int parameters. */
int
rmq_spi_exec(const char *sql, int nargs, Oid *types, Datum *vals, bool readonly)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, vals, NULL, readonly, 0);

	if (rc < 0)
		elog(ERROR, "SPI failed (%s) for: %s", SPI_result_code_string(rc), sql);
	return rc;
}

char *
rmq_spi_text(int row, int col)
{
	if ((uint64) row >= SPI_processed || SPI_tuptable == NULL)
		elog(ERROR, "rocketmq_stream: expected a row from SPI, got %d", (int) SPI_processed);
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/*
 * Read the stream's definition.  False if it no longer exists, is not
 * running, or was reset/resumed since this worker started.
 */
bool
rmq_stream_load(Stream *s, MemoryContext cxt)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {rmq_text_datum(s->def.name)};
	bool		ok = false;
	MemoryContext old;

	rmq_xact_begin();
	rmq_spi_exec("SELECT quote_ident(n.nspname), e.extversion = '0.1.0' FROM pg_catalog.pg_extension e "
			 "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'rocketmq_stream'",
			 0, NULL, NULL, true);
	if (SPI_processed == 1)
	{
		char	   *schema = rmq_spi_text(0, 1);

		/*
		 * A library newer than the catalog (restarted, not yet updated):
		 * streams go on, writing only what the old tables have.
		 */
		s->def.catalog_010 = strcmp(rmq_spi_text(0, 2), "t") == 0;

		/* Known before anything else can fail, so the error can be recorded. */
		s->def.schema = MemoryContextStrdup(cxt, schema);
		rmq_spi_exec(psprintf("SELECT topic, consumer_group, target, format, handler::oid, start_from, "
						  "(extract(epoch FROM start_time) * 1000)::bigint, start_offsets, force_specific, "
						  "parallelism, queue_map, options, state, generation "
						  "FROM %s.rmq_stream WHERE name = $1", schema),
				 1, t, v, true);
		if (SPI_processed == 1 && strcmp(rmq_spi_text(0, 13), "running") == 0 &&
			atoi(rmq_spi_text(0, 14)) == s->def.generation)
		{
			char	   *fmt = rmq_spi_text(0, 4);
			char	   *so = rmq_spi_text(0, 8);
			char	   *qm = rmq_spi_text(0, 11);
			char	   *opts = rmq_spi_text(0, 12);
			char	   *h = rmq_spi_text(0, 5);
			char	   *st = rmq_spi_text(0, 7);
			Jsonb	   *o;

			old = MemoryContextSwitchTo(cxt);
			s->def.topic = pstrdup(rmq_spi_text(0, 1));
			s->def.group = pstrdup(rmq_spi_text(0, 2));
			s->def.target = pstrdup(rmq_spi_text(0, 3));
			s->def.fmt = strcmp(fmt, "json") == 0 ? RMQ_FORMAT_JSON
				: strcmp(fmt, "json_columns") == 0 ? RMQ_FORMAT_JSON_COLUMNS
				: strcmp(fmt, "handler") == 0 ? RMQ_FORMAT_HANDLER : RMQ_FORMAT_MESSAGE;
			s->def.handler = h ? (Oid) strtoul(h, NULL, 10) : InvalidOid;
			s->def.start_from = pstrdup(rmq_spi_text(0, 6));
			s->def.start_ms = st ? strtoll(st, NULL, 10) : 0;
			s->def.start_offsets = so ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(so))) : NULL;
			s->def.force_specific = strcmp(rmq_spi_text(0, 9), "t") == 0;
			s->def.parallelism = atoi(rmq_spi_text(0, 10));
			s->def.queue_map = qm ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(qm))) : NULL;
			o = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(opts)));
			/*
			 * The cluster: the stream's server (with its owner's user
			 * mapping: this worker runs as the owner), else its namesrv_addr,
			 * else the settings.  Resolved at every run: a changed server or
			 * mapping starts a new run (rmq_profile_epoch).
			 */
			s->epoch = rmq_profile_epoch;
			if (rmq_jsonb_text(o, "server"))
			{
				Jsonb	   *conn = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
																	   CStringGetDatum(psprintf("{\"server\": %s}",
																								quote_json_string(rmq_jsonb_text(o, "server"))))));

				rmq_options_init(&s->def.opts, conn);
			}
			else if (rmq_jsonb_text(o, "namesrv_addr"))
			{
				Jsonb	   *conn = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
																	   CStringGetDatum(psprintf("{\"namesrv_addr\": %s}",
																								quote_json_string(rmq_jsonb_text(o, "namesrv_addr"))))));

				rmq_options_init(&s->def.opts, conn);
			}
			else
				rmq_options_init(&s->def.opts, NULL);
			s->def.opts.pull_batch_size = (int) opt_int(o, "pull_batch_size", s->def.opts.pull_batch_size);
			s->def.opts.request_timeout_ms = (int) opt_int(o, "request_timeout", s->def.opts.request_timeout_ms);
			s->def.opts.check_crc = opt_bool(o, "check_crc", s->def.opts.check_crc);
			s->def.opts.fail_on_data_loss = opt_bool(o, "fail_on_data_loss", true);
			s->def.opts.tag_filter = rmq_jsonb_text(o, "tag_filter") ? pstrdup(rmq_jsonb_text(o, "tag_filter")) : NULL;
			s->def.batch_rows = Max(opt_int(o, "batch_rows", 10000), 1);
			s->def.batch_bytes = Max(opt_int(o, "batch_bytes", 16 * 1024 * 1024), 1);
			s->def.batch_interval = (int) Max(opt_int(o, "batch_interval", 1000), 1);
			s->def.batch_linger = (int) Max(opt_int(o, "batch_linger", 10), 0);
			s->def.opts.pull_timeout_ms = (int) opt_int(o, "pull_timeout", s->def.opts.pull_timeout_ms);
			s->def.max_rate = (double) opt_int(o, "max_rate_per_queue", 0);
			s->def.auto_commit = opt_bool(o, "auto_commit", false);
			/*
			 * Off unless asked otherwise, like a subscription's apply worker,
			 * and for the same reason: what a crash takes back is read again.
			 */
			s->def.synchronous_commit = pstrdup(rmq_jsonb_text(o, "synchronous_commit")
											? rmq_jsonb_text(o, "synchronous_commit") : "off");
			s->def.on_error = pstrdup(rmq_jsonb_text(o, "on_error") ? rmq_jsonb_text(o, "on_error") : "fail");
			s->def.membership = rmq_jsonb_text(o, "membership") &&
				strcmp(rmq_jsonb_text(o, "membership"), "group") == 0;
			/* A member's offsets on the broker are where the next owner of a queue starts. */
			if (s->def.membership)
				s->def.auto_commit = true;
			s->def.json_paths = rmq_jc_paths_option(o);
			MemoryContextSwitchTo(old);
			ok = true;
		}
	}
	rmq_xact_commit();
	return ok;
}

/* Is the stream still running, in the generation this worker was started for? */
bool
rmq_stream_current(Stream *s)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {rmq_text_datum(s->def.name)};
	bool		current;

	rmq_xact_begin();
	rmq_spi_exec(psprintf("SELECT state = 'running' AND generation = %d FROM %s.rmq_stream WHERE name = $1",
					  s->def.generation, s->def.schema), 1, t, v, true);
	current = SPI_processed == 1 && strcmp(rmq_spi_text(0, 1), "t") == 0;
	rmq_xact_commit();
	return current;
}

/*
 * What went wrong, in the stream's row.  An error that stops the stream
 * fails it; one that is retried marks the stream retrying (since the first
 * such error) and is written again only when it changes or every
 * RECORD_EVERY_MS, so a broker away for minutes is not a write a second.
 */
#define RECORD_EVERY_MS 10000

static char *recorded_msg = NULL;
static TimestampTz recorded_at = 0;

void
rmq_stream_record_error(Stream *s, const char *msg, bool fail)
{
	Oid			t[2] = {TEXTOID, TEXTOID};
	Datum		v[2] = {rmq_text_datum(s->def.name), rmq_text_datum(msg)};

	if (!fail && recorded_msg && strcmp(recorded_msg, msg) == 0 &&
		!TimestampDifferenceExceeds(recorded_at, GetCurrentTimestamp(), RECORD_EVERY_MS))
		return;
	rmq_xact_begin();
	rmq_spi_exec(psprintf("UPDATE %s.rmq_stream SET last_error = $2, last_error_at = now()%s "
						  "WHERE name = $1 AND generation = %d",
						  s->def.schema ? s->def.schema : "public",
						  s->def.catalog_010 ? (fail ? ", state = 'failed'" : "")
						  : fail ? ", state = 'failed', state_since = now(), retrying_since = NULL"
						  : ", retrying_since = coalesce(retrying_since, now())",
						  s->def.generation),
				 2, t, v, false);
	rmq_xact_commit();
	if (recorded_msg)
		pfree(recorded_msg);
	recorded_msg = MemoryContextStrdup(TopMemoryContext, msg);
	recorded_at = GetCurrentTimestamp();
	s->retrying = !fail;
}

/*
 * This worker got past its trouble (a batch committed, or every broker
 * answers again): the stream is healthy since now, unless it was not
 * retrying.  A worker starts out assuming it may have to say so.
 */
void
rmq_stream_record_healthy(Stream *s)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {rmq_text_datum(s->def.name)};

	if (!s->retrying || s->def.schema == NULL)
		return;
	if (s->def.catalog_010)
	{
		s->retrying = false;	/* 0.1.0 keeps no health */
		return;
	}
	rmq_xact_begin();
	rmq_spi_exec(psprintf("UPDATE %s.rmq_stream SET retrying_since = NULL, healthy_since = now() "
						  "WHERE name = $1 AND generation = %d AND retrying_since IS NOT NULL",
						  s->def.schema, s->def.generation),
				 1, t, v, false);
	rmq_xact_commit();
	s->retrying = false;
	if (recorded_msg)
		pfree(recorded_msg);
	recorded_msg = NULL;
}

/*
 * Should a warning about retried trouble be logged now?  The first time a
 * cause is seen, then at most once a minute with how many were held back:
 * twenty broker restarts must not leave hundreds of lines.  Causes are
 * keyed by their text; a few dozen distinct ones are remembered.
 */
#define WARN_EVERY_MS 60000
#define WARN_CAUSES 32

typedef struct WarnCause
{
	uint32		hash;
	TimestampTz at;
	int			held;
} WarnCause;

static WarnCause warn_causes[WARN_CAUSES];

bool
rmq_warn_due(const char *cause, int *held_back)
{
	uint32		h = 5381;
	WarnCause  *slot = NULL;
	TimestampTz now = GetCurrentTimestamp();

	for (const char *p = cause; *p; p++)
		h = h * 33 + (unsigned char) *p;
	h |= 1;						/* 0 marks a free slot */
	for (int i = 0; i < WARN_CAUSES && slot == NULL; i++)
		if (warn_causes[i].hash == h)
			slot = &warn_causes[i];
	if (slot == NULL)
	{
		/* A new cause takes the free or the oldest slot. */
		slot = &warn_causes[0];
		for (int i = 1; i < WARN_CAUSES; i++)
			if (warn_causes[i].at < slot->at)
				slot = &warn_causes[i];
		slot->hash = h;
		slot->at = 0;
		slot->held = 0;
	}
	if (slot->at != 0 && !TimestampDifferenceExceeds(slot->at, now, WARN_EVERY_MS))
	{
		slot->held++;
		return false;
	}
	*held_back = slot->held;
	slot->held = 0;
	slot->at = now;
	return true;
}
