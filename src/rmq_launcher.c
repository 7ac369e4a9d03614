/*
 * rmq_launcher.c — the launcher: one static background worker, attached to
 * rocketmq_stream.database, that keeps one dynamic worker per running
 * stream and worker index alive, within rocketmq_stream.max_workers.
 *
 * It polls rmq_stream about once a second.  Workers it starts notify it
 * when they stop; it restarts those whose stream is still running with
 * back-off, and terminates those whose stream was paused, failed, dropped,
 * reset or resumed (a new generation).  After a crash or restart the
 * postmaster starts the launcher again, and every running stream resumes
 * from its stored offsets.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "rmq_stream.h"

char	   *rmq_database = NULL;
int			rmq_max_workers = 8;

#define NAPTIME_MS 1000
#define MAX_SLOTS 256
/*
 * A worker that ran this long, or whose stream committed a batch while it
 * ran, was healthy: if it dies now its restart starts from the first
 * back-off step again.  Without this, five deaths days apart made every
 * later one cost the longest back-off.
 */
#define HEALTHY_RUN_MS 60000

typedef struct Slot
{
	bool		used;
	char		stream[64];
	int			index;
	int32		generation;
	Oid			owner;
	BackgroundWorkerHandle *handle;
	TimestampTz started_at;		/* of the worker now running */
	TimestampTz retry_at;		/* after a worker stopped: not before */
	int			restarts;
	bool		seen;			/* wanted in this round */
	TimestampTz last_batch;		/* the stream's newest committed batch */
} Slot;

static Slot slots[MAX_SLOTS];

void
rmq_launcher_register(void)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = 5;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "rocketmq_stream");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "rmq_launcher_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "rocketmq_stream launcher");
	snprintf(w.bgw_type, BGW_MAXLEN, "rocketmq_stream launcher");
	RegisterBackgroundWorker(&w);
}

static bool
start_worker(Slot *sl)
{
	BackgroundWorker w;
	RmqWorkerArgs wa;
	MemoryContext old;
	bool		ok;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "rocketmq_stream");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "rmq_worker_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "rocketmq_stream worker %s/%d", sl->stream, sl->index);
	snprintf(w.bgw_type, BGW_MAXLEN, "rocketmq_stream worker");
	w.bgw_main_arg = Int32GetDatum(sl->index);
	w.bgw_notify_pid = MyProcPid;
	memset(&wa, 0, sizeof(wa));
	wa.dboid = MyDatabaseId;
	wa.owner = sl->owner;
	wa.generation = sl->generation;
	strlcpy(wa.stream, sl->stream, sizeof(wa.stream));
	memcpy(w.bgw_extra, &wa, sizeof(wa));
	/* The handle outlives the launcher's per-round memory. */
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&w, &sl->handle);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		ereport(WARNING,
				(errmsg("rocketmq_stream could not start a worker for stream \"%s\"", sl->stream),
				 errhint("Raise max_worker_processes.")));
		sl->handle = NULL;
		return false;
	}
	sl->started_at = GetCurrentTimestamp();
	return true;
}

static void
stop_slot(Slot *sl)
{
	if (sl->handle)
	{
		TerminateBackgroundWorker(sl->handle);
		pfree(sl->handle);
	}
	memset(sl, 0, sizeof(*sl));
}

static Slot *
find_slot(const char *stream, int index)
{
	for (int i = 0; i < MAX_SLOTS; i++)
		if (slots[i].used && slots[i].index == index && strcmp(slots[i].stream, stream) == 0)
			return &slots[i];
	return NULL;
}

static int
running_workers(void)
{
	int			n = 0;

	for (int i = 0; i < MAX_SLOTS; i++)
		if (slots[i].used && slots[i].handle)
			n++;
	return n;
}

/* One round: compare the running streams with the workers we have. */
static void
reconcile(void)
{
	bool		have_ext;
	MemoryContext cxt = CurrentMemoryContext;
	int			nrows = 0;
	char	  **names = NULL;
	int		   *par = NULL;
	int32	   *gens = NULL;
	Oid		   *owners = NULL;
	TimestampTz *last_batch = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	have_ext = OidIsValid(get_extension_oid("rocketmq_stream", true));
	if (have_ext)
	{
		SPI_connect();
		if (SPI_execute("SELECT quote_ident(n.nspname) FROM pg_catalog.pg_extension e "
						"JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
						"WHERE e.extname = 'rocketmq_stream'", true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1 &&
			SPI_execute(psprintf("SELECT name, parallelism, generation, owner::oid, "
								 "(SELECT b.committed_at FROM %1$s.rmq_batch b WHERE b.stream = s.name "
								 "ORDER BY b.id DESC LIMIT 1) FROM %1$s.rmq_stream s "
								 "WHERE state = 'running' ORDER BY name",
								 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
						true, 0) == SPI_OK_SELECT)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			nrows = (int) SPI_processed;
			names = palloc(sizeof(char *) * Max(nrows, 1));
			par = palloc(sizeof(int) * Max(nrows, 1));
			gens = palloc(sizeof(int32) * Max(nrows, 1));
			owners = palloc(sizeof(Oid) * Max(nrows, 1));
			last_batch = palloc(sizeof(TimestampTz) * Max(nrows, 1));
			for (int r = 0; r < nrows; r++)
			{
				HeapTuple	t = SPI_tuptable->vals[r];
				TupleDesc	d = SPI_tuptable->tupdesc;
				bool		isnull;
				Datum		lb = SPI_getbinval(t, d, 5, &isnull);

				names[r] = pstrdup(SPI_getvalue(t, d, 1));
				par[r] = atoi(SPI_getvalue(t, d, 2));
				gens[r] = atoi(SPI_getvalue(t, d, 3));
				owners[r] = (Oid) strtoul(SPI_getvalue(t, d, 4), NULL, 10);
				last_batch[r] = isnull ? 0 : DatumGetTimestampTz(lb);
			}
			MemoryContextSwitchTo(old);
		}
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	pgstat_report_stat(false);

	for (int i = 0; i < MAX_SLOTS; i++)
		slots[i].seen = false;
	for (int r = 0; r < nrows; r++)
		for (int idx = 0; idx < par[r]; idx++)
		{
			Slot	   *sl = find_slot(names[r], idx);

			if (sl && (sl->generation != gens[r] || sl->owner != owners[r]))
			{
				stop_slot(sl);
				sl = NULL;
			}
			if (sl == NULL)
			{
				for (int i = 0; i < MAX_SLOTS && sl == NULL; i++)
					if (!slots[i].used)
						sl = &slots[i];
				if (sl == NULL)
					continue;
				sl->used = true;
				strlcpy(sl->stream, names[r], sizeof(sl->stream));
				sl->index = idx;
				sl->generation = gens[r];
				sl->owner = owners[r];
			}
			sl->seen = true;
			sl->last_batch = last_batch[r];
		}

	for (int i = 0; i < MAX_SLOTS; i++)
	{
		Slot	   *sl = &slots[i];
		pid_t		pid;

		if (!sl->used)
			continue;
		if (!sl->seen)
		{
			stop_slot(sl);
			continue;
		}
		if (sl->handle && GetBackgroundWorkerPid(sl->handle, &pid) == BGWH_STOPPED)
		{
			TimestampTz now = GetCurrentTimestamp();

			/* It stopped while its stream still runs: again, after a pause. */
			pfree(sl->handle);
			sl->handle = NULL;
			if (sl->last_batch > sl->started_at ||
				TimestampDifferenceExceeds(sl->started_at, now, HEALTHY_RUN_MS))
				sl->restarts = 0;
			sl->retry_at = TimestampTzPlusMilliseconds(now, Min(1000 << Min(sl->restarts, 5), 30000));
			sl->restarts++;
		}
		if (sl->handle == NULL && GetCurrentTimestamp() >= sl->retry_at &&
			running_workers() < rmq_max_workers)
			(void) start_worker(sl);
	}
}

void
rmq_launcher_main(Datum arg)
{
	MemoryContext cxt;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(rmq_database, NULL, 0);
	pgstat_report_appname("rocketmq_stream launcher");
	cxt = AllocSetContextCreate(TopMemoryContext, "rocketmq_stream launcher", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		MemoryContextSwitchTo(cxt);
		MemoryContextReset(cxt);
		reconcile();
		rmq_worker_wait(NAPTIME_MS);
	}
}
