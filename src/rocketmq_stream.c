/*
 * rocketmq_stream.c — module entry: settings.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "rmq_client.h"
#include "rmq_sql.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("rocketmq_stream.namesrv_addr",
							   "RocketMQ name server addresses, host:port;host:port.",
							   NULL, &rmq_namesrv_addr, "127.0.0.1:9876",
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
	MarkGUCPrefixReserved("rocketmq_stream");
	rmq_offsets_init();
}
