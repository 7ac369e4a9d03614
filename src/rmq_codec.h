/*
 * rmq_codec.h — RocketMQ remoting protocol codec.
 *
 * Pure functions over byte buffers: no sockets, no catalog, no ereport.
 * Built twice: into the server module (postgres.h) and, with -DFRONTEND,
 * into standalone unit tests and fuzzers (postgres_fe.h + libpgcommon),
 * so palloc and StringInfo work in both.  Decoders report problems by
 * returning false and setting *err; they never trust a length from the
 * wire before checking it against the bytes actually present.
 */
#ifndef RMQ_CODEC_H
#define RMQ_CODEC_H

#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif
#include "lib/stringinfo.h"

/* Broker's NettyDecoder limit: LEN + 4 <= 16 MiB. */
#define RMQ_MAX_FRAME_LEN (16777216 - 4)
/* Bound on a decompressed body: the broker's max message size is 4 MiB
 * compressed; a zip bomb must not be allowed to exhaust the backend. */
#define RMQ_MAX_BODY_LEN (64 * 1024 * 1024)
/*
 * Bound on the decompressed bodies of one pull answer together, checked
 * while inflating: a real broker sends at most 32 messages per answer, and
 * the Java producer refuses bodies over 4 MiB before compressing them.
 * Without it a hostile broker could pack many RMQ_MAX_BODY_LEN bombs into
 * one answer.
 */
#define RMQ_MAX_ANSWER_BODIES ((size_t) 128 * 1024 * 1024)
/*
 * Bound on the messages one pull answer decodes to.  The broker stops an
 * answer at pull_batch_size (at most 1024 here) messages, except that the
 * first batch record of a BatchCQ queue always goes out whole, and a batch
 * record holds at most 32767 messages (INNER_NUM is a Java short).
 */
#define RMQ_MAX_ANSWER_MESSAGES 65536
#define RMQ_MAX_INNER_MESSAGES 32767
#define RMQ_JSON_MAX_DEPTH 64
/*
 * What parsing JSON may allocate, as a multiple of its length: a node is
 * 48 bytes: route and header JSON as brokers write it needs about 4 times
 * its length; only contrived input ("[1,1,...]", 28 times) needs more, and
 * is refused.
 */
#define RMQ_JSON_MAX_EXPANSION 16
/*
 * Frame headers are small (extFields, a remark): a few hundred bytes from a
 * real broker.  Past this a peer is not speaking RocketMQ.
 */
#define RMQ_MAX_HEADER_LEN (1024 * 1024)

/* ---------- JSON (tolerant of fastjson's non-standard output) ---------- */
typedef enum RmqJsonType
{
	RMQ_JSON_NULL, RMQ_JSON_BOOL, RMQ_JSON_NUMBER, RMQ_JSON_STRING,
	RMQ_JSON_ARRAY, RMQ_JSON_OBJECT
} RmqJsonType;

typedef struct RmqJson RmqJson;
struct RmqJson
{
	RmqJsonType type;
	char	   *str;			/* STRING value, NUMBER text, BOOL "true"/"false" */
	char	   *key;			/* member key as text when parent is an object;
								 * NULL for a key that was itself an object or
								 * array (fastjson writes Map<Object,..> so) */
	RmqJson    *child;			/* first element / member */
	RmqJson    *next;			/* next sibling */
	int			nchildren;
};

extern RmqJson *rmq_json_parse(const char *s, size_t len, char **err);
extern RmqJson *rmq_json_get(const RmqJson *obj, const char *key);
extern const char *rmq_json_get_str(const RmqJson *obj, const char *key);
extern bool rmq_json_get_int64(const RmqJson *obj, const char *key, int64 *out);
/* A whole decimal int64 (no trailing bytes); false for NULL or junk. */
extern bool rmq_parse_int64(const char *s, int64 *out);
extern void rmq_json_escape(StringInfo out, const char *s);

/* ---------- frames ---------- */
#define RMQ_FLAG_RESPONSE 1
#define RMQ_FLAG_ONEWAY 2
#define RMQ_SERIALIZE_JSON 0
#define RMQ_SERIALIZE_ROCKETMQ 1

typedef struct RmqCommand
{
	int32		code;
	int32		opaque;
	int32		flag;
	int32		version;
	const char *language;		/* JSON enum name (binary byte is mapped) */
	char	   *remark;
	int			nfields;		/* extFields */
	char	  **keys;
	char	  **values;
	int			fields_cap;
	const char *body;			/* points into the decoded frame buffer */
	uint32		body_len;
} RmqCommand;

extern void rmq_cmd_init(RmqCommand *cmd, int32 code);
extern void rmq_cmd_add(RmqCommand *cmd, const char *key, const char *value);
extern void rmq_cmd_add_int64(RmqCommand *cmd, const char *key, int64 value);
extern const char *rmq_cmd_field(const RmqCommand *cmd, const char *key);
extern bool rmq_cmd_field_int64(const RmqCommand *cmd, const char *key, int64 *out);

/*
 * Sign a request for a broker with ACL as the official client does: adds
 * AccessKey and Signature (HMAC-SHA1 over the sorted field values and the
 * body).  Sign last: a field added afterwards voids the signature.
 */
extern bool rmq_sign(RmqCommand *cmd, const char *access_key, const char *secret_key, char **err);

/* Encode a whole frame, 4-byte length included, with a JSON header. */
extern void rmq_frame_encode(StringInfo out, const RmqCommand *cmd);

/*
 * Decode one frame.  buf/len are the LEN bytes that follow the 4-byte
 * length prefix.  Strings are palloc'd; body points into buf.
 */
extern bool rmq_frame_decode(const char *buf, size_t len, RmqCommand *cmd, char **err);

/* Read the 4-byte big-endian length prefix; false if out of range. */
extern bool rmq_frame_length(const unsigned char *prefix, uint32 *len, char **err);

/* ---------- messages ---------- */
typedef struct RmqMessage
{
	int32		queue_id;
	int32		flag;
	int64		queue_offset;
	int64		physical_offset;
	int32		sysflag;
	int64		born_timestamp;
	char		born_host[64];
	int64		store_timestamp;
	char		store_host[64];
	int32		reconsume_times;
	int64		prepared_tx_offset;
	char	   *topic;
	const char *body;			/* decompressed when the record was compressed */
	uint32		body_len;
	/*
	 * offsetMsgId: store host + commit-log offset.  Empty for the messages
	 * of an inner batch, which share one stored record (Java leaves their
	 * offsetMsgId null).
	 */
	char		msg_id[64];
	int			nprops;
	char	  **prop_keys;		/* valid UTF-8 without NUL: see rmq_props_parse */
	char	  **prop_values;
	const char *props_raw;		/* the property string as stored */
	uint32		props_len;
	bool		props_lossy;	/* some text of it could not be kept exactly */
	/* Queue offsets it stands for: 1, or a damaged inner batch's INNER_NUM. */
	int32		span;
	/*
	 * Under RMQ_DECODE_KEEP_DAMAGED: why this record could not be decoded
	 * (NULL if it could).  body is then the whole raw record; the header
	 * fields and properties hold what was read before the damage.
	 */
	const char *damage;
} RmqMessage;

#define RMQ_SYSFLAG_COMPRESSED 0x1
#define RMQ_SYSFLAG_BORNHOST_V6 0x10
#define RMQ_SYSFLAG_STOREHOST_V6 0x20
#define RMQ_SYSFLAG_NEED_UNWRAP 0x40
#define RMQ_SYSFLAG_INNER_BATCH 0x80
#define RMQ_SYSFLAG_COMPRESSION_MASK 0x700
#define RMQ_COMPRESSION_LZ4 0x100
#define RMQ_COMPRESSION_ZSTD 0x200
#define RMQ_COMPRESSION_ZLIB 0x300

/* flags of rmq_decode_messages */
#define RMQ_DECODE_CHECK_CRC 0x1
/*
 * A record whose size prefix fits but whose content does not decode (CRC,
 * compression, inner lengths) becomes a message with `damage` set instead
 * of failing the whole answer: one bad message is a poison message, not a
 * broken connection.  A bad magic code still fails the answer (the records
 * are no longer aligned), as does the answer's body budget.
 */
#define RMQ_DECODE_KEEP_DAMAGED 0x2

/*
 * Decode the back-to-back stored-message records of a pull body.  Messages
 * are appended to *msgs (grown with repalloc), *nmsgs updated.  A record of
 * a BatchCQ queue flagged INNER_BATCH and NEED_UNWRAP is unpacked into its
 * messages, one per queue offset, as the Java consumer does.
 */
extern bool rmq_decode_messages(const char *buf, size_t len, int flags,
								RmqMessage **msgs, int *nmsgs, char **err);
extern const char *rmq_msg_prop(const RmqMessage *m, const char *key);

/*
 * properties: key 0x01 value 0x02 ...  Decoded as Java decodes them (UTF-8,
 * each malformed sequence read as U+FFFD), and a NUL character, which
 * PostgreSQL text cannot hold, also becomes U+FFFD; *lossy (may be NULL)
 * tells whether either happened.
 */
extern void rmq_props_parse(const char *s, size_t len, int *n, char ***keys, char ***values,
							bool *lossy);
/* s[0..len) as valid UTF-8 without NUL (see above), NUL-terminated. */
extern char *rmq_utf8_sanitize(const char *s, size_t len, bool *lossy);
extern void rmq_props_append(StringInfo out, const char *key, const char *value);

extern bool rmq_decompress(int32 sysflag, const char *in, size_t inlen,
						   char **out, size_t *outlen, char **err);
/* The same, failing past limit bytes (never more than RMQ_MAX_BODY_LEN). */
extern bool rmq_decompress_limited(int32 sysflag, const char *in, size_t inlen, size_t limit,
								   char **out, size_t *outlen, char **err);
extern bool rmq_compress_zlib(const char *in, size_t inlen, StringInfo out);
extern uint32 rmq_crc32(const char *buf, size_t len);

/* ---------- request/response helpers ---------- */
typedef struct RmqBrokerData
{
	char	   *name;
	char	   *cluster;
	char	   *master_addr;	/* brokerAddrs[0], may be NULL */
} RmqBrokerData;

typedef struct RmqQueueData
{
	char	   *broker_name;
	int32		read_queue_nums;
	int32		write_queue_nums;
	int32		perm;
} RmqQueueData;

typedef struct RmqRoute
{
	int			nbrokers;
	RmqBrokerData *brokers;
	int			nqueues;
	RmqQueueData *queues;
} RmqRoute;

/*
 * Bounds on a route.  A large real cluster has tens of brokers and topics of
 * up to a few hundred queues per broker; thousands of queues per broker, or
 * more brokers than this, is a name server that is broken or hostile.
 */
#define RMQ_MAX_ROUTE_JSON (4 * 1024 * 1024)
#define RMQ_MAX_ROUTE_BROKERS 1024
#define RMQ_MAX_BROKER_QUEUES 1024
#define RMQ_MAX_TOPIC_QUEUES 65536

#define RMQ_PERM_READ 4
#define RMQ_PERM_WRITE 2

extern bool rmq_parse_route(const char *json, size_t len, RmqRoute *route, char **err);
extern bool rmq_parse_cluster_info(const char *json, size_t len, RmqRoute *route, char **err);
extern const char *rmq_route_broker_addr(const RmqRoute *route, const char *broker);

/* Split "host:port" (IPv6 as [h]:p or h:...:p, last colon wins). */
extern bool rmq_split_addr(const char *addr, char *host, size_t hostlen, int *port);

/* Java String.hashCode over UTF-16 units of a UTF-8 string (tag codes). */
extern int32 rmq_java_hash(const char *s);

/* Build the SEND_MESSAGE_V2 / batch pieces. */
extern void rmq_batch_append(StringInfo out, int32 flag, const char *body, uint32 body_len,
							 const char *props, uint32 props_len);

/* Uppercase hex. */
extern void rmq_hex(const unsigned char *in, size_t len, char *out);

/* ---------- consumer groups (rmq_group_proto.c) ---------- */
typedef struct RmqMq
{
	const char *topic;
	const char *broker;
	int32		queue_id;
} RmqMq;

typedef struct RmqSubscription
{
	const char *topic;
	const char *expression;		/* tag expression as given; NULL: "*" */
	int64		version;		/* constant between heartbeats */
} RmqSubscription;

/* More members than any real group; past this a broker is broken. */
#define RMQ_MAX_GROUP_MEMBERS 65536

extern void rmq_group_heartbeat_body(StringInfo out, const char *client_id, const char *group,
									 const char *consume_from, const RmqSubscription *subs, int nsubs);
extern void rmq_group_subscription_json(StringInfo out, const RmqSubscription *sub);
extern void rmq_group_mq_body(StringInfo out, const char *group, const char *client_id,
							  const RmqMq *mqs, int n);
extern bool rmq_parse_consumer_ids(const char *json, size_t len, char ***ids, int *n, char **err);
extern bool rmq_parse_locked(const char *json, size_t len, const RmqMq *asked, int nasked,
							 bool *locked, char **err);
extern bool rmq_parse_uptime(const char *json, size_t len, int64 *uptime_ms, char **err);

/* Response / request codes used by the client. */
#define RMQ_SEND_MESSAGE_V2 310
#define RMQ_SEND_BATCH_MESSAGE 320
#define RMQ_PULL_MESSAGE 11
#define RMQ_QUERY_CONSUMER_OFFSET 14
#define RMQ_UPDATE_CONSUMER_OFFSET 15
#define RMQ_UPDATE_AND_CREATE_TOPIC 17
#define RMQ_SEARCH_OFFSET_BY_TIMESTAMP 29
#define RMQ_GET_MAX_OFFSET 30
#define RMQ_GET_MIN_OFFSET 31
#define RMQ_HEART_BEAT 34
#define RMQ_UNREGISTER_CLIENT 35
#define RMQ_GET_CONSUMER_LIST_BY_GROUP 38
#define RMQ_NOTIFY_CONSUMER_IDS_CHANGED 40
#define RMQ_LOCK_BATCH_MQ 41
#define RMQ_UNLOCK_BATCH_MQ 42
#define RMQ_GET_CONSUMER_RUNNING_INFO 307
#define RMQ_GET_ROUTEINFO_BY_TOPIC 105
#define RMQ_GET_BROKER_CLUSTER_INFO 106
#define RMQ_GET_BROKER_RUNTIME_INFO 28

#define RMQ_SUCCESS 0
#define RMQ_SYSTEM_ERROR 1
#define RMQ_SYSTEM_BUSY 2
#define RMQ_REQUEST_CODE_NOT_SUPPORTED 3
#define RMQ_NO_PERMISSION 16
#define RMQ_TOPIC_NOT_EXIST 17
#define RMQ_PULL_NOT_FOUND 19
#define RMQ_PULL_RETRY_IMMEDIATELY 20
#define RMQ_PULL_OFFSET_MOVED 21
#define RMQ_QUERY_NOT_FOUND 22
#define RMQ_FLOW_CONTROL 215
#define RMQ_GO_AWAY 1500

#define RMQ_PULL_FLAG_SUSPEND 0x2
#define RMQ_PULL_FLAG_SUBSCRIPTION 0x4

/* Version we announce: >= 401 gives standard route JSON, <= 475 avoids
 * GO_AWAY semantics (V5_3_1). */
#define RMQ_CLIENT_VERSION 475

#endif
