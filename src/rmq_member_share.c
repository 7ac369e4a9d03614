/*
 * rmq_member_share.c — which queues a member of its consumer group reads:
 * the members as a broker lists them, the share the Java client's
 * AllocateMessageQueueAveragely gives us of the topic and of the group's
 * retry topic (rmq_alloc.c), so Java consumers and other PostgreSQL servers
 * agree on who reads what; and the broker's lock on every queue we read, so
 * no two members read one queue at once.
 *
 * The hand-off: a queue that moves away is let go only between batches,
 * once its last batch has committed here and its offset has been committed
 * to the broker; then it is unlocked.  The member that gets it locks it
 * (and waits while the old owner still holds it) and starts where the
 * broker's offset says (rmq_plan_resolve_starts).  A member that dies keeps
 * its locks until the broker lets them lapse (60 s): if it comes back
 * within that, it resumes its queues from its own stored offsets.  What a
 * member may take from a broker that just restarted: rmq_member_restart.c.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "rmq_alloc.h"
#include "rmq_worker.h"

/* The Java client's timers (RebalanceService, ProcessQueue). */
#define REBALANCE_MS 20000
#define RELOCK_MS 20000
/* The broker keeps a lock 60 s; like Java, trust ours for half of that. */
#define LOCK_TRUST_MS 30000
/* Our share includes queues another member still holds: ask again soon. */
#define WANT_RETRY_MS 500
/* As rmq_queue_plan.c: how long queues whose broker left the route are kept. */
#define VANISHED_MS 120000

/* A topic's route (refreshed or as cached); NULL while the name server has none. */
static RmqRoute *
route_or_null(Stream *s, const char *topic, bool refresh)
{
	MemoryContext cxt = CurrentMemoryContext;
	RmqRoute   *volatile r = NULL;

	PG_TRY();
	{
		r = rmq_route(&s->def.opts, topic, refresh);
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

/*
 * Is the queue's broker in its topic's route (as just fetched)?  A broker
 * that restarts leaves the route for seconds; its queues are nobody's share
 * meanwhile, and are kept rather than let go (which would need that broker).
 */
static bool
still_routed(Stream *s, const RmqCursor *c)
{
	RmqRoute   *r = route_or_null(s, c->topic, false);

	return r != NULL && rmq_route_broker_addr(r, c->broker) != NULL;
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
		rmq_member_trouble(s, addr, "list the members of its group at", cxt);
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
			if (!rmq_member_heartbeat(s, addr))
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
	routes[1] = route_or_null(s, rmq_member_retry_topic(s), true);
	rmq_member_join(s, routes, 2, keep);
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
		n = share_of(s, rmq_member_retry_topic(s), routes[1], ids, nids, share, n);
	*out = share;
	return n;
}

/*
 * Lock what may be taken of the share (not what rmq_member_hold_back holds
 * back): the queues asked for move to share[0..m), the broker's answer to
 * ok[0..m); returns m.  *back: how many were held back.
 */
static int
lock_share(Stream *s, RmqCursor *share, int n, bool *ok, bool first, int *back)
{
	int			m = 0;

	*back = rmq_member_hold_back(s, share, n, ok, first);
	for (int j = 0; j < n; j++)
		if (ok[j])
			share[m++] = share[j];
	rmq_member_lock(s, share, m, ok);
	return m;
}

int
rmq_member_assign(Stream *s, RmqCursor **out)
{
	RmqCursor  *share;
	int			n;
	bool	   *ok;
	int			k = 0;
	int			m;
	int			back;
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
	m = lock_share(s, share, n, ok, true, &back);
	for (int i = 0; i < m; i++)
		if (ok[i])
			share[k++] = share[i];
	now = GetCurrentTimestamp();
	s->member.wanting = k < n;
	s->member.rebalance_at = s->member.locked_at = s->member.confirmed_at = s->member.want_at = now;
	(void) rmq_member_changed();
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
	rmq_member_unlock(s, &s->member.opts, qs, n);
	for (int k = 0; k < n; k++)
		s->qs[which[k]].released = true;
	rmq_xact_begin();
	for (int k = 0; k < n; k++)
	{
		Datum		v[4] = {rmq_text_datum(s->def.group), rmq_text_datum(qs[k]->topic),
		rmq_text_datum(qs[k]->broker), Int32GetDatum(qs[k]->queue_id)};

		rmq_spi_exec(psprintf("UPDATE %s.rmq_offset SET held_by = NULL WHERE consumer_group = $1 AND topic = $2 "
						  "AND broker = $3 AND queue_id = $4", s->def.schema), 4, t, v, false);
	}
	rmq_xact_commit();
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

	rmq_member_lock(s, s->cursors, s->ncursors, ok);
	for (int i = 0; i < s->ncursors; i++)
	{
		if (ok[i])
			s->qs[i].lock_doubt = false;
		all &= ok[i];
	}
	if (all)
		s->member.locked_at = s->member.confirmed_at = GetCurrentTimestamp();
	return ok;
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
		rmq_member_trouble(s, s->def.opts.namesrv_addr ? s->def.opts.namesrv_addr : "the name server",
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
	bool		vanished = false;
	bool		due;

	if (!s->def.membership)
		return true;
	tmp = AllocSetContextCreate(TopMemoryContext, "rocketmq_stream membership", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(tmp);
	rmq_member_serve(s);
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
	rmq_member_flush_offsets(s);
	due = rmq_member_changed() || TimestampDifferenceExceeds(s->member.rebalance_at, now, REBALANCE_MS) ||
		(s->member.wanting && TimestampDifferenceExceeds(s->member.want_at, now, WANT_RETRY_MS) &&
		 now >= s->member.held_back_until);
	if (!due)
	{
		MemoryContextSwitchTo(cxt);
		MemoryContextDelete(tmp);
		return true;
	}
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
		if (!kept && !still_routed(s, &s->cursors[i]))
			vanished = true;
		else if (!kept)
			lost[nlost++] = i;
	}
	/* Queues whose broker stays away are dropped in the end, unlocked or not. */
	if (!vanished)
		s->vanished_since = 0;
	else if (s->vanished_since == 0)
		s->vanished_since = now;
	else if (TimestampDifferenceExceeds(s->vanished_since, now, VANISHED_MS))
	{
		MemoryContextSwitchTo(cxt);
		MemoryContextDelete(tmp);
		s->replan_why = "a broker of its queues left the route";
		return false;
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
		/* Start again only once one of them is free (and not held back). */
		bool	   *ok = palloc(sizeof(bool) * n);
		bool		any = false;
		int			back;
		int			m;

		s->member.want_at = now;
		m = lock_share(s, share, n, ok, false, &back);
		for (int j = 0; j < m; j++)
		{
			bool		have = false;

			for (int i = 0; i < s->ncursors && !have; i++)
				have = same_queue(&s->cursors[i], &share[j]);
			any |= !have && ok[j];
		}
		s->member.wanting = !any || back > 0;
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
