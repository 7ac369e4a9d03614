/*
 * rmq_alloc.c — the queue share of one member of a consumer group: the
 * arithmetic of the Java client's AllocateMessageQueueAveragely (contiguous
 * slices, the first `nqueues % nids` members one queue larger), checked
 * against that class over thousands of cases by test/unit/test_alloc.c.
 */
#include "postgres.h"

#include "rmq_alloc.h"

static int
cmp_id(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

void
rmq_alloc_sort_ids(const char **ids, int n)
{
	if (n > 1)
		qsort(ids, n, sizeof(char *), cmp_id);
}

int
rmq_alloc_averagely(const char *const *ids, int nids, const char *me, int nqueues, int *first)
{
	int			index = -1;
	int			mod,
				avg,
				start;

	*first = 0;
	if (nqueues <= 0 || nids <= 0)
		return 0;
	/* Java's indexOf: the first of duplicate ids. */
	for (int i = 0; i < nids && index < 0; i++)
		if (strcmp(ids[i], me) == 0)
			index = i;
	if (index < 0)
		return 0;
	mod = nqueues % nids;
	if (nqueues <= nids)
		avg = 1;
	else
		avg = nqueues / nids + (mod > 0 && index < mod ? 1 : 0);
	start = (mod > 0 && index < mod) ? index * avg : index * avg + mod;
	*first = start;
	/* Past the end when ids repeat or members outnumber queues: none. */
	return Max(Min(avg, nqueues - start), 0);
}
