/*
 * rmq_target.c — the tables a stream can write exactly once: rows and
 * offsets must commit in one local transaction.  A foreign table (or a
 * partition that is one) is written by its wrapper in a transaction of the
 * remote server, committed apart from ours; a Citus distributed table is
 * routed by Citus only for the COPY and INSERT commands, and the COPY
 * machinery a stream drives would leave the rows in the coordinator's
 * local shell table, without an error.  Both are refused, when a stream is
 * created and at every batch.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "fmgr.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "rmq_stream.h"

static bool
citus_distributed(Oid relid)
{
	Oid			dist = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	bool		found;

	if (!OidIsValid(dist))
		return false;
	rel = table_open(dist, AccessShareLock);
	/* logicalrelid, its first column, is the table's regclass. */
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

static void
refuse_foreign(Relation target, Oid foreign)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 foreign == RelationGetRelid(target)
			 ? errmsg("stream target \"%s\" is a foreign table", RelationGetRelationName(target))
			 : errmsg("stream target \"%s\" has a partition that is a foreign table, \"%s\"",
					  RelationGetRelationName(target), get_rel_name(foreign)),
			 errdetail("A foreign-data wrapper commits rows in another server's transaction, apart from the "
					   "stream's offsets: a crash could lose or repeat messages."),
			 errhint("Stream into a local table and move the rows on from there.")));
}

void
rmq_target_check(Relation rel)
{
	char		kind = rel->rd_rel->relkind;

	if (kind == RELKIND_FOREIGN_TABLE)
		refuse_foreign(rel, RelationGetRelid(rel));
	if (kind == RELKIND_PARTITIONED_TABLE)
	{
		List	   *parts = find_all_inheritors(RelationGetRelid(rel), AccessShareLock, NULL);
		ListCell   *lc;

		foreach(lc, parts)
			if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_FOREIGN_TABLE)
				refuse_foreign(rel, lfirst_oid(lc));
	}
	if (citus_distributed(RelationGetRelid(rel)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("stream target \"%s\" is a Citus distributed table", RelationGetRelationName(rel)),
				 errdetail("Streams write rows through PostgreSQL's COPY machinery inside the server, which Citus "
						   "does not route: the rows would stay in the coordinator's shell table."),
				 errhint("Stream into a local table, and INSERT ... SELECT from it into the distributed table.")));
}

PG_FUNCTION_INFO_V1(rmq_check_target);
Datum
rmq_check_target(PG_FUNCTION_ARGS)
{
	Relation	rel = table_open(PG_GETARG_OID(0), AccessShareLock);

	rmq_target_check(rel);
	table_close(rel, AccessShareLock);
	PG_RETURN_VOID();
}
