/*
 * rmq_member_restart.c — which queues a member may take from a broker that
 * has just (re)started.
 *
 * A broker that restarts forgets its queue locks and its member list, and
 * the consumer offsets it had not yet flushed (every 5 s by default).  Until
 * every member has heartbeated it again its member list is partial, so a
 * share computed from it can name queues another member still reads; the
 * lock table is empty, so the lock would be granted; and the broker's offset
 * for the queue may lag what that member already stored: taking the queue
 * would read messages twice.  So while a broker is younger than the Java
 * client's heartbeat period and a margin, a member takes from it only queues
 * it held itself before (their locks are renewed), or queues no member of
 * the group ever committed an offset for.  The broker's own uptime is asked
 * (GET_BROKER_RUNTIME_INFO): no clock of ours is compared with its clock.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "rmq_worker.h"

/* Java members heartbeat every 30 s; ours at once when a broker returns. */
#define YOUNG_BROKER_MS 40000
/* The broker lets a lock lapse after 60 s (RebalanceLockManager). */
#define LOCK_LIFE_MS 60000

/*
 * The queues this worker's last run held, and when it last had all their
 * locks renewed: what it may take again from a broker that restarted.
 * Kept in this process only: after a crash of ours nothing counts as held.
 */
static char **last_held = NULL;
static int	nlast_held = 0;
static TimestampTz last_locked_at = 0;

void
rmq_member_remember(Stream *s)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	for (int i = 0; i < nlast_held; i++)
		pfree(last_held[i]);
	if (last_held)
		pfree(last_held);
	last_held = palloc(sizeof(char *) * Max(s->ncursors, 1));
	nlast_held = 0;
	for (int i = 0; s->cursors && s->qs && i < s->ncursors; i++)
		if (!s->qs[i].released)
			last_held[nlast_held++] = psprintf("%s %s %d", s->cursors[i].topic, s->cursors[i].broker,
											   s->cursors[i].queue_id);
	last_locked_at = s->member.confirmed_at;
	MemoryContextSwitchTo(old);
}

static bool
held_last_run(const RmqCursor *q)
{
	char	   *key = psprintf("%s %s %d", q->topic, q->broker, q->queue_id);

	for (int i = 0; i < nlast_held; i++)
		if (strcmp(last_held[i], key) == 0)
			return true;
	return false;
}

/* Is q one of the queues this run reads? */
static bool
held_now(Stream *s, const RmqCursor *q)
{
	for (int i = 0; i < s->ncursors; i++)
		if (q->queue_id == s->cursors[i].queue_id && strcmp(q->broker, s->cursors[i].broker) == 0 &&
			strcmp(q->topic, s->cursors[i].topic) == 0)
			return true;
	return false;
}

/*
 * The broker's uptime in ms, asked once per address in this call; -1 when
 * it would not say (then it is not held back: as before this check).
 */
static int64
uptime(Stream *s, const char *addr, const char **addrs, int64 *ups, int *naddrs)
{
	for (int i = 0; i < *naddrs; i++)
		if (strcmp(addrs[i], addr) == 0)
			return ups[i];
	addrs[*naddrs] = addr;
	ups[*naddrs] = rmq_group_broker_uptime(&s->member.opts, addr);
	return ups[(*naddrs)++];
}

/*
 * Of the share's queues (share[0..n)), which may be locked now: take[j].
 * `first`: at the start of a run, when what the last run held may count as
 * ours.  Queues held now are always taken (their locks renewed).  Returns
 * how many were held back; s->member.held_back_until says when to ask again.
 */
int
rmq_member_hold_back(Stream *s, RmqCursor *share, int n, bool *take, bool first)
{
	volatile TimestampTz retry_at = 0;
	MemoryContext cxt = CurrentMemoryContext;
	const char **addrs = palloc(sizeof(char *) * Max(n, 1));
	int64	   *ups = palloc(sizeof(int64) * Max(n, 1));
	int			naddrs = 0;
	volatile int back = 0;
	const char *volatile asking = NULL;

	for (int j = 0; j < n; j++)
		take[j] = !first && held_now(s, &share[j]);
	PG_TRY();
	{
		for (int j = 0; j < n; j++)
		{
			int64		up;
			int64		at_broker;

			if (take[j])
				continue;
			asking = share[j].addr;
			up = uptime(s, share[j].addr, addrs, ups, &naddrs);
			if (up < 0 || up >= YOUNG_BROKER_MS)
			{
				take[j] = true;
				continue;
			}
			/*
			 * Held in our last run, with locks renewed less than their
			 * lifetime before the broker started: the broker may well have
			 * died with them ours, and nobody took the queue since.
			 */
			if ((first && held_last_run(&share[j]) &&
				 last_locked_at >= TimestampTzPlusMilliseconds(GetCurrentTimestamp(), -up - LOCK_LIFE_MS)) ||
				!rmq_query_consumer_offset(&s->def.opts, share[j].addr, s->def.group, share[j].topic,
										   share[j].broker, share[j].queue_id, &at_broker))
			{
				take[j] = true;
				continue;
			}
			back++;
			{
				TimestampTz at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), YOUNG_BROKER_MS - up);

				if (retry_at == 0 || at < retry_at)
				{
					/* once per wait: `at` moves by under a second between asks */
					if (TimestampTzPlusMilliseconds(s->member.held_back_until, 1000) < at)
						ereport(LOG,
								(errmsg("stream \"%s\": broker \"%s\" started %ld s ago; queues of group \"%s\" "
										"that other members may still read are taken over in %ld s",
										s->def.name, share[j].broker, (long) (up / 1000), s->def.group,
										(long) ((YOUNG_BROKER_MS - up + 999) / 1000)),
								 errdetail("Its member list and locks are rebuilt as members heartbeat it again.")));
					retry_at = at;
				}
			}
		}
	}
	PG_CATCH();
	{
		/* A broker we cannot ask: nothing new is taken from any broker now. */
		rmq_member_trouble(s, asking ? asking : "the name server", "ask", cxt);
		for (int j = 0; j < n; j++)
			take[j] = !first && held_now(s, &share[j]);
		back = n;
		retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
	}
	PG_END_TRY();
	if (retry_at > s->member.held_back_until)
		s->member.held_back_until = retry_at;
	return back;
}
