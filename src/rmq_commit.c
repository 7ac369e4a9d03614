/*
 * rmq_commit.c — committing a stream's batch: its rows (through COPY, or the
 * handler), each queue's next offset where its stored offset ended, and a
 * row in rmq_batch, in one transaction; then, with auto_commit, the offsets
 * to the broker.  And the error policy: which errors stop a stream, which
 * are retried, and what becomes of a poison message under on_error.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "rmq_worker.h"

#define BATCH_HISTORY 1000

/* Errors that stop a stream whatever its poison-message policy. */
static bool
is_stream_error(int code)
{
	return code == ERRCODE_UNDEFINED_TABLE || code == ERRCODE_UNDEFINED_COLUMN ||
		code == ERRCODE_INSUFFICIENT_PRIVILEGE || code == ERRCODE_DATATYPE_MISMATCH ||
		code == ERRCODE_FEATURE_NOT_SUPPORTED || code == ERRCODE_UNDEFINED_FUNCTION ||
		code == ERRCODE_WRONG_OBJECT_TYPE || code == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		code == ERRCODE_T_R_DEADLOCK_DETECTED || code == ERRCODE_LOCK_NOT_AVAILABLE ||
		code == ERRCODE_QUERY_CANCELED || code == ERRCODE_OUT_OF_MEMORY;
}

/*
 * Errors worth retrying: the broker or the network, or a lost race.  A topic
 * or broker missing from the route counts too: while a broker restarts the
 * name server briefly knows no route for its topics.
 */
bool
rmq_error_is_transient(int code)
{
	return code == ERRCODE_CONNECTION_FAILURE || code == ERRCODE_EXTERNAL_ROUTINE_EXCEPTION ||
		code == ERRCODE_UNDEFINED_OBJECT ||
		code == ERRCODE_PROTOCOL_VIOLATION || code == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		code == ERRCODE_T_R_DEADLOCK_DETECTED || code == ERRCODE_LOCK_NOT_AVAILABLE ||
		code == ERRCODE_OUT_OF_MEMORY || code == ERRCODE_QUERY_CANCELED;
}

static void
dead_letter(Stream *s, const RmqBatchMsg *bm, const char *error)
{
	Oid			t[13] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, BYTEAOID, TEXTOID, TEXTOID, BYTEAOID};
	Datum		v[13];
	char		nulls[13];
	bool		keep_body = strcmp(s->def.on_error, "dead_letter") == 0;
	const RmqMessage *m = &bm->m;
	StringInfoData props;

	initStringInfo(&props);
	appendStringInfoChar(&props, '{');
	for (int i = 0; i < m->nprops; i++)
	{
		if (i)
			appendStringInfoString(&props, ", ");
		escape_json(&props, m->prop_keys[i]);
		appendStringInfoString(&props, ": ");
		escape_json(&props, m->prop_values[i]);
	}
	appendStringInfoChar(&props, '}');
	memset(nulls, ' ', sizeof(nulls));
	v[0] = rmq_text_datum(s->def.name);
	v[1] = rmq_text_datum(bm->cursor->topic);
	v[2] = rmq_text_datum(bm->cursor->broker);
	v[3] = Int32GetDatum(m->queue_id);
	v[4] = Int64GetDatum(m->queue_offset);
	v[5] = m->msg_id[0] ? rmq_text_datum(m->msg_id) : (Datum) 0;
	nulls[5] = m->msg_id[0] ? ' ' : 'n';
	v[6] = rmq_msg_prop(m, "UNIQ_KEY") ? rmq_text_datum(rmq_msg_prop(m, "UNIQ_KEY")) : (Datum) 0;
	nulls[6] = rmq_msg_prop(m, "UNIQ_KEY") ? ' ' : 'n';
	v[7] = rmq_msg_prop(m, "TAGS") ? rmq_text_datum(rmq_msg_prop(m, "TAGS")) : (Datum) 0;
	nulls[7] = rmq_msg_prop(m, "TAGS") ? ' ' : 'n';
	v[8] = rmq_msg_prop(m, "KEYS") ? rmq_text_datum(rmq_msg_prop(m, "KEYS")) : (Datum) 0;
	nulls[8] = rmq_msg_prop(m, "KEYS") ? ' ' : 'n';
	v[9] = keep_body ? rmq_bytea_datum(m->body, m->body_len) : (Datum) 0;
	nulls[9] = keep_body ? ' ' : 'n';
	v[10] = rmq_text_datum(error);
	v[11] = rmq_text_datum(s->def.on_error);
	v[12] = m->props_lossy ? rmq_bytea_datum(m->props_raw, m->props_len) : (Datum) 0;
	nulls[12] = m->props_lossy ? ' ' : 'n';
	/* 0.1.0's table has no properties_raw: the last argument is left off. */
	if (SPI_execute_with_args(psprintf("INSERT INTO %s.rmq_dead_letter (stream, topic, broker, queue_id, "
									   "queue_offset, msg_id, unique_key, tags, keys, body, error, policy, "
									   "%sproperties) "
									   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, %s%s::jsonb)",
									   s->def.schema, s->def.catalog_010 ? "" : "properties_raw, ",
									   s->def.catalog_010 ? "" : "$13, ", quote_literal_cstr(props.data)),
							  s->def.catalog_010 ? 12 : 13, t, v, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record a dead letter");
}

/* One COPY in a subtransaction; the error, or NULL. */
static ErrorData *
try_copy(Stream *s, RmqBatchMsg *msgs, int n)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile ed = NULL;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		rmq_sink_copy(s->def.target, s->def.fmt, s->def.json_paths, msgs, n);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ed;
}

/*
 * COPY the batch.  If that fails on a message's data, redo it message by
 * message, each in a subtransaction.  Under "skip" and "dead_letter" a
 * failing message is set aside; under "fail" its queue stops right before
 * it (the rest of the batch still commits: other queues, and this queue's
 * earlier messages) and the stream fails after the commit, naming the first
 * such message.  *withheld counts messages not written because their queue
 * stopped.
 */
static int
sink_batch(Stream *s, int *withheld)
{
	ErrorData  *ed;
	int			skipped = 0;
	bool		fail = strcmp(s->def.on_error, "fail") == 0;

	*withheld = 0;
	if (s->batch.nmsgs == 0)
		return 0;
	ed = try_copy(s, s->batch.msgs, s->batch.nmsgs);
	if (ed == NULL)
		return 0;
	if (is_stream_error(ed->sqlerrcode))
		ReThrowError(ed);
	for (int i = 0; i < s->batch.nmsgs; i++)
	{
		RmqBatchMsg *bm = &s->batch.msgs[i];
		int64	   *stop = &s->qs[bm->cursor - s->cursors].stop_at;
		ErrorData  *one;

		/* A queue's messages come in offset order: all later ones wait. */
		if (bm->m.queue_offset >= *stop)
		{
			bm->cursor->rows--;
			(*withheld)++;
			continue;
		}
		one = try_copy(s, bm, 1);
		if (one == NULL)
			continue;
		if (is_stream_error(one->sqlerrcode))
			ReThrowError(one);
		if (fail)
		{
			if (s->batch.poison == NULL)
				s->batch.poison = psprintf("poison message at offset " INT64_FORMAT " of queue %d of broker \"%s\" (msg_id %s): %s%s%s",
									 bm->m.queue_offset, bm->m.queue_id, bm->cursor->broker,
									 bm->m.msg_id, one->message,
									 one->detail ? ": " : "", one->detail ? one->detail : "");
			*stop = bm->m.queue_offset;
			bm->cursor->next = bm->m.queue_offset;
			bm->cursor->rows--;
			(*withheld)++;
			continue;
		}
		dead_letter(s, bm, one->message);
		skipped++;
	}
	return skipped;
}

/*
 * Commit the batch.  Returns false (and commits nothing) if the stream was
 * paused, dropped, reset or resumed meanwhile.
 */
bool
rmq_commit_batch(Stream *s, TimestampTz started, const char *reason)
{
	StringInfoData ranges;
	int			skipped = 0;
	int			withheld = 0;
	bool		current;
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {rmq_text_datum(s->def.name)};

	rmq_member_confirm_locks(s);
	rmq_xact_begin();

	/* Serialises with rmq_reset_stream/rmq_pause_stream, which update it. */
	rmq_spi_exec(psprintf("SELECT state = 'running' AND generation = %d FROM %s.rmq_stream "
					  "WHERE name = $1 FOR SHARE", s->def.generation, s->def.schema), 1, t, v, false);
	current = SPI_processed == 1 && strcmp(rmq_spi_text(0, 1), "t") == 0;
	if (!current)
	{
		PopActiveSnapshot();
		SPI_finish();
		AbortCurrentTransaction();
		return false;
	}

	if (s->def.fmt == RMQ_FORMAT_HANDLER)
	{
		RmqBatchRange *br = palloc(sizeof(RmqBatchRange) * Max(s->ncursors, 1));
		int			nbr = 0;

		for (int i = 0; i < s->ncursors; i++)
			if (s->cursors[i].next != s->qs[i].from)
			{
				br[nbr].cursor = &s->cursors[i];
				br[nbr].from = s->qs[i].from;
				nbr++;
			}
		rmq_sink_handler(s->def.handler, s->batch.msgs, s->batch.nmsgs, br, nbr);
	}
	else
		skipped = sink_batch(s, &withheld);
	for (int i = 0; i < s->batch.ndamaged; i++)
	{
		RmqBatchMsg *bm = &s->batch.damaged[i];

		dead_letter(s, bm, psprintf("could not decode message: %s", bm->m.damage));
	}

	initStringInfo(&ranges);
	appendStringInfoChar(&ranges, '[');
	for (int i = 0; i < s->ncursors; i++)
	{
		RmqCursor  *c = &s->cursors[i];
		Oid			ot[7] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID, INT8OID, INT8OID};
		Datum		ov[7] = {rmq_text_datum(s->def.group), rmq_text_datum(c->topic), rmq_text_datum(c->broker),
		Int32GetDatum(c->queue_id), Int64GetDatum(c->next), Int64GetDatum(c->broker_max),
		Int64GetDatum(s->qs[i].from)};

		if (c->next == s->qs[i].from && c->broker_max < 0)
			continue;
		rmq_spi_exec(psprintf("INSERT INTO %s.rmq_offset AS o (consumer_group, topic, broker, queue_id, next_offset, "
						  "broker_max_offset) VALUES ($1, $2, $3, $4, $5, nullif($6, -1)) "
						  "ON CONFLICT (consumer_group, topic, broker, queue_id) DO UPDATE "
						  "SET next_offset = EXCLUDED.next_offset, "
						  "broker_max_offset = coalesce(EXCLUDED.broker_max_offset, o.broker_max_offset), "
						  "updated_at = now() WHERE o.next_offset = $7 RETURNING 1", s->def.schema),
				 7, ot, ov, false);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("stored offset of queue %d of broker \"%s\" for group \"%s\" is no longer " INT64_FORMAT,
							c->queue_id, c->broker, s->def.group, s->qs[i].from),
					 errdetail("Someone else committed offsets of this queue; the batch is read again.")));
		if (c->next != s->qs[i].from)
			appendStringInfo(&ranges, "%s{\"broker\": \"%s\", \"queue_id\": %d, \"from\": " INT64_FORMAT
							 ", \"until\": " INT64_FORMAT ", \"rows\": " INT64_FORMAT "}",
							 ranges.len > 1 ? ", " : "", c->broker, c->queue_id, s->qs[i].from, c->next, c->rows);
	}
	if (s->batch.lost.len)
		appendStringInfo(&ranges, "%s{\"lost\": [%s]}", ranges.len > 1 ? ", " : "", s->batch.lost.data);
	appendStringInfoChar(&ranges, ']');
	{
		Oid			bt[7] = {TEXTOID, INT4OID, TIMESTAMPTZOID, INT8OID, INT8OID, INT4OID, TEXTOID};
		Datum		bv[7] = {rmq_text_datum(s->def.name), Int32GetDatum(s->def.index), TimestampTzGetDatum(started),
		Int64GetDatum(s->batch.rows - skipped - withheld), Int64GetDatum(s->batch.bytes),
		Int32GetDatum(skipped + s->batch.ndamaged), rmq_text_datum(reason)};

		rmq_spi_exec(psprintf("INSERT INTO %s.rmq_batch (stream, worker, started_at, rows, bytes, skipped, ranges, "
						  "end_reason) VALUES ($1, $2, $3, $4, $5, $6, %s::jsonb, $7)",
						  s->def.schema, quote_literal_cstr(ranges.data)), 7, bt, bv, false);
		if (++s->batches % 100 == 0)
			rmq_spi_exec(psprintf("DELETE FROM %s.rmq_batch WHERE stream = $1 AND id <= "
							  "(SELECT id FROM %s.rmq_batch WHERE stream = $1 ORDER BY id DESC OFFSET %d LIMIT 1)",
							  s->def.schema, s->def.schema, BATCH_HISTORY), 1, t, v, false);
	}
	rmq_xact_commit();
	/*
	 * Committed here: from now on what a member hands to the broker, even
	 * if it is stopped before the next line (the broker gets it only once
	 * it is flushed to disk, below or on the way out).
	 */
	for (int i = 0; i < s->ncursors; i++)
		s->qs[i].stored = s->cursors[i].next;
	pgstat_report_stat(false);
	if (s->batch.poison)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s", s->batch.poison),
				 errhint("Fix the cause, or set on_error to skip or dead_letter with rmq_alter_stream(); then rmq_resume_stream().")));
	s->committed = true;
	rmq_stream_record_healthy(s);

	/*
	 * Advisory copy for the broker's own tools; PostgreSQL stays the truth.
	 * Never ahead of what is durable here: with synchronous_commit off a
	 * crash may take the last batches back, and a restart with no stored
	 * offset would start from the broker's.
	 */
	if (s->def.auto_commit && strcmp(s->def.synchronous_commit, "off") == 0)
		XLogFlush(XactLastCommitEnd);
	if (s->def.auto_commit)
		for (int i = 0; i < s->ncursors; i++)
		{
			RmqCursor  *c = &s->cursors[i];
			MemoryContext cxt = CurrentMemoryContext;

			/*
			 * A member also sends what an earlier try could not: the broker's
			 * offset is where the next owner of the queue starts.
			 */
			if (s->def.membership ? s->qs[i].at_broker == s->qs[i].stored : c->next == s->qs[i].from)
				continue;
			PG_TRY();
			{
				rmq_update_consumer_offset(&s->def.opts, c->addr, s->def.group, c->topic, c->broker,
										   c->queue_id, c->next);
				s->qs[i].at_broker = c->next;
			}
			PG_CATCH();
			{
				ErrorData  *ed;
				int			held;

				MemoryContextSwitchTo(cxt);
				ed = CopyErrorData();
				FlushErrorState();
				/* Advisory: PostgreSQL has the offsets; the next batch sends newer ones. */
				if (rmq_warn_due(psprintf("%s auto_commit %s", s->def.name, ed->message), &held))
					ereport(WARNING,
							(errcode(ed->sqlerrcode),
							 errmsg("stream \"%s\" could not commit its offsets to the broker (auto_commit)",
									s->def.name),
							 held ? errdetail("%s (%d more times since the last warning)", ed->message, held)
							 : errdetail("%s", ed->message)));
				FreeErrorData(ed);
			}
			PG_END_TRY();
		}
	return true;
}
