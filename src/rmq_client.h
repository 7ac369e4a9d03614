/*
 * rmq_client.h — the RocketMQ client as it runs inside a backend:
 * connections, caches and RPCs.  Errors are ereport()ed.
 */
#ifndef RMQ_CLIENT_H
#define RMQ_CLIENT_H

#include "postgres.h"
#include "utils/jsonb.h"
#include "nodes/nodes.h"
#include "utils/timestamp.h"
#include "rmq_codec.h"

/* settings (rocketmq_stream.*) */
extern char *rmq_namesrv_addr;
extern int	rmq_pull_batch_size;
extern int	rmq_pull_timeout_ms;
extern int	rmq_request_timeout_ms;
extern int	rmq_connection_cache_size;
extern bool rmq_check_crc;

extern char *rmq_server;

/* TLS towards name servers and brokers, named as libpq names its modes. */
typedef enum RmqTlsMode
{
	RMQ_TLS_DISABLE,
	RMQ_TLS_PREFER,
	RMQ_TLS_REQUIRE,
	RMQ_TLS_VERIFY_CA,
	RMQ_TLS_VERIFY_FULL
} RmqTlsMode;

/* How to reach a cluster securely: from a foreign server and user mapping. */
typedef struct RmqSecurity
{
	const char *server;			/* the foreign server's name; NULL: none */
	RmqTlsMode	tls;
	const char *tls_root_cert;
	const char *tls_cert;
	const char *tls_key;
	bool		has_mapping;	/* the user has a user mapping on the server */
	const char *access_key;		/* NULL: requests go unsigned */
	const char *secret_key;
	const char *profile;		/* identity for the connection cache; "" */
} RmqSecurity;

/* Per-call settings: GUC defaults, overridden by a jsonb options argument. */
typedef struct RmqOptions
{
	RmqSecurity sec;
	const char *namesrv_addr;
	int			pull_batch_size;
	int			pull_timeout_ms;
	int			request_timeout_ms;
	bool		check_crc;
	bool		fail_on_data_loss;
	bool		skip_undecodable;	/* rmq_create_rdd: on_error = skip */
	const char *tag_filter;		/* NULL or "*" = everything */
	int			queue_id;		/* rmq_send: -1 = round robin */
	const char *broker;			/* rmq_send: NULL = any */
} RmqOptions;

extern void rmq_options_init(RmqOptions *o, Jsonb *opts);
/* rmq_profile.c: a foreign server of the rocketmq_stream wrapper. */
extern void rmq_options_use_server(RmqOptions *o, const char *name);
extern uint64 rmq_profile_epoch;
extern void rmq_profile_init(void);
extern void rmq_profile_mask_activity(Node *stmt, const char *query);
/* A scalar of a jsonb object as text, NULL if absent or null. */
extern const char *rmq_jsonb_text(Jsonb *obj, const char *key);

typedef struct RmqConn RmqConn;

/* The last connection failure was a timeout, not a refusal or reset. */
extern bool rmq_conn_timed_out;

extern RmqConn *rmq_conn_get(const char *addr, const RmqSecurity *sec, int timeout_ms);
extern const char *rmq_conn_addr(RmqConn *c);
extern int32 rmq_conn_send(RmqConn *c, RmqCommand *cmd, TimestampTz deadline);
extern void rmq_conn_recv(RmqConn *c, TimestampTz deadline, RmqCommand *resp);
extern bool rmq_conn_recv_soft(RmqConn *c, TimestampTz soft, TimestampTz deadline, RmqCommand *resp);
extern bool rmq_conn_wait_any(RmqConn **cs, int n, TimestampTz until);
extern void rmq_conn_done(RmqConn *c);
extern bool rmq_conn_serve(const char *addr, const RmqSecurity *sec, int timeout_ms);
extern void rmq_conn_discard(RmqConn *c);
extern void rmq_conn_discard_addr(const char *addr);
extern void rmq_conn_reset_all(void);
extern void rmq_conn_release_aborted(int level);

extern TimestampTz rmq_deadline(int timeout_ms);

/* One request, one response, on the cached connection to addr. */
extern void rmq_rpc(const RmqOptions *o, const char *addr, RmqCommand *req, RmqCommand *resp);
/* Same against the options' name servers "h:p;h:p", failing over on connect. */
extern void rmq_namesrv_rpc(const RmqOptions *o, RmqCommand *req, RmqCommand *resp);

extern void rmq_broker_error(const char *addr, const char *what, const RmqCommand *resp) pg_attribute_noreturn();

/* Route by topic (cached; refresh forces a name-server round trip). */
extern RmqRoute *rmq_route(const RmqOptions *o, const char *topic, bool refresh);
extern const char *rmq_broker_addr(const RmqOptions *o, const char *topic, const char *broker);
extern const RmqQueueData *rmq_route_queue(const RmqRoute *r, const char *broker);

extern int64 rmq_queue_offset(const RmqOptions *o, const char *addr, int code,
							  const char *topic, const char *broker, int32 qid);
extern int64 rmq_search_offset(const RmqOptions *o, const char *addr, const char *topic,
							   const char *broker, int32 qid, int64 ts_ms);
extern bool rmq_query_consumer_offset(const RmqOptions *o, const char *addr, const char *group,
									  const char *topic, const char *broker, int32 qid, int64 *out);
extern void rmq_update_consumer_offset(const RmqOptions *o, const char *addr, const char *group,
									   const char *topic, const char *broker, int32 qid, int64 offset);

/* Consumer groups (rmq_group.c) */
extern void rmq_group_heartbeat(const RmqOptions *o, const char *addr, const char *body);
extern char **rmq_group_members(const RmqOptions *o, const char *addr, const char *group, int *n);
extern void rmq_group_lock(const RmqOptions *o, const char *addr, const char *group, const char *client_id,
						   const RmqMq *mqs, int n, bool *locked);
extern void rmq_group_unlock(const RmqOptions *o, const char *addr, const char *group, const char *client_id,
							 const RmqMq *mqs, int n);
extern int64 rmq_group_broker_uptime(const RmqOptions *o, const char *addr);
extern void rmq_group_unregister(const RmqOptions *o, const char *addr, const char *group,
								 const char *client_id);

/*
 * Requests a broker sends us on a connection of ours (consumer list changes,
 * running-info queries): a handler may fill `reply` and return true; false
 * answers "not supported" (nothing, for oneway requests).  It must not
 * throw: it runs while a connection is being read.
 */
typedef bool (*RmqRequestHandler) (const char *addr, const RmqCommand *req, RmqCommand *reply);
extern RmqRequestHandler rmq_request_handler;

/* Pull */
typedef struct RmqPullResult
{
	int32		code;
	int64		next_begin;
	int64		min_offset;
	int64		max_offset;
	const char *remark;
	const char *body;
	uint32		body_len;
} RmqPullResult;

extern void rmq_build_pull(RmqCommand *cmd, const char *group, const char *topic,
						   const char *broker, int32 qid, int64 offset, int32 max_msgs,
						   int64 suspend_ms, const char *subscription);
extern void rmq_parse_pull(const char *addr, const RmqCommand *resp, RmqPullResult *res);

/* Tag filter as the broker and the Java client apply it. */
typedef struct RmqTagFilter
{
	bool		all;
	int			ntags;
	char	  **tags;
	char	   *expression;		/* normalised "a || b" sent to the broker */
} RmqTagFilter;

extern void rmq_tag_filter_parse(const char *expr, RmqTagFilter *f);
extern bool rmq_tag_filter_match(const RmqTagFilter *f, const char *tags);

extern void rmq_client_init(void);

#endif
