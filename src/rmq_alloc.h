/*
 * rmq_alloc.h — how a consumer group shares a topic's queues out, exactly
 * as the official Java client's AllocateMessageQueueAveragely does, so that
 * our streams and Java consumers in one group agree on who owns what.
 * Pure C: compiled into the unit tests too.
 */
#ifndef RMQ_ALLOC_H
#define RMQ_ALLOC_H

/*
 * Sort consumer ids as Java's Collections.sort sorts Strings.  Java
 * compares UTF-16 code units, strcmp() bytes: the orders agree for ASCII,
 * which is what client ids are made of (ours are built so).
 */
extern void rmq_alloc_sort_ids(const char **ids, int n);

/*
 * Given the group's consumer ids sorted (duplicates kept, as the broker
 * lists one per connection) and the number of the topic's queues, sorted by
 * topic, broker name and queue id: the slice [*first, *first + n) of the
 * queues that belong to `me`.  Returns n; 0 when me is not among the ids.
 */
extern int	rmq_alloc_averagely(const char *const *ids, int nids, const char *me,
								int nqueues, int *first);

#endif
