/*
 * fuzz_json.c — rmq_json_parse and its accessors.
 *
 * Invariants checked on every tree that parses:
 *   - nchildren matches the sibling list; scalars have text, containers none;
 *   - array members have no key; rmq_json_get finds each object member's key
 *     (the first member with that key);
 *   - rmq_json_escape of any string value parses back to the same string.
 * Suggested: -max_len=262144 -dict=test/fuzz/json.dict
 */
#include "fuzz_common.h"

static void
check_string_roundtrip(const char *s)
{
	StringInfoData buf;
	RmqJson    *r;
	char	   *err = NULL;

	initStringInfo(&buf);
	rmq_json_escape(&buf, s);
	r = rmq_json_parse(buf.data, buf.len, &err);
	FUZZ_ASSERT(r != NULL);
	FUZZ_ASSERT(r->type == RMQ_JSON_STRING);
	FUZZ_ASSERT(strcmp(r->str, s) == 0);
}

static void
walk(const RmqJson *n, int depth)
{
	int			count = 0;
	int64		v;

	FUZZ_ASSERT(depth <= RMQ_JSON_MAX_DEPTH);
	switch (n->type)
	{
		case RMQ_JSON_NULL:
		case RMQ_JSON_BOOL:
		case RMQ_JSON_NUMBER:
			FUZZ_ASSERT(n->str != NULL && n->str[0] != '\0');
			FUZZ_ASSERT(n->child == NULL && n->nchildren == 0);
			break;
		case RMQ_JSON_STRING:
			FUZZ_ASSERT(n->str != NULL);
			FUZZ_ASSERT(n->child == NULL && n->nchildren == 0);
			check_string_roundtrip(n->str);
			break;
		case RMQ_JSON_ARRAY:
		case RMQ_JSON_OBJECT:
			FUZZ_ASSERT(n->str == NULL);
			for (const RmqJson *c = n->child; c; c = c->next)
			{
				count++;
				if (n->type == RMQ_JSON_ARRAY)
					FUZZ_ASSERT(c->key == NULL);
				else if (c->key != NULL && count <= 64)	/* lookups are linear */
				{
					RmqJson    *found = rmq_json_get(n, c->key);
					const char *s = rmq_json_get_str(n, c->key);

					FUZZ_ASSERT(found != NULL && strcmp(found->key, c->key) == 0);
					if (found == c && c->type != RMQ_JSON_ARRAY &&
						c->type != RMQ_JSON_OBJECT && c->type != RMQ_JSON_NULL)
						FUZZ_ASSERT(s == c->str);
					if (rmq_json_get_int64(n, c->key, &v))
						FUZZ_ASSERT(s != NULL);
				}
				walk(c, depth + 1);
			}
			FUZZ_ASSERT(count == n->nchildren);
			break;
		default:
			FUZZ_ASSERT(!"bad node type");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *err = NULL;
	RmqJson    *root = rmq_json_parse((const char *) data, size, &err);

	if (root == NULL)
		FUZZ_ASSERT(err != NULL);
	else
	{
		int64		v;

		walk(root, 0);
		/* the keys the client actually asks for */
		(void) rmq_json_get_str(root, "code");
		(void) rmq_json_get_int64(root, "opaque", &v);
		(void) rmq_json_get(rmq_json_get(root, "brokerAddrs"), "0");
		(void) rmq_json_get_int64(root, "", &v);
	}
	fuzz_reset();
	return 0;
}
