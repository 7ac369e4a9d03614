/*
 * rmq_member.c — a stream that is a member of its consumer group
 * ("membership": "group"), as the Java push consumer is one: it heartbeats
 * every broker of its topic, so the broker lists it and RocketMQ's tools
 * show it; it takes the share of the queues Java's
 * AllocateMessageQueueAveragely gives it (rmq_alloc.c), so Java consumers
 * and other PostgreSQL servers in the group agree on who reads what; and
 * it holds the broker's lock on every queue it reads, so no two members
 * read one queue at once.
 *
 * The hand-off: a queue that moves away is let go only between batches,
 * once its last batch has committed here and its offset has been committed
 * to the broker; then it is unlocked.  The member that gets it locks it
 * (and waits while the old owner still holds it) and starts where the
 * broker's offset says (rmq_plan_resolve_starts).  A member that dies keeps
 * its locks until the broker lets them lapse (60 s): if it comes back
 * within that, it resumes its queues from its own stored offsets.
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

#include "rmq_alloc.h"
#include "rmq_worker.h"

/* The Java client's timers (ClientConfig, RebalanceService, ProcessQueue). */
#define HEARTBEAT_MS 30000
#define REBALANCE_MS 20000
#define RELOCK_MS 20000
/* The broker keeps a lock 60 s; like Java, trust ours for half of that. */
#define LOCK_TRUST_MS 30000
/* Our share includes queues another member still holds: ask again soon. */
#define WANT_RETRY_MS 500
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

static char *
retry_topic(Stream *s)
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
	subs[1].topic = retry_topic(s);
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
static void
broker_trouble(Stream *s, const char *addr, const char *what, MemoryContext cxt)
{
	ErrorData  *ed;
	int			held;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	if (ed->sqlerrcode != ERRCODE_CONNECTION_FAILURE && ed->sqlerrcode != ERRCODE_PROTOCOL_VIOLATION &&
		ed->sqlerrcode != ERRCODE_EXTERNAL_ROUTINE_EXCEPTION)
		PG_RE_THROW();
	FlushErrorState();
	rmq_conn_release_aborted(0);
	if (rmq_warn_due(psprintf("%s %s %s", s->def.name, what, ed->message), &held))
		ereport(WARNING,
				(errcode(ed->sqlerrcode),
				 errmsg("stream \"%s\" could not %s RocketMQ at %s", s->def.name, what, addr),
				 held ? errdetail("%s (%d more times since the last warning)", ed->message, held)
				 : errdetail("%s", ed->message)));
	FreeErrorData(ed);
}

static bool
heartbeat(Stream *s, const char *addr)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		rmq_group_heartbeat(&s->member.opts, addr, s->member.heartbeat);
	}
	PG_CATCH();
	{
		broker_trouble(s, addr, "send a heartbeat to", cxt);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* Heartbeat every broker of these routes we have not yet told of us. */
static void
join_brokers(Stream *s, RmqRoute **routes, int nroutes, MemoryContext keep)
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
			if (heartbeat(s, addr))
				s->member.addrs[s->member.naddrs++] = MemoryContextStrdup(keep, addr);
		}
	if (s->member.heartbeat_at == 0)
		s->member.heartbeat_at = GetCurrentTimestamp();
}

/* The group's retry topic's route; NULL while the name server has none. */
static RmqRoute *
retry_route(Stream *s)
{
	MemoryContext cxt = CurrentMemoryContext;
	RmqRoute   *volatile r = NULL;

	PG_TRY();
	{
		r = rmq_route(&s->def.opts, retry_topic(s), true);
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		if (ed->sqlerrcode != ERRCODE_UNDEFINED_OBJECT)
			PG_RE_THROW();
		FlushErrorState();
		FreeErrorData(ed);
	}
	PG_END_TRY();
	return r;
}

/* The member list from one broker; -1 if it failed us. */
static int
try_members(Stream *s, const char *addr, char ***ids)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int n = -1;

	PG_TRY();
	{
		int			got;

		*ids = rmq_group_members(&s->member.opts, addr, s->def.group, &got);
		n = got;
	}
	PG_CATCH();
	{
		broker_trouble(s, addr, "list the members of its group at", cxt);
	}
	PG_END_TRY();
	return n;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * The group's members, from the first broker of the topic (by name) that
 * answers, as Java asks one broker of the topic.  A broker that lists
 * everyone but us has not had our heartbeat (it restarted): it gets one and
 * is asked again.  -1 if no broker could tell.
 */
static int
group_members(Stream *s, RmqRoute *route, const char ***out)
{
	const char **names = palloc(sizeof(char *) * Max(route->nbrokers, 1));
	int			nnames = 0;

	for (int b = 0; b < route->nbrokers; b++)
		if (route->brokers[b].master_addr)
			names[nnames++] = route->brokers[b].name;
	qsort(names, nnames, sizeof(char *), cmp_str);
	for (int b = 0; b < nnames; b++)
	{
		const char *addr = rmq_route_broker_addr(route, names[b]);

		for (int attempt = 0; attempt < 2; attempt++)
		{
			char	  **ids = NULL;
			int			n = try_members(s, addr, &ids);
			bool		me = false;

			if (n < 0)
				break;			/* the next broker */
			for (int i = 0; i < n && !me; i++)
				me = strcmp(ids[i], s->member.client_id) == 0;
			if (me || attempt == 1)
			{
				*out = (const char **) ids;
				rmq_alloc_sort_ids(*out, n);
				return n;
			}
			if (!heartbeat(s, addr))
				break;
		}
	}
	return -1;
}

/* Append our share of one topic's queues to share[]. */
static int
share_of(Stream *s, const char *topic, RmqRoute *route, const char **ids, int nids, RmqCursor *share, int n)
{
	RmqCursor  *all;
	int			nall = rmq_plan_topic_queues(s, topic, route, &all);
	int			first;
	int			k = rmq_alloc_averagely(ids, nids, s->member.client_id, nall, &first);

	for (int i = 0; i < k; i++)
		share[n++] = all[first + i];
	return n;
}

/*
 * Our share of the group's queues now: of the topic's, then of the retry
 * topic's, each allocated on its own as Java does.  -1 when no broker could
 * say who the members are (the caller keeps what it has).
 */
static int
compute_share(Stream *s, RmqCursor **out, MemoryContext keep)
{
	RmqRoute   *routes[2];
	const char **ids;
	int			nids;
	int			n = 0;
	int			cap;
	RmqCursor  *share;

	routes[0] = rmq_route(&s->def.opts, s->def.topic, true);
	routes[1] = retry_route(s);
	join_brokers(s, routes, 2, keep);
	nids = group_members(s, routes[0], &ids);
	if (nids < 0)
		return -1;
	cap = 0;
	for (int r = 0; r < 2; r++)
		for (int i = 0; routes[r] && i < routes[r]->nqueues; i++)
			cap += routes[r]->queues[i].read_queue_nums;
	share = palloc0(sizeof(RmqCursor) * Max(cap, 1));
	n = share_of(s, s->def.topic, routes[0], ids, nids, share, n);
	if (routes[1])
		n = share_of(s, retry_topic(s), routes[1], ids, nids, share, n);
	*out = share;
	return n;
}

/*
 * Lock queues on their brokers, one request per broker; ok[i] says whether
 * queue i is ours.  A broker that cannot be reached grants nothing.
 */
static void
lock_queues(Stream *s, RmqCursor *qs, int n, bool *ok)
{
	bool	   *asked = palloc0(sizeof(bool) * Max(n, 1));
	RmqMq	   *mqs = palloc(sizeof(RmqMq) * Max(n, 1));
	int		   *idx = palloc(sizeof(int) * Max(n, 1));
	bool	   *got = palloc(sizeof(bool) * Max(n, 1));

	memset(ok, 0, sizeof(bool) * n);
	for (int i = 0; i < n; i++)
	{
		int			k = 0;
		MemoryContext cxt = CurrentMemoryContext;

		if (asked[i])
			continue;
		memset(got, 0, sizeof(bool) * n);
		for (int j = i; j < n; j++)
			if (!asked[j] && strcmp(qs[j].addr, qs[i].addr) == 0)
			{
				asked[j] = true;
				mqs[k].topic = qs[j].topic;
				mqs[k].broker = qs[j].broker;
				mqs[k].queue_id = qs[j].queue_id;
				idx[k++] = j;
			}
		PG_TRY();
		{
			rmq_group_lock(&s->member.opts, qs[i].addr, s->def.group, s->member.client_id, mqs, k, got);
		}
		PG_CATCH();
		{
			broker_trouble(s, qs[i].addr, "lock queues at", cxt);
		}
		PG_END_TRY();
		for (int j = 0; j < k; j++)
			ok[idx[j]] = got[j];
	}
}

/* Unlock queues, one request per broker; a lock not given back lapses. */
static void
unlock_queues(Stream *s, const RmqOptions *o, RmqCursor **qs, int n)
{
	bool	   *done = palloc0(sizeof(bool) * Max(n, 1));
	RmqMq	   *mqs = palloc(sizeof(RmqMq) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		int			k = 0;
		MemoryContext cxt = CurrentMemoryContext;

		if (done[i])
			continue;
		for (int j = i; j < n; j++)
			if (!done[j] && strcmp(qs[j]->addr, qs[i]->addr) == 0)
			{
				done[j] = true;
				mqs[k].topic = qs[j]->topic;
				mqs[k].broker = qs[j]->broker;
				mqs[k++].queue_id = qs[j]->queue_id;
			}
		PG_TRY();
		{
			rmq_group_unlock(o, qs[i]->addr, s->def.group, s->member.client_id, mqs, k);
		}
		PG_CATCH();
		{
			broker_trouble(s, qs[i]->addr, "unlock queues at", cxt);
		}
		PG_END_TRY();
	}
}

int
rmq_member_assign(Stream *s, RmqCursor **out)
{
	RmqCursor  *share;
	int			n;
	bool	   *ok;
	int			k = 0;
	TimestampTz now;

	if (s->def.queue_map || s->def.force_specific)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream \"%s\" is a member of its group and cannot have a queue_map or force_specific",
						s->def.name)));
	rmq_member_init(s);
	n = compute_share(s, &share, CurrentMemoryContext);
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("no broker of topic \"%s\" could list the members of group \"%s\"",
						s->def.topic, s->def.group)));
	ok = palloc(sizeof(bool) * Max(n, 1));
	lock_queues(s, share, n, ok);
	for (int i = 0; i < n; i++)
		if (ok[i])
			share[k++] = share[i];
	now = GetCurrentTimestamp();
	s->member.wanting = k < n;
	s->member.rebalance_at = s->member.locked_at = s->member.want_at = now;
	ids_changed = false;
	*out = share;
	return k;
}

/*
 * Let queues go: their offsets committed to the broker first (what was
 * committed here and not yet there), then unlocked, then marked as not held
 * here.  Between batches only: nothing read from them is uncommitted.
 */
static void
release(Stream *s, int *which, int n)
{
	RmqCursor **qs = palloc(sizeof(RmqCursor *) * Max(n, 1));
	Oid			t[4] = {TEXTOID, TEXTOID, TEXTOID, INT4OID};

	XLogFlush(XactLastCommitEnd);
	for (int k = 0; k < n; k++)
	{
		int			i = which[k];
		RmqCursor  *c = &s->cursors[i];

		qs[k] = c;
		if (s->qs[i].at_broker != s->qs[i].stored)
		{
			rmq_update_consumer_offset(&s->def.opts, c->addr, s->def.group, c->topic, c->broker,
									   c->queue_id, s->qs[i].stored);
			s->qs[i].at_broker = s->qs[i].stored;
		}
	}
	unlock_queues(s, &s->member.opts, qs, n);
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	for (int k = 0; k < n; k++)
	{
		Datum		v[4] = {rmq_text_datum(s->def.group), rmq_text_datum(qs[k]->topic),
		rmq_text_datum(qs[k]->broker), Int32GetDatum(qs[k]->queue_id)};

		rmq_spi_exec(psprintf("UPDATE %s.rmq_offset SET held_by = NULL WHERE consumer_group = $1 AND topic = $2 "
						  "AND broker = $3 AND queue_id = $4", s->def.schema), 4, t, v, false);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/*
 * Renew the locks on all our queues; which were renewed, in ok[].  When all
 * were, the time is noted.
 */
static bool *
relock(Stream *s)
{
	bool	   *ok = palloc(sizeof(bool) * Max(s->ncursors, 1));
	bool		all = true;

	lock_queues(s, s->cursors, s->ncursors, ok);
	for (int i = 0; i < s->ncursors; i++)
	{
		if (ok[i])
			s->qs[i].lock_doubt = false;
		all &= ok[i];
	}
	if (all)
		s->member.locked_at = GetCurrentTimestamp();
	return ok;
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
		broker_trouble(s, addr, "read from", cxt);
		there = false;
	}
	PG_END_TRY();
	return there;
}

static void
serve_brokers(Stream *s)
{
	for (int i = 0; i < s->member.naddrs; i++)
		if (!serve_one(s, s->member.addrs[i]) && heartbeat(s, s->member.addrs[i]))
		{
			s->member.locked_at = 0;
			ids_changed = true;
		}
}

static bool
same_queue(const RmqCursor *a, const RmqCursor *b)
{
	return a->queue_id == b->queue_id && strcmp(a->broker, b->broker) == 0 &&
		strcmp(a->topic, b->topic) == 0 && strcmp(a->addr, b->addr) == 0;
}

/* Our share now, or -1 when it cannot be known (name server or brokers away). */
static int
try_share(Stream *s, RmqCursor **share)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int n = -1;

	PG_TRY();
	{
		n = compute_share(s, share, s->member.keep);
	}
	PG_CATCH();
	{
		broker_trouble(s, s->def.opts.namesrv_addr ? s->def.opts.namesrv_addr : "the name server",
					   "rebalance with", cxt);
	}
	PG_END_TRY();
	return n;
}

/*
 * Between batches: keep the membership up (heartbeats, locks, what brokers
 * tell us) and follow the group's allocation.  False when the run must
 * start again with another set of queues; those that left were released.
 */
bool
rmq_member_tick(Stream *s)
{
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext tmp;
	TimestampTz now = GetCurrentTimestamp();
	RmqCursor  *share = NULL;
	int			n;
	int		   *lost;
	int			nlost = 0;
	bool		gained = false;
	bool		due;

	if (!s->def.membership)
		return true;
	tmp = AllocSetContextCreate(TopMemoryContext, "rocketmq_stream membership", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(tmp);
	serve_brokers(s);
	if (TimestampDifferenceExceeds(s->member.heartbeat_at, now, HEARTBEAT_MS))
	{
		for (int i = 0; i < s->member.naddrs; i++)
			(void) heartbeat(s, s->member.addrs[i]);
		s->member.heartbeat_at = now;
	}
	if (TimestampDifferenceExceeds(s->member.locked_at, now, RELOCK_MS))
	{
		bool	   *ok = relock(s);

		/*
		 * Another member holds a queue we read (our lock lapsed, or its
		 * broker restarted and forgot it): stop reading it at once.  Its
		 * offset is not sent to the broker, where the holder may be ahead.
		 */
		for (int i = 0; i < s->ncursors; i++)
			if (!ok[i])
			{
				ereport(LOG,
						(errmsg("stream \"%s\" could not renew its lock on queue %d of broker \"%s\"; "
								"it stops reading the queue until it holds it again",
								s->def.name, s->cursors[i].queue_id, s->cursors[i].broker)));
				MemoryContextSwitchTo(cxt);
				MemoryContextDelete(tmp);
				s->replan_why = "it could not renew its lock on a queue";
				return false;
			}
	}
	due = ids_changed || TimestampDifferenceExceeds(s->member.rebalance_at, now, REBALANCE_MS) ||
		(s->member.wanting && TimestampDifferenceExceeds(s->member.want_at, now, WANT_RETRY_MS));
	if (!due)
	{
		MemoryContextSwitchTo(cxt);
		MemoryContextDelete(tmp);
		return true;
	}
	ids_changed = false;
	s->member.rebalance_at = now;
	n = try_share(s, &share);
	if (n < 0)
	{
		MemoryContextSwitchTo(cxt);
		MemoryContextDelete(tmp);
		return true;			/* keep what we have; ask again later */
	}
	lost = palloc(sizeof(int) * Max(s->ncursors, 1));
	for (int i = 0; i < s->ncursors; i++)
	{
		bool		kept = false;

		for (int j = 0; j < n && !kept; j++)
			kept = same_queue(&s->cursors[i], &share[j]);
		/* a queue that left the route is kept a while (rmq_plan_current) */
		if (!kept)
			lost[nlost++] = i;
	}
	for (int j = 0; j < n && !gained; j++)
	{
		bool		have = false;

		for (int i = 0; i < s->ncursors && !have; i++)
			have = same_queue(&s->cursors[i], &share[j]);
		gained = !have;
	}
	if (nlost > 0)
		release(s, lost, nlost);
	else if (gained)
	{
		/* Start again only once one of them is free. */
		bool	   *ok = palloc(sizeof(bool) * n);
		bool		any = false;

		s->member.want_at = now;
		lock_queues(s, share, n, ok);
		for (int j = 0; j < n; j++)
		{
			bool		have = false;

			for (int i = 0; i < s->ncursors && !have; i++)
				have = same_queue(&s->cursors[i], &share[j]);
			any |= !have && ok[j];
		}
		s->member.wanting = !any;
		gained = any;
	}
	else
		s->member.wanting = false;
	MemoryContextSwitchTo(cxt);
	MemoryContextDelete(tmp);
	if (nlost > 0 || gained)
	{
		s->replan_why = nlost > 0 ? "queues of its share went to other members of its group"
			: "queues of its share are free to take";
		return false;
	}
	return true;
}

/*
 * Before a batch commits: are its queues still ours?  A lock renewed
 * within LOCK_TRUST_MS, whose broker stayed connected, is; otherwise it is
 * renewed now, and a queue with rows in the batch that another member
 * holds now rolls the batch back.
 */
void
rmq_member_confirm_locks(Stream *s)
{
	bool		need;
	bool	   *ok;

	if (!s->def.membership)
		return;
	need = TimestampDifferenceExceeds(s->member.locked_at, GetCurrentTimestamp(), LOCK_TRUST_MS);
	for (int i = 0; i < s->ncursors && !need; i++)
		need = s->qs[i].lock_doubt && s->cursors[i].next != s->qs[i].from;
	if (!need)
		return;
	ok = relock(s);
	for (int i = 0; i < s->ncursors; i++)
		if (!ok[i] && s->cursors[i].next != s->qs[i].from)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("stream \"%s\" could not renew its lock on queue %d of broker \"%s\"",
							s->def.name, s->cursors[i].queue_id, s->cursors[i].broker),
					 errdetail("Another member of group \"%s\" may read the queue now; this batch is rolled back.",
							   s->def.group)));
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
		broker_trouble(s, c->addr, "commit an offset to", cxt);
	}
	PG_END_TRY();
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
		broker_trouble(s, addr, "unregister from", cxt);
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
	for (int i = 0; s->qs && i < s->ncursors; i++)
	{
		if (s->qs[i].at_broker != s->qs[i].stored)
			flush_offset(s, &o, i);
		if (s->qs[i].at_broker == s->qs[i].stored)
			qs[n++] = &s->cursors[i];
	}
	if (n > 0)
		unlock_queues(s, &o, qs, n);
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
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	rmq_spi_exec(psprintf("UPDATE %s.rmq_offset SET held_by = NULL WHERE consumer_group = $1 AND held_by = $2",
						  s->def.schema), 2, t, v, false);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
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
