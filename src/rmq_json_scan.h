/*
 * rmq_json_scan.h — how format json_columns reads a body: json_paths as
 * paths (rmq_json_paths.c), the wanted paths as a tree, and one pass over
 * a JSON document noting where each wanted value lies (rmq_json_scan.c).
 * Used by rmq_json_columns.c, which converts those values.
 */
#ifndef RMQ_JSON_SCAN_H
#define RMQ_JSON_SCAN_H

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

typedef enum JvType
{
	JV_MISSING = 0, JV_NULL, JV_STRING, JV_NUMBER, JV_BOOL, JV_OBJECT, JV_ARRAY
} JvType;

/* Where a wanted value lies in the body being scanned. */
typedef struct JcValue
{
	JvType		type;
	bool		escaped;		/* a string with backslash escapes */
	const char *start;			/* its JSON text, quotes included */
	int			len;
} JcValue;

/* One step of a path: an object member, or an array element. */
typedef struct JcStep
{
	char	   *key;			/* NULL for an array index */
	int			keylen;
	int			index;
} JcStep;

/* A column named in json_paths, and its path. */
typedef struct JcPath
{
	char	   *column;
	char	   *text;			/* as given, for messages */
	List	   *steps;			/* JcStep */
} JcPath;

/*
 * The wanted paths as a tree.  Slots are numbered depth first, so a node's
 * subtree owns the contiguous slots [lo, hi): a key seen twice (the last
 * one wins, as in jsonb) clears what its first value left there.
 */
typedef struct JcNode
{
	JcStep		step;			/* keys in UTF-8, as bodies are */
	bool		wanted;
	int			slot;
	int			lo,
				hi;
	List	   *children;
	bool		has_keys,
				has_indexes;
} JcNode;

/* A scan: the body, and what it found. */
typedef struct JcScan
{
	const char *s,
			   *p,
			   *end;
	JcValue    *slots;
	StringInfoData keybuf;		/* an escaped key, unescaped */
} JcScan;

/* rmq_json_paths.c */
extern List *jc_read_paths(Relation rel, Jsonb *json_paths);
extern JcStep *jc_key_step(const char *s, int len);

/* rmq_json_scan.c */
extern const char *const jc_type_names[];
extern JcNode *jc_tree_insert(JcNode *root, List *steps);
extern int	jc_number_slots(JcNode *root);
extern void jc_scan_body(JcScan *sc, JcNode *root, int nslots, const char *body, size_t len);
extern bool jc_unescape(const char *s, int len, StringInfo out, const char **why);
extern JcValue *jc_array_elements(JcScan *sc, const JcValue *v, int *ndims, int *dims, int *nelems);

#endif
