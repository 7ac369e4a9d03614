/*
 * rocketmq_stream.c — module entry: settings.
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include <signal.h>
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "rmq_client.h"
#include "rmq_sql.h"
#include "rmq_stream.h"

PG_MODULE_MAGIC;

/* Inherited by every backend the postmaster forks after loading us. */
static bool preloaded = false;
static ProcessUtility_hook_type prev_utility = NULL;

/*
 * DROP DATABASE waits for the database's other sessions and then gives up;
 * ours (the launcher and the workers) never leave by themselves.  Ask them
 * to, first.  The launcher comes back a few seconds later and finds the
 * database gone or dropping.
 */
static void
stop_our_backends(const char *dbname)
{
	Oid			dboid = get_database_oid(dbname, true);
	int			n = pgstat_fetch_stat_numbackends();

	if (!OidIsValid(dboid))
		return;
	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);
		PgBackendStatus *be = l ? &l->backendStatus : NULL;

		if (be == NULL || be->st_databaseid != dboid || be->st_backendType != B_BG_WORKER)
			continue;
		if (strncmp(be->st_appname, "rocketmq_stream ", 16) == 0)
			(void) kill(be->st_procpid, SIGTERM);
	}
	pgstat_clear_snapshot();
}

static void
rmq_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *queryEnv,
			DestReceiver *dest, QueryCompletion *qc)
{
	if (IsA(pstmt->utilityStmt, DropdbStmt))
		stop_our_backends(((DropdbStmt *) pstmt->utilityStmt)->dbname);
	rmq_profile_mask_activity(pstmt->utilityStmt, queryString);
	if (prev_utility)
		prev_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("rocketmq_stream.namesrv_addr",
							   "RocketMQ name server addresses, host:port;host:port.",
							   NULL, &rmq_namesrv_addr, "127.0.0.1:9876",
							   PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("rocketmq_stream.server",
							   "Foreign server (of the rocketmq_stream wrapper) calls use by default.",
							   "It gives the name servers, TLS settings, and with the user's mapping the credentials; "
							   "an option server or namesrv_addr of a call overrides it.",
							   &rmq_server, "",
							   PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("rocketmq_stream.pull_batch_size",
							"Messages asked for in one pull request.",
							"The broker returns at most 32 from memory whatever is asked.",
							&rmq_pull_batch_size, 32, 1, 1024,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("rocketmq_stream.pull_timeout",
							"How long a pull waits for messages that have not arrived yet.",
							"The broker holds the request (long polling) up to this long.",
							&rmq_pull_timeout_ms, 3000, 0, 3600000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("rocketmq_stream.request_timeout",
							"Deadline for connecting and for requests other than pulls.",
							NULL, &rmq_request_timeout_ms, 3000, 1, 3600000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("rocketmq_stream.connection_cache_size",
							"Broker and name server connections kept open per backend.",
							NULL, &rmq_connection_cache_size, 16, 1, 1024,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("rocketmq_stream.check_crc",
							 "Verify the body CRC of every message read.",
							 NULL, &rmq_check_crc, true,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("rocketmq_stream.database",
							   "Database whose streams the launcher runs.",
							   NULL, &rmq_database, "postgres",
							   /* fixed at start-up, but loading later must not fail */
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SUSET,
							   0, NULL, NULL, NULL);
	DefineCustomIntVariable("rocketmq_stream.max_workers",
							"Most stream workers running at once.",
							"They come out of max_worker_processes, with the launcher.",
							&rmq_max_workers, 8, 0, 256,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("rocketmq_stream");
	rmq_offsets_init();
	rmq_profile_init();
	if (process_shared_preload_libraries_in_progress)
	{
		preloaded = true;
		rmq_launcher_register();
		prev_utility = ProcessUtility_hook;
		ProcessUtility_hook = rmq_utility;
	}
}

PG_FUNCTION_INFO_V1(rmq_check_preloaded);
Datum
rmq_check_preloaded(PG_FUNCTION_ARGS)
{
	if (!preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("streams need rocketmq_stream in shared_preload_libraries"),
				 errhint("Add rocketmq_stream to shared_preload_libraries in postgresql.conf and restart the server.")));
	if (strcmp(get_database_name(MyDatabaseId), rmq_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("streams run in database \"%s\", not in this one", rmq_database),
				 errhint("Create streams there, or set rocketmq_stream.database and restart the server.")));
	PG_RETURN_VOID();
}
