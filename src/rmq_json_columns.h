/*
 * rmq_json_columns.h — format json_columns: a JSON body's values into the
 * target's columns (rmq_json_columns.c), for rmq_sink.c's COPY rows.
 */
#ifndef RMQ_JSON_COLUMNS_H
#define RMQ_JSON_COLUMNS_H

#include "utils/jsonb.h"
#include "utils/relcache.h"

typedef struct RmqJcPlan RmqJcPlan;

/* Reads and checks json_paths (NULL: none) against the target. */
extern RmqJcPlan *rmq_jc_begin(Relation rel, Jsonb *json_paths);
/* Does json_paths name this column? */
extern bool rmq_jc_has_path(RmqJcPlan *plan, const char *attname);
/* The column is filled from the body: its json_paths path, else its name. */
extern void rmq_jc_add_column(RmqJcPlan *plan, Relation rel, int attnum);
extern int	rmq_jc_ncolumns(RmqJcPlan *plan);
extern const char *rmq_jc_column_name(RmqJcPlan *plan, int i);
/*
 * The body's fields, in COPY binary format, in the order the columns were
 * added.  A body that is not a JSON object, or a value its column's type
 * does not take, is an error naming why (and the column).
 */
extern void rmq_jc_put_row(RmqJcPlan *plan, const char *body, size_t len, StringInfo out);
extern void rmq_jc_end(RmqJcPlan *plan);

/* The json_paths object of a stream's options, or NULL. */
extern Jsonb *rmq_jc_paths_option(Jsonb *options);

#endif
