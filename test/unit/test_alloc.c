/*
 * test_alloc.c — src/rmq_alloc.c against the official client: every line
 * of alloc_vectors.tsv (test/java/AllocVectors.java) is one member's share
 * as AllocateMessageQueueAveragely computed it.
 */
#include "unit.h"
#include "rmq_alloc.h"

#define VECTORS "test/unit/alloc_vectors.tsv"

typedef struct Q
{
	char		broker[64];
	int			id;
} Q;

static int
cmp_q(const void *a, const void *b)
{
	const Q    *x = a,
			   *y = b;
	int			c = strcmp(x->broker, y->broker);

	return c ? c : x->id - y->id;
}

/* Split s in place at sep; up to max pieces. */
static int
split(char *s, char sep, char **out, int max)
{
	int			n = 0;

	if (*s == '\0')
		return 0;
	while (n < max)
	{
		char	   *e = strchr(s, sep);

		out[n++] = s;
		if (!e)
			break;
		*e = '\0';
		s = e + 1;
	}
	return n;
}

TEST(test_alloc_java_vectors)
{
	FILE	   *f = fopen(getenv("RMQ_ALLOC_VECTORS") ? getenv("RMQ_ALLOC_VECTORS") : VECTORS, "r");
	char		line[8192];
	int			lines = 0,
				bad = 0;

	CHECK_MSG(f != NULL, "cannot open %s", VECTORS);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
	{
		char	   *col[4],
				   *ids[64],
				   *brokers[8];
		const char *sorted[64];
		Q			qs[256];
		int			nids,
					nb,
					nq = 0,
					first,
					n;
		StringInfoData got;

		line[strcspn(line, "\n")] = '\0';
		if (split(line, '\t', col, 4) < 3)
			continue;
		if (split(line, '\t', col, 4) == 3)
			col[3] = "";
		nids = split(col[0], ',', ids, 64);
		nb = split(col[1], ';', brokers, 8);
		for (int b = 0; b < nb; b++)
		{
			char	   *colon = strrchr(brokers[b], ':');
			int			count = atoi(colon + 1);

			*colon = '\0';
			for (int q = 0; q < count && nq < 256; q++)
			{
				strlcpy(qs[nq].broker, brokers[b], sizeof(qs[nq].broker));
				qs[nq++].id = q;
			}
		}
		qsort(qs, nq, sizeof(Q), cmp_q);
		for (int i = 0; i < nids; i++)
			sorted[i] = ids[i];
		rmq_alloc_sort_ids(sorted, nids);
		n = rmq_alloc_averagely(sorted, nids, col[2], nq, &first);
		initStringInfo(&got);
		for (int i = 0; i < n; i++)
			appendStringInfo(&got, "%s%s/%d", i ? "," : "", qs[first + i].broker, qs[first + i].id);
		lines++;
		if (strcmp(got.data, col[3]) != 0 && bad++ < 5)
			printf("  me %s: got \"%s\", Java \"%s\"\n", col[2], got.data, col[3]);
		pfree(got.data);
	}
	fclose(f);
	CHECK_INT(bad, 0);
	CHECK(lines > 1000);
}

TEST(test_alloc_edges)
{
	const char *ids[] = {"a", "b", "c"};
	int			first;

	CHECK_INT(rmq_alloc_averagely(ids, 3, "b", 0, &first), 0);
	CHECK_INT(rmq_alloc_averagely(ids, 0, "b", 8, &first), 0);
	CHECK_INT(rmq_alloc_averagely(ids, 3, "z", 8, &first), 0);
	/* 8 queues over 3: 3, 3, 2 */
	CHECK_INT(rmq_alloc_averagely(ids, 3, "a", 8, &first), 3);
	CHECK_INT(first, 0);
	CHECK_INT(rmq_alloc_averagely(ids, 3, "c", 8, &first), 2);
	CHECK_INT(first, 6);
	/* more members than queues: the last gets none */
	CHECK_INT(rmq_alloc_averagely(ids, 3, "c", 2, &first), 0);
}

void		run_alloc_tests(void);

void
run_alloc_tests(void)
{
	RUN(test_alloc_java_vectors);
	RUN(test_alloc_edges);
}
