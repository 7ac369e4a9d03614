/*
 * rmq_profile.c — where a call finds its cluster and its credentials: a
 * foreign server of the rocketmq_stream wrapper (name servers, TLS) and the
 * caller's user mapping on it (access_key, secret_key), as dblink and
 * postgres_fdw keep theirs.  Also what keeps the secret out of sight: the
 * wrapper's validator, a log hook that masks secret_key in statements, and
 * pg_stat_activity showing a user mapping statement without its secret.
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "common/hashfn.h"

#include "rmq_client.h"

/* Bumped when any foreign server or user mapping changes. */
uint64		rmq_profile_epoch = 1;

static const char *const server_opts[] = {
	"namesrv_addr", "tls", "tls_root_cert", "tls_cert", "tls_key", NULL
};
static const char *const mapping_opts[] = {"access_key", "secret_key", NULL};
static const char *const tls_modes[] = {
	"disable", "prefer", "require", "verify-ca", "verify-full", NULL
};

static int
tls_mode(const char *s)
{
	for (int i = 0; tls_modes[i]; i++)
		if (strcmp(tls_modes[i], s) == 0)
			return i;
	return -1;
}

static bool
known(const char *const *list, const char *name)
{
	for (int i = 0; list[i]; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	return false;
}

/* A name server list as the client will read it: host:port;host:port. */
static void
check_namesrv_list(const char *v)
{
	char	   *list = pstrdup(v);
	char	   *save = NULL;
	int			n = 0;

	for (char *tok = strtok_r(list, ";,", &save); tok; tok = strtok_r(NULL, ";,", &save))
	{
		char		host[256];
		int			port;

		if (!rmq_split_addr(tok, host, sizeof(host), &port))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid name server address \"%s\" in option \"namesrv_addr\"", tok),
					 errhint("Addresses are written host:port, several separated by ';'.")));
		n++;
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"namesrv_addr\" names no name server")));
}

/*
 * The wrapper's validator: unknown or malformed options are refused at
 * CREATE and ALTER, naming the option but never echoing a secret.
 */
PG_FUNCTION_INFO_V1(rmq_fdw_validator);
Datum
rmq_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	const char *const *allowed;
	bool		has_access = false,
				has_secret = false;
	ListCell   *lc;

	if (catalog == ForeignServerRelationId)
		allowed = server_opts;
	else if (catalog == UserMappingRelationId)
		allowed = mapping_opts;
	else
		allowed = NULL;
	foreach(lc, options)
	{
		DefElem    *d = (DefElem *) lfirst(lc);
		const char *v = defGetString(d);

		if (allowed == NULL || !known(allowed, d->defname))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", d->defname),
					 catalog == ForeignServerRelationId
					 ? errhint("Servers take namesrv_addr, tls, tls_root_cert, tls_cert and tls_key.")
					 : catalog == UserMappingRelationId
					 ? errhint("User mappings take access_key and secret_key.")
					 : errhint("The rocketmq_stream wrapper has options on servers and user mappings only.")));
		if (strcmp(d->defname, "namesrv_addr") == 0)
			check_namesrv_list(v);
		else if (strcmp(d->defname, "tls") == 0 && tls_mode(v) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"tls\": \"%s\"", v),
					 errhint("Valid values are disable, prefer, require, verify-ca and verify-full.")));
		else if (strncmp(d->defname, "tls_", 4) == 0)
		{
			/* Files the server reads as itself: not for everyone to name. */
			if (!superuser())
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("only superusers may set option \"%s\"", d->defname),
						 errdetail("It names a file the server reads.")));
			if (v[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("option \"%s\" must name a file", d->defname)));
		}
		else if (strcmp(d->defname, "access_key") == 0)
		{
			if (v[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("option \"access_key\" must not be empty")));
			has_access = true;
		}
		else if (strcmp(d->defname, "secret_key") == 0)
		{
			if (v[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("option \"secret_key\" must not be empty")));
			has_secret = true;
		}
	}
	if (catalog == UserMappingRelationId && has_access != has_secret)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a user mapping needs both access_key and secret_key, or neither")));
	PG_RETURN_VOID();
}

static const char *
option_value(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *d = (DefElem *) lfirst(lc);

		if (strcmp(d->defname, name) == 0)
			return defGetString(d);
	}
	return NULL;
}

/* The user's mapping on the server, else PUBLIC's; NULL if neither. */
static List *
mapping_options(Oid userid, Oid serverid)
{
	HeapTuple	tp;
	List	   *opts = NIL;
	bool		isnull;
	Datum		d;

	tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid), ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tp))
		tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid), ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tp))
		return NULL;
	d = SysCacheGetAttr(USERMAPPINGUSERSERVER, tp, Anum_pg_user_mapping_umoptions, &isnull);
	if (!isnull)
		opts = untransformRelOptions(d);
	ReleaseSysCache(tp);
	return opts ? opts : list_make1(makeDefElem("none", NULL, -1));
}

/*
 * Resolve a foreign server of this wrapper into the options: its name
 * servers and TLS settings, and the current user's credentials on it.
 * Using a server takes USAGE on it, as with any foreign server.
 */
void
rmq_options_use_server(RmqOptions *o, const char *name)
{
	ForeignServer *srv = GetForeignServerByName(name, true);
	ForeignDataWrapper *fdw;
	AclResult	acl;
	List	   *um;
	const char *v;
	char		digest[17];

	if (srv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("server \"%s\" does not exist", name),
				 errhint("Create it with CREATE SERVER %s FOREIGN DATA WRAPPER rocketmq_stream OPTIONS (namesrv_addr '...').",
						 quote_identifier(name))));
	fdw = GetForeignDataWrapper(srv->fdwid);
	if (strcmp(fdw->fdwname, "rocketmq_stream") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" is not a RocketMQ server", name),
				 errdetail("It belongs to foreign-data wrapper \"%s\", not rocketmq_stream.", fdw->fdwname)));
	acl = pg_foreign_server_aclcheck(srv->serverid, GetUserId(), ACL_USAGE);
	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_FOREIGN_SERVER, srv->servername);

	o->sec.server = pstrdup(srv->servername);
	v = option_value(srv->options, "namesrv_addr");
	if (v)
		o->namesrv_addr = pstrdup(v);
	v = option_value(srv->options, "tls");
	o->sec.tls = v ? tls_mode(v) : RMQ_TLS_DISABLE;
	v = option_value(srv->options, "tls_root_cert");
	o->sec.tls_root_cert = v ? pstrdup(v) : NULL;
	v = option_value(srv->options, "tls_cert");
	o->sec.tls_cert = v ? pstrdup(v) : NULL;
	v = option_value(srv->options, "tls_key");
	o->sec.tls_key = v ? pstrdup(v) : NULL;
	um = mapping_options(GetUserId(), srv->serverid);
	o->sec.has_mapping = um != NULL;
	v = um ? option_value(um, "access_key") : NULL;
	o->sec.access_key = v ? pstrdup(v) : NULL;
	v = um ? option_value(um, "secret_key") : NULL;
	o->sec.secret_key = v ? pstrdup(v) : NULL;

	/*
	 * Connections are cached per address and profile: two users, or one
	 * whose secret changed, never share one.  The secret itself is not in
	 * the profile, only a digest of it.
	 */
	digest[0] = '\0';
	if (o->sec.secret_key)
		snprintf(digest, sizeof(digest), "%08x%08x",
				 hash_bytes((const unsigned char *) o->sec.secret_key, strlen(o->sec.secret_key)),
				 (uint32) hash_bytes_extended((const unsigned char *) o->sec.secret_key,
											  strlen(o->sec.secret_key), 17));
	o->sec.profile = psprintf("%u/%d/%s/%s/%s/%s/%s", srv->serverid, o->sec.tls,
							  o->sec.tls_root_cert ? o->sec.tls_root_cert : "",
							  o->sec.tls_cert ? o->sec.tls_cert : "",
							  o->sec.tls_key ? o->sec.tls_key : "",
							  o->sec.access_key ? o->sec.access_key : "", digest);
}

/* A server or user mapping changed: resolve again (and reconnect). */
static void
profile_invalidated(Datum arg, int cacheid, uint32 hashvalue)
{
	rmq_profile_epoch++;
}

/* ---------- keeping secret_key out of the log and pg_stat_activity ---------- */

/*
 * The statement with every secret_key '...' value masked, or NULL if it
 * has none.  Lexing is rough on purpose: a statement that merely mentions
 * secret_key gets masked a little too eagerly, never too little.
 */
static char *
mask_secrets(const char *sql)
{
	StringInfoData out;
	const char *p = sql;
	bool		found = false;

	if (sql == NULL)
		return NULL;
	initStringInfo(&out);
	while (*p)
	{
		if (pg_strncasecmp(p, "secret_key", 10) == 0)
		{
			const char *q = p + 10;

			appendBinaryStringInfo(&out, p, 10);
			while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r' || *q == '"')
				appendStringInfoChar(&out, *q++);
			if (*q == 'E' || *q == 'e')
				appendStringInfoChar(&out, *q++);
			if (*q == '\'')
			{
				/* skip the literal, '' included */
				q++;
				while (*q && !(*q == '\'' && q[1] != '\''))
					q += (*q == '\'' || *q == '\\') && q[1] ? 2 : 1;
				if (*q == '\'')
					q++;
				appendStringInfoString(&out, "'********'");
				found = true;
			}
			p = q;
			continue;
		}
		appendStringInfoChar(&out, *p++);
	}
	if (!found)
	{
		pfree(out.data);
		return NULL;
	}
	return out.data;
}

static bool
contains_ci(const char *s, const char *word)
{
	size_t		n = strlen(word);

	for (; *s; s++)
		if (pg_strncasecmp(s, word, n) == 0)
			return true;
	return false;
}

static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * Statements that carry a secret_key (CREATE/ALTER USER MAPPING) are
 * logged masked by log_statement, and are left out of an error's STATEMENT
 * line, whatever log_statement and log_min_error_statement say.
 */
static void
mask_log(ErrorData *edata)
{
	if (edata->message && contains_ci(edata->message, "secret_key"))
	{
		char	   *masked = mask_secrets(edata->message);

		if (masked)
			edata->message = masked;
	}
	if (debug_query_string && contains_ci(debug_query_string, "secret_key"))
		edata->hide_stmt = true;
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * Called for CREATE/ALTER USER MAPPING: what pg_stat_activity shows of the
 * statement, now and after it (an idle session keeps its last query), is
 * the masked text.
 */
void
rmq_profile_mask_activity(Node *stmt, const char *query)
{
	char	   *masked;

	if (!IsA(stmt, CreateUserMappingStmt) && !IsA(stmt, AlterUserMappingStmt))
		return;
	masked = mask_secrets(query);
	if (masked)
		pgstat_report_activity(STATE_RUNNING, masked);
}

void
rmq_profile_init(void)
{
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, profile_invalidated, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, profile_invalidated, (Datum) 0);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = mask_log;
}

PG_FUNCTION_INFO_V1(rmq_check_server);
Datum
rmq_check_server(PG_FUNCTION_ARGS)
{
	RmqOptions	o;

	memset(&o, 0, sizeof(o));
	rmq_options_use_server(&o, text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}
