/*
 * rmq_worker_wait.c — how a stream's worker waits: a sleep that wakes for
 * its latch, signals and a lost postmaster, and the back-off between tries
 * against a broker or a run that failed.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"

#include "rmq_worker.h"

#define MAX_BACKOFF_MS 30000

void
rmq_worker_wait(long ms)
{
	int			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   ms, PG_WAIT_EXTENSION);

	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* 1 s, doubling per consecutive failure, at most MAX_BACKOFF_MS. */
long
rmq_backoff_ms(int failures)
{
	return Min(1000L << Min(failures, 5), MAX_BACKOFF_MS);
}
