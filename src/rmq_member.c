/*
 * rmq_member.c — a stream that is a member of its consumer group
 * ("membership": "group"), as the Java push consumer is one: who it is (a
 * client id that survives restarts), being known to the brokers
 * (heartbeats on connections of its own), what it answers them (changes in
 * the group, running info for mqadmin), and leaving.  Which queues are its
 * share, and their locks and hand-over, are rmq_member_share.c's.
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "rmq_worker.h"

/* The Java client's heartbeat (ClientConfig.heartbeatBrokerInterval). */
#define HEARTBEAT_MS 30000
/* Leaving at exit must not hold a shutdown up for long. */
#define EXIT_TIMEOUT_MS 1000

static Stream *running;			/* the run in progress, for broker requests */
static volatile bool ids_changed;
static bool exit_hook_set;
static int64 sub_version;		/* constant between heartbeats, as Java's */
static TimestampTz started_at;

static int64
unix_ms(TimestampTz t)
{
	return t / 1000 + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
}

/* Client ids are ASCII (rmq_alloc.h): other bytes as %XX. */
static void
append_id_part(StringInfo out, const char *s)
{
	for (; *s; s++)
	{
		unsigned char ch = (unsigned char) *s;

		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
			ch == '.' || ch == '_' || ch == '-')
			appendStringInfoChar(out, ch);
		else
			appendStringInfo(out, "%%%02X", ch);
	}
}

/*
 * host@pg<system identifier>:<database>:<stream>:<worker>.  The same after a
 * restart, so a server that comes back is the member it was and gets its
 * own locks again; the part before '@' is what mqadmin prints as the
 * client's address.
 */
static char *
build_client_id(Stream *s)
{
	char		host[256];
	char	   *db;
	StringInfoData id;

	if (gethostname(host, sizeof(host)) != 0)
		strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	StartTransactionCommand();
	db = get_database_name(MyDatabaseId);
	CommitTransactionCommand();
	initStringInfo(&id);
	append_id_part(&id, host);
	appendStringInfo(&id, "@pg" UINT64_FORMAT ":", GetSystemIdentifier());
	append_id_part(&id, db ? db : "?");
	appendStringInfoChar(&id, ':');
	append_id_part(&id, s->def.name);
	appendStringInfo(&id, ":%d", s->def.index);
	return id.data;
}

char *
rmq_member_retry_topic(Stream *s)
{
	return psprintf("%%RETRY%%%s", s->def.group);
}

static const char *
consume_from(Stream *s)
{
	if (strcmp(s->def.start_from, "latest") == 0)
		return "CONSUME_FROM_LAST_OFFSET";
	if (strcmp(s->def.start_from, "timestamp") == 0)
		return "CONSUME_FROM_TIMESTAMP";
	return "CONSUME_FROM_FIRST_OFFSET";
}

/*
 * What the group's members subscribe: the topic with the stream's tag
 * filter, and the group's retry topic, as a Java push consumer does.  The
 * broker keeps one subscription per group and drops topics a member's
 * heartbeat leaves out, so both must be there for Java members to go on
 * pulling.
 */
static int
subscriptions(Stream *s, RmqSubscription *subs)
{
	subs[0].topic = s->def.topic;
	subs[0].expression = s->def.opts.tag_filter;
	subs[0].version = sub_version;
	subs[1].topic = rmq_member_retry_topic(s);
	subs[1].expression = NULL;
	subs[1].version = sub_version;
	return 2;
}

static void serve_broker_exit(int code, Datum arg);
static bool serve_broker(const char *addr, const RmqCommand *req, RmqCommand *reply);

void
rmq_member_init(Stream *s)
{
	RmqSubscription subs[2];
	StringInfoData hb;
	int			n;

	if (!s->def.membership)
		return;
	if (sub_version == 0)
	{
		started_at = GetCurrentTimestamp();
		sub_version = unix_ms(started_at);
	}
	memset(&s->member, 0, sizeof(s->member));
	s->member.keep = CurrentMemoryContext;
	s->member.client_id = build_client_id(s);
	/*
	 * The broker knows a member by the connection its heartbeats come on,
	 * and tells it of changes there: group requests get connections of
	 * their own, which the stream's pulls never take.
	 */
	s->member.opts = s->def.opts;
	s->member.opts.sec.profile = psprintf("%s member", s->def.opts.sec.profile ? s->def.opts.sec.profile : "");
	n = subscriptions(s, subs);
	initStringInfo(&hb);
	rmq_group_heartbeat_body(&hb, s->member.client_id, s->def.group, consume_from(s), subs, n);
	s->member.heartbeat = hb.data;
	s->member.addrs = palloc(sizeof(char *) * RMQ_MAX_ROUTE_BROKERS);
	running = s;
	rmq_request_handler = serve_broker;
	if (!exit_hook_set)
	{
		before_shmem_exit(serve_broker_exit, 0);
		exit_hook_set = true;
	}
}

/* Run ends (to start again, or after an error): broker requests find no run. */
void
rmq_member_end_run(Stream *s)
{
	running = NULL;
}

/*
 * The run starts again with the group's connections kept (closing them
 * would make us leave the group): the stream's own connections are
 * handed back, answers still in flight on them dropped as they come.
 */
void
rmq_member_hand_back(Stream *s)
{
	for (int i = 0; s->qs && i < s->ncursors; i++)
		if (s->qs[i].conn)
			rmq_conn_done(s->qs[i].conn);
}

/*
 * Warn (once a minute per cause) about a broker that failed us in a way
 * worth waiting out; rethrow anything else.
 */
void
rmq_member_trouble(Stream *s, const char *addr, const char *what, MemoryContext cxt)
{
	ErrorData  *ed;
	int			held;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	if (ed->sqlerrcode != ERRCODE_CONNECTION_FAILURE && ed->sqlerrcode != ERRCODE_PROTOCOL_VIOLATION &&
		ed->sqlerrcode != ERRCODE_EXTERNAL_ROUTINE_EXCEPTION)
		PG_RE_THROW();
	FlushErrorState();
	/* rmq_rpc left no connection busy; the stream's own pulls stay out. */
	if (rmq_warn_due(psprintf("%s %s %s", s->def.name, what, ed->message), &held))
		ereport(WARNING,
				(errcode(ed->sqlerrcode),
				 errmsg("stream \"%s\" could not %s RocketMQ at %s", s->def.name, what, addr),
				 held ? errdetail("%s (%d more times since the last warning)", ed->message, held)
				 : errdetail("%s", ed->message)));
	FreeErrorData(ed);
}

bool
rmq_member_heartbeat(Stream *s, const char *addr)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		rmq_group_heartbeat(&s->member.opts, addr, s->member.heartbeat);
	}
	PG_CATCH();
	{
		rmq_member_trouble(s, addr, "send a heartbeat to", cxt);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* Heartbeat every broker of these routes we have not yet told of us. */
void
rmq_member_join(Stream *s, RmqRoute **routes, int nroutes, MemoryContext keep)
{
	for (int r = 0; r < nroutes; r++)
		for (int b = 0; routes[r] && b < routes[r]->nbrokers; b++)
		{
			const char *addr = routes[r]->brokers[b].master_addr;
			bool		known = false;

			if (addr == NULL)
				continue;
			for (int i = 0; i < s->member.naddrs && !known; i++)
				known = strcmp(s->member.addrs[i], addr) == 0;
			if (known || s->member.naddrs >= RMQ_MAX_ROUTE_BROKERS)
				continue;
			if (rmq_member_heartbeat(s, addr))
				s->member.addrs[s->member.naddrs++] = MemoryContextStrdup(keep, addr);
		}
	if (s->member.heartbeat_at == 0)
		s->member.heartbeat_at = GetCurrentTimestamp();
}

/*
 * Lock queues (ok != NULL: which the broker granted, in ok[]) or unlock
 * them, one request per broker.  A broker that cannot be reached grants
 * nothing; a lock not given back lapses.
 */
static void
lock_request(Stream *s, const RmqOptions *o, RmqCursor **qs, int n, bool *ok)
{
	bool	   *asked = palloc0(sizeof(bool) * Max(n, 1));
	RmqMq	   *mqs = palloc(sizeof(RmqMq) * Max(n, 1));
	int		   *idx = palloc(sizeof(int) * Max(n, 1));
	bool	   *got = palloc(sizeof(bool) * Max(n, 1));

	if (ok)
		memset(ok, 0, sizeof(bool) * n);
	for (int i = 0; i < n; i++)
	{
		int			k = 0;
		MemoryContext cxt = CurrentMemoryContext;

		if (asked[i])
			continue;
		memset(got, 0, sizeof(bool) * n);
		for (int j = i; j < n; j++)
			if (!asked[j] && strcmp(qs[j]->addr, qs[i]->addr) == 0)
			{
				asked[j] = true;
				mqs[k].topic = qs[j]->topic;
				mqs[k].broker = qs[j]->broker;
				mqs[k].queue_id = qs[j]->queue_id;
				idx[k++] = j;
			}
		PG_TRY();
		{
			if (ok)
				rmq_group_lock(o, qs[i]->addr, s->def.group, s->member.client_id, mqs, k, got);
			else
				rmq_group_unlock(o, qs[i]->addr, s->def.group, s->member.client_id, mqs, k);
		}
		PG_CATCH();
		{
			rmq_member_trouble(s, qs[i]->addr, ok ? "lock queues at" : "unlock queues at", cxt);
		}
		PG_END_TRY();
		for (int j = 0; ok && j < k; j++)
			ok[idx[j]] = got[j];
	}
}

void
rmq_member_lock(Stream *s, RmqCursor *qs, int n, bool *ok)
{
	RmqCursor **ptrs = palloc(sizeof(RmqCursor *) * Max(n, 1));

	for (int i = 0; i < n; i++)
		ptrs[i] = &qs[i];
	lock_request(s, &s->member.opts, ptrs, n, ok);
}

void
rmq_member_unlock(Stream *s, const RmqOptions *o, RmqCursor **qs, int n)
{
	lock_request(s, o, qs, n, NULL);
}

/*
 * Our idle connections to the brokers are where they tell us of members
 * that come and go: read what they sent.  One that is gone took our
 * membership with it: heartbeat again, and renew the locks at once (a
 * broker that restarted forgot them).
 */
/* Read what the broker at addr sent; false if our connection to it is gone. */
static bool
serve_one(Stream *s, const char *addr)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool there = true;

	PG_TRY();
	{
		there = rmq_conn_serve(addr, &s->member.opts.sec, s->def.opts.request_timeout_ms);
	}
	PG_CATCH();
	{
		rmq_member_trouble(s, addr, "read from", cxt);
		there = false;
	}
	PG_END_TRY();
	return there;
}

void
rmq_member_serve(Stream *s)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < s->member.naddrs; i++)
		if (!serve_one(s, s->member.addrs[i]))
		{
			/* As rmq_batch.c does when pulls fail: the broker may have restarted. */
			for (int j = 0; s->qs && j < s->ncursors; j++)
				if (strcmp(s->cursors[j].addr, s->member.addrs[i]) == 0)
				{
					s->qs[j].lock_doubt = true;
					s->qs[j].at_broker = -1;
				}
			if (rmq_member_heartbeat(s, s->member.addrs[i]))
			{
				s->member.locked_at = 0;
				ids_changed = true;
			}
		}
	if (TimestampDifferenceExceeds(s->member.heartbeat_at, now, HEARTBEAT_MS))
	{
		for (int i = 0; i < s->member.naddrs; i++)
			(void) rmq_member_heartbeat(s, s->member.addrs[i]);
		s->member.heartbeat_at = now;
	}
}

/* Did a broker say members came or went (or we rejoined one) since asked? */
bool
rmq_member_changed(void)
{
	bool		was = ids_changed;

	ids_changed = false;
	return was;
}

/*
 * Commit queue i's stored offset to the broker (where the next owner starts
 * it), on the stream's own connections; false if that failed.
 */
static void
flush_offset(Stream *s, const RmqOptions *member_opts, int i)
{
	RmqCursor  *c = &s->cursors[i];
	RmqOptions	o = s->def.opts;
	MemoryContext cxt = CurrentMemoryContext;

	o.request_timeout_ms = member_opts->request_timeout_ms;
	PG_TRY();
	{
		rmq_update_consumer_offset(&o, c->addr, s->def.group, c->topic, c->broker, c->queue_id,
								   s->qs[i].stored);
		s->qs[i].at_broker = s->qs[i].stored;
	}
	PG_CATCH();
	{
		rmq_member_trouble(s, c->addr, "commit an offset to", cxt);
	}
	PG_END_TRY();
}

/*
 * Send the broker the offsets it may have lost (it restarted: at_broker is
 * unknown) of queues whose locks we renewed since, so a member that takes
 * one over later does not start behind us.  Not while the broker is down.
 */
void
rmq_member_flush_offsets(Stream *s)
{
	for (int i = 0; s->qs && i < s->ncursors; i++)
		if (s->qs[i].at_broker != s->qs[i].stored && !s->qs[i].lock_doubt && s->qs[i].down_failures == 0)
			flush_offset(s, &s->member.opts, i);
}

static void
unregister(Stream *s, const RmqOptions *o, const char *addr)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		rmq_group_unregister(o, addr, s->def.group, s->member.client_id);
	}
	PG_CATCH();
	{
		rmq_member_trouble(s, addr, "unregister from", cxt);
	}
	PG_END_TRY();
}

/*
 * Leave the group: commit to the broker the offsets it does not have yet,
 * give back the locks of the queues whose offsets it has (one whose offset
 * did not get there stays locked until the lock lapses, so the next owner
 * does not read it again), then unregister.  With a short timeout at exit.
 */
static void
leave(Stream *s, int timeout_ms)
{
	RmqOptions	o = s->member.opts;
	RmqCursor **qs = palloc(sizeof(RmqCursor *) * Max(s->ncursors, 1));
	int			n = 0;

	o.request_timeout_ms = Min(o.request_timeout_ms, timeout_ms);
	/* The broker never gets an offset ahead of what is on disk here. */
	XLogFlush(XactLastCommitEnd);
	/*
	 * A queue whose broker went away since its lock was renewed is ours to
	 * commit only if the lock is renewed first: another member may have it
	 * now, and further on.
	 */
	for (int i = 0; s->qs && i < s->ncursors; i++)
		if (s->qs[i].lock_doubt)
			qs[n++] = &s->cursors[i];
	if (n > 0)
	{
		bool	   *ok = palloc(sizeof(bool) * n);

		lock_request(s, &o, qs, n, ok);
		for (int k = 0; k < n; k++)
			if (ok[k])
				s->qs[qs[k] - s->cursors].lock_doubt = false;
		n = 0;
	}
	for (int i = 0; s->qs && i < s->ncursors; i++)
	{
		if (s->qs[i].lock_doubt)
			continue;
		if (s->qs[i].at_broker != s->qs[i].stored)
			flush_offset(s, &o, i);
		if (s->qs[i].at_broker == s->qs[i].stored)
			qs[n++] = &s->cursors[i];
	}
	if (n > 0)
		rmq_member_unlock(s, &o, qs, n);
	for (int i = 0; i < s->member.naddrs; i++)
		unregister(s, &o, s->member.addrs[i]);
}

/* The stream stops here (paused, dropped, reset): leave the group. */
void
rmq_member_leave(Stream *s)
{
	Oid			t[2] = {TEXTOID, TEXTOID};
	Datum		v[2];

	if (!s->def.membership || s->member.client_id == NULL)
		return;
	leave(s, s->def.opts.request_timeout_ms);
	running = NULL;
	v[0] = rmq_text_datum(s->def.group);
	v[1] = rmq_text_datum(s->member.client_id);
	rmq_xact_begin();
	rmq_spi_exec(psprintf("UPDATE %s.rmq_offset SET held_by = NULL WHERE consumer_group = $1 AND held_by = $2",
						  s->def.schema), 2, t, v, false);
	rmq_xact_commit();
}

/*
 * At exit (SIGTERM, the postmaster gone): leave as well as can be done in
 * EXIT_TIMEOUT_MS per broker, so the others need not wait for our locks to
 * lapse.  Never throws.
 */
static void
serve_broker_exit(int code, Datum arg)
{
	Stream	   *s = running;
	MemoryContext cxt;

	if (s == NULL || s->member.client_id == NULL)
		return;
	running = NULL;
	rmq_request_handler = NULL;
	cxt = AllocSetContextCreate(TopMemoryContext, "rocketmq_stream leaving", ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		leave(s, EXIT_TIMEOUT_MS);
	}
	PG_CATCH();
	{
		FlushErrorState();
	}
	PG_END_TRY();
}

/* ConsumerRunningInfo, for mqadmin consumerStatus/consumerProgress -s and the dashboard. */
static void
running_info(Stream *s, StringInfo out)
{
	RmqSubscription subs[2];
	int			nsubs = subscriptions(s, subs);
	int64		lock_ms = unix_ms(s->member.locked_at);

	appendStringInfoString(out, "{\"mqPopTable\":{},\"mqTable\":{");
	for (int i = 0; i < s->ncursors; i++)
	{
		RmqCursor  *c = &s->cursors[i];

		appendStringInfoString(out, i ? ",{\"brokerName\":" : "{\"brokerName\":");
		rmq_json_escape(out, c->broker);
		appendStringInfo(out, ",\"queueId\":%d,\"topic\":", c->queue_id);
		rmq_json_escape(out, c->topic);
		appendStringInfo(out, "}:{\"cachedMsgCount\":" INT64_FORMAT ",\"cachedMsgMaxOffset\":" INT64_FORMAT
						 ",\"cachedMsgMinOffset\":" INT64_FORMAT ",\"cachedMsgSizeInMiB\":%d,"
						 "\"commitOffset\":" INT64_FORMAT ",\"droped\":false,\"lastConsumeTimestamp\":" INT64_FORMAT
						 ",\"lastLockTimestamp\":" INT64_FORMAT ",\"lastPullTimestamp\":" INT64_FORMAT
						 ",\"locked\":true,\"transactionMsgCount\":0,\"transactionMsgMaxOffset\":0,"
						 "\"transactionMsgMinOffset\":0,\"tryUnlockTimes\":0}",
						 c->next - s->qs[i].from, c->next > s->qs[i].from ? c->next - 1 : 0,
						 c->next > s->qs[i].from ? s->qs[i].from : 0,
						 (int) (c->bytes / (1024 * 1024)), s->qs[i].stored,
						 unix_ms(GetCurrentTimestamp()), lock_ms,
						 c->sent_at ? unix_ms(c->sent_at) : 0);
	}
	appendStringInfoString(out, "},\"properties\":{\"PROP_CLIENT_VERSION\":\"V5_3_1\","
						   "\"PROP_CONSUMEORDERLY\":\"true\",\"PROP_CONSUME_TYPE\":\"CONSUME_PASSIVELY\","
						   "\"PROP_CONSUMER_START_TIMESTAMP\":");
	appendStringInfo(out, "\"" INT64_FORMAT "\",\"PROP_NAMESERVER_ADDR\":", unix_ms(started_at));
	rmq_json_escape(out, s->def.opts.namesrv_addr ? s->def.opts.namesrv_addr : "");
	appendStringInfoString(out, ",\"PROP_THREADPOOL_CORE_SIZE\":\"1\",\"rocketmq_stream\":");
	rmq_json_escape(out, s->def.name);
	appendStringInfo(out, ",\"rocketmq_stream.worker\":\"%d\"},\"statusTable\":{", s->def.index);
	for (int i = 0; i < nsubs; i++)
	{
		if (i)
			appendStringInfoChar(out, ',');
		rmq_json_escape(out, subs[i].topic);
		appendStringInfoString(out, ":{\"consumeFailedMsgs\":0,\"consumeFailedTPS\":0.0,\"consumeOKTPS\":0.0,"
							   "\"consumeRT\":0.0,\"pullRT\":0.0,\"pullTPS\":0.0}");
	}
	appendStringInfoString(out, "},\"subscriptionSet\":[");
	for (int i = 0; i < nsubs; i++)
	{
		if (i)
			appendStringInfoChar(out, ',');
		rmq_group_subscription_json(out, &subs[i]);
	}
	appendStringInfoString(out, "],\"userConsumerInfo\":{}}");
}

/*
 * Requests brokers send a member: NOTIFY_CONSUMER_IDS_CHANGED (someone
 * joined or left: rebalance at the next chance) and
 * GET_CONSUMER_RUNNING_INFO.  Runs while a connection is read: no throwing,
 * nothing but building the answer.
 */
static bool
serve_broker(const char *addr, const RmqCommand *req, RmqCommand *reply)
{
	Stream	   *s = running;
	const char *group = rmq_cmd_field(req, "consumerGroup");

	if (s == NULL || group == NULL || strcmp(group, s->def.group) != 0)
		return false;
	if (req->code == RMQ_NOTIFY_CONSUMER_IDS_CHANGED)
	{
		ids_changed = true;
		SetLatch(MyLatch);
		return false;
	}
	if (req->code == RMQ_GET_CONSUMER_RUNNING_INFO)
	{
		StringInfoData body;

		initStringInfo(&body);
		running_info(s, &body);
		reply->code = RMQ_SUCCESS;
		reply->body = body.data;
		reply->body_len = body.len;
		return true;
	}
	return false;
}
