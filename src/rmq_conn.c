/*
 * rmq_conn.c — TCP connections to name servers and brokers.
 *
 * Sockets are non-blocking; every wait goes through a WaitEventSet holding
 * MyLatch, postmaster death and the socket, with an explicit deadline, and
 * every wake-up runs CHECK_FOR_INTERRUPTS(), so cancel, terminate and
 * statement_timeout work while we wait on the network.
 *
 * A connection is "busy" while an operation holds it: it is not handed to
 * anyone else nor evicted.  One whose operation was interrupted by an error
 * (cancel, timeout, bad frame) is thrown away when the (sub)transaction that
 * took it aborts: its byte stream can no longer be trusted.
 *
 * What a peer sends is bounded before it costs memory: one frame is read at
 * a time (at most 16 MiB, the broker's own limit); its header is decoded in
 * a scratch context that is reset after every frame; a response is handed
 * to the caller only if a request of ours is waiting for it, everything
 * else (answers to nothing we asked, requests the server sends us) is
 * dropped as it is read; and the caller's deadline is checked after every
 * frame, so a stream of frames cannot hold a call past it.
 */
#include "postgres.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "rmq_tls.h"

#define READ_CHUNK (256 * 1024)
#define MAX_CONNS 1100
/* Requests of ours whose answer has not come: a stream's pulls, at most. */
#define MAX_WAITING 65536

struct RmqConn
{
	char		addr[256];
	pgsocket	sock;
	WaitEventSet *wes;
	int			sock_pos;		/* position of the socket event in wes */
	StringInfoData rbuf;		/* bytes received, not yet consumed */
	int			rpos;
	bool		busy;
	int			busy_level;		/* transaction nesting level that took it */
	int32		next_opaque;
	uint64		last_used;
	MemoryContext scratch;		/* one frame's decoded header */
	char	   *profile;		/* the security profile it was opened with */
	SSL		   *ssl;			/* NULL: plain TCP */
	char	   *access_key;		/* sign requests as this user; NULL: don't */
	char	   *secret_key;
	bool		answered;		/* something came back on it */
	bool		plain_refused;	/* plain TCP, and the peer hung up unanswered */
	int32	   *waiting;		/* opaques of requests awaiting an answer */
	int			nwaiting;
	int			waiting_cap;
};

static void conn_buf_init(StringInfo s, int size);

/*
 * Was the last connection failure a timeout (a peer that accepted but did
 * not answer) rather than a refusal or reset?  Retrying a refusal is cheap;
 * retrying a timeout costs a whole timeout.
 */
bool		rmq_conn_timed_out = false;

static RmqConn **conns = NULL;
static uint64 conn_epoch = 0;
static int	nconns = 0;
static uint64 use_clock = 0;
static MemoryContext conn_cxt = NULL;

TimestampTz
rmq_deadline(int timeout_ms)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
}

const char *
rmq_conn_addr(RmqConn *c)
{
	return c->addr;
}

static void
conn_close(RmqConn *c)
{
	if (c->wes)
		FreeWaitEventSet(c->wes);
	if (c->sock != PGINVALID_SOCKET)
		closesocket(c->sock);
	if (c->rbuf.data)
		pfree(c->rbuf.data);
	if (c->scratch)
		MemoryContextDelete(c->scratch);
	if (c->ssl)
		rmq_tls_free(c->ssl);
	if (c->waiting)
		pfree(c->waiting);
	pfree(c);
}

void
rmq_conn_discard(RmqConn *c)
{
	for (int i = 0; i < nconns; i++)
		if (conns[i] == c)
		{
			conns[i] = conns[--nconns];
			break;
		}
	conn_close(c);
}

/*
 * After an error in the middle of a request: the connection's state is
 * unknown, so it goes, unless the error already discarded it (c may then
 * point to freed memory: it is only compared).
 */
static void
conn_discard_if_open(RmqConn *c)
{
	for (int i = 0; i < nconns; i++)
		if (conns[i] == c)
		{
			rmq_conn_discard(c);
			return;
		}
}

/* Throw away every cached connection to addr (after that broker failed). */
void
rmq_conn_discard_addr(const char *addr)
{
	for (int i = nconns - 1; i >= 0; i--)
		if (strcmp(conns[i]->addr, addr) == 0)
			rmq_conn_discard(conns[i]);
}

void
rmq_conn_reset_all(void)
{
	while (nconns > 0)
		rmq_conn_discard(conns[0]);
}

/*
 * Wait until the socket is ready for `events`.  Returns false once `soft`
 * passes (0: no soft limit); raises an error, after discarding the
 * connection, once the hard deadline passes.
 */
static bool
conn_wait(RmqConn *c, uint32 events, TimestampTz soft, TimestampTz deadline, const char *what)
{
	WaitEvent	ev;

	ModifyWaitEvent(c->wes, c->sock_pos, events, NULL);
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz until = (soft != 0 && soft < deadline) ? soft : deadline;
		long		timeout = TimestampDifferenceMilliseconds(now, until);
		int			rc;

		if (timeout <= 0)
		{
			char		addr[256];

			if (until == soft)
				return false;
			strlcpy(addr, c->addr, sizeof(addr));
			rmq_conn_discard(c);
			rmq_conn_timed_out = true;
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("timed out %s RocketMQ at %s", what, addr)));
		}
		rc = WaitEventSetWait(c->wes, timeout, &ev, 1, PG_WAIT_EXTENSION);
		if (rc > 0 && (ev.events & WL_LATCH_SET))
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		/*
		 * Where interrupts are held (offsets sent to the broker while a
		 * transaction commits) a cancel or terminate still ends the wait:
		 * as an error the caller turns into a warning.
		 */
		if (QueryCancelPending || ProcDiePending)
		{
			char		addr[256];

			strlcpy(addr, c->addr, sizeof(addr));
			rmq_conn_discard(c);
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("canceled while %s RocketMQ at %s", what, addr)));
		}
		if (rc > 0 && (ev.events & events))
			return true;
	}
}

static void
conn_fail(RmqConn *c, const char *what, int err) pg_attribute_noreturn();
static void
conn_fail(RmqConn *c, const char *what, int err)
{
	char		addr[256];

	bool		hint_tls = err == 0 && c->ssl == NULL && !c->answered;

	strlcpy(addr, c->addr, sizeof(addr));
	rmq_conn_discard(c);
	rmq_conn_timed_out = false;
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not %s RocketMQ at %s: %s", what, addr,
					err ? strerror(err) : "connection closed by peer"),
			 hint_tls ? errhint("A server that requires TLS hangs up on plain connections: set option tls on the foreign server.") : 0));
}

static void conn_tls_handshake(RmqConn *c, const char *host, const RmqSecurity *sec, TimestampTz deadline);

static RmqConn *
conn_open(const char *addr, const RmqSecurity *sec, int timeout_ms)
{
	char		host[256];
	int			port;
	char		portstr[16];
	struct addrinfo hints,
			   *res = NULL;
	int			rc;
	RmqConn    *c;
	int			one = 1;
	int			soerr = 0;
	socklen_t	slen = sizeof(soerr);

	if (!rmq_split_addr(addr, host, sizeof(host), &port))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid RocketMQ address \"%s\"", addr),
				 errhint("Addresses are written host:port, for example 127.0.0.1:9876.")));
	snprintf(portstr, sizeof(portstr), "%d", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0 || res == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not resolve RocketMQ address \"%s\": %s", addr, gai_strerror(rc))));

	c = MemoryContextAllocZero(conn_cxt, sizeof(RmqConn));
	strlcpy(c->addr, addr, sizeof(c->addr));
	c->sock = socket(res->ai_family, SOCK_STREAM, 0);
	if (c->sock == PGINVALID_SOCKET)
	{
		int			e = errno;

		freeaddrinfo(res);
		pfree(c);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create socket: %s", strerror(e))));
	}
	(void) setsockopt(c->sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!pg_set_noblock(c->sock))
	{
		freeaddrinfo(res);
		conn_fail(c, "set non-blocking mode on socket to", errno);
	}
	c->wes = CreateWaitEventSet(conn_cxt, 3);
	AddWaitEventToSet(c->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(c->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	c->sock_pos = AddWaitEventToSet(c->wes, WL_SOCKET_WRITEABLE, c->sock, NULL, NULL);
	c->next_opaque = (int32) (random() & 0x3FFFFFFF);
	c->scratch = AllocSetContextCreate(conn_cxt, "rocketmq_stream frame", ALLOCSET_SMALL_SIZES);

	/* Registered before connecting so that any error below frees it. */
	c->busy = true;
	c->busy_level = GetCurrentTransactionNestLevel();
	conns[nconns++] = c;

	rc = connect(c->sock, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	/* A half-opened connection must never outlive an error (its buffers are not set up). */
	PG_TRY();
	{
		if (rc < 0 && errno != EINPROGRESS && errno != EINTR)
			conn_fail(c, "connect to", errno);
		if (rc < 0)
		{
			(void) conn_wait(c, WL_SOCKET_WRITEABLE, 0, rmq_deadline(timeout_ms), "connecting to");
			if (getsockopt(c->sock, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0)
				soerr = errno;
			if (soerr != 0)
				conn_fail(c, "connect to", soerr);
		}
		conn_buf_init(&c->rbuf, READ_CHUNK + 1);
		c->profile = MemoryContextStrdup(conn_cxt, sec->profile ? sec->profile : "");
		if (sec->access_key && sec->secret_key)
		{
			c->access_key = MemoryContextStrdup(conn_cxt, sec->access_key);
			c->secret_key = MemoryContextStrdup(conn_cxt, sec->secret_key);
		}
		if (sec->tls != RMQ_TLS_DISABLE)
			conn_tls_handshake(c, host, sec, rmq_deadline(timeout_ms));
	}
	PG_CATCH();
	{
		conn_discard_if_open(c);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return c;
}

/*
 * TLS over the connected socket, each step waiting on the latch like any
 * other I/O here.  A failure of TLS itself (the handshake, a certificate)
 * is not retried by streams: it will fail the same way next time.
 */
static void
conn_tls_handshake(RmqConn *c, const char *host, const RmqSecurity *sec, TimestampTz deadline)
{
	char	   *err = NULL;

	c->ssl = rmq_tls_new(c->sock, host, sec, &err);
	if (c->ssl == NULL)
	{
		char		addr[256];

		strlcpy(addr, c->addr, sizeof(addr));
		rmq_conn_discard(c);
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not set up TLS for RocketMQ at %s", addr),
				 errdetail("%s", err)));
	}
	for (;;)
	{
		RmqTlsStep st = rmq_tls_connect(c->ssl, &err);

		if (st == RMQ_TLS_OK)
			return;
		if (st == RMQ_TLS_WANT_READ || st == RMQ_TLS_WANT_WRITE)
		{
			(void) conn_wait(c, st == RMQ_TLS_WANT_READ ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
							 0, deadline, "in a TLS handshake with");
			continue;
		}
		if (st == RMQ_TLS_FAILED)
		{
			char		addr[256];

			strlcpy(addr, c->addr, sizeof(addr));
			rmq_conn_discard(c);
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("TLS handshake with RocketMQ at %s failed", addr),
					 errdetail("%s", err),
					 sec->tls >= RMQ_TLS_VERIFY_CA
					 ? errhint("The server's certificate must chain to tls_root_cert%s.",
							   sec->tls == RMQ_TLS_VERIFY_FULL ? " and name the host connected to" : "")
					 : 0));
		}
		conn_fail(c, "complete a TLS handshake with", st == RMQ_TLS_SOCKET ? errno : 0);
	}
}

/* initStringInfo in conn_cxt with a chosen size. */
static void
conn_buf_init(StringInfo s, int size)
{
	s->data = MemoryContextAlloc(conn_cxt, size);
	s->maxlen = size;
	s->len = 0;
	s->data[0] = '\0';
	s->cursor = 0;
}

RmqConn *
rmq_conn_get(const char *addr, const RmqSecurity *sec, int timeout_ms)
{
	RmqConn    *c = NULL;
	const char *profile = sec->profile ? sec->profile : "";

	if (conn_cxt == NULL)
	{
		conn_cxt = AllocSetContextCreate(TopMemoryContext, "rocketmq_stream connections",
										 ALLOCSET_DEFAULT_SIZES);
		conns = MemoryContextAllocZero(conn_cxt, sizeof(RmqConn *) * MAX_CONNS);
	}
	/* Stale after a server or user mapping changed: reconnect. */
	if (conn_epoch != rmq_profile_epoch)
	{
		for (int i = nconns - 1; i >= 0; i--)
			if (!conns[i]->busy)
				rmq_conn_discard(conns[i]);
		conn_epoch = rmq_profile_epoch;
	}
	for (int i = 0; i < nconns; i++)
		if (!conns[i]->busy && strcmp(conns[i]->addr, addr) == 0 &&
			strcmp(conns[i]->profile, profile) == 0)
		{
			c = conns[i];
			break;
		}
	if (c == NULL)
	{
		/* Make room: close the least recently used idle connection. */
		while (nconns >= Max(rmq_connection_cache_size, 1) || nconns >= MAX_CONNS - 1)
		{
			int			lru = -1;

			for (int i = 0; i < nconns; i++)
				if (!conns[i]->busy && (lru < 0 || conns[i]->last_used < conns[lru]->last_used))
					lru = i;
			if (lru < 0)
				break;
			rmq_conn_discard(conns[lru]);
		}
		if (nconns >= MAX_CONNS - 1)
			ereport(ERROR,
					(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
					 errmsg("too many RocketMQ connections in use in this backend")));
		if (sec->tls == RMQ_TLS_PREFER)
		{
			/* TLS if the server speaks it, else plain, as libpq's prefer. */
			MemoryContext cxt = CurrentMemoryContext;
			RmqConn    *volatile got = NULL;

			PG_TRY();
			{
				got = conn_open(addr, sec, timeout_ms);
			}
			PG_CATCH();
			{
				ErrorData  *ed;
				RmqSecurity plain = *sec;

				MemoryContextSwitchTo(cxt);
				ed = CopyErrorData();
				if (ed->sqlerrcode != ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION &&
					ed->sqlerrcode != ERRCODE_CONNECTION_FAILURE)
					PG_RE_THROW();
				FlushErrorState();
				plain.tls = RMQ_TLS_DISABLE;
				got = conn_open(addr, &plain, timeout_ms);
				FreeErrorData(ed);
			}
			PG_END_TRY();
			c = got;
		}
		else
			c = conn_open(addr, sec, timeout_ms);
	}
	c->busy = true;
	c->busy_level = GetCurrentTransactionNestLevel();
	c->last_used = ++use_clock;
	return c;
}

/* Throw away connections taken at `level` or deeper and never given back. */
void
rmq_conn_release_aborted(int level)
{
	for (int i = nconns - 1; i >= 0; i--)
		if (conns[i]->busy && conns[i]->busy_level >= level)
			rmq_conn_discard(conns[i]);
}

void
rmq_conn_done(RmqConn *c)
{
	/* Answers still to come are no one's now: dropped as they arrive. */
	c->nwaiting = 0;
	c->busy = false;
}

/* A request of ours now waits for the answer with this opaque. */
static void
wait_for(RmqConn *c, int32 opaque)
{
	if (c->nwaiting == c->waiting_cap)
	{
		if (c->waiting_cap >= MAX_WAITING)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("more than %d requests wait for answers from RocketMQ at %s",
							MAX_WAITING, c->addr)));
		c->waiting_cap = c->waiting_cap ? c->waiting_cap * 2 : 16;
		c->waiting = c->waiting
			? repalloc(c->waiting, sizeof(int32) * c->waiting_cap)
			: MemoryContextAlloc(conn_cxt, sizeof(int32) * c->waiting_cap);
	}
	c->waiting[c->nwaiting++] = opaque;
}

/* Is a request waiting for this answer?  If so it no longer is. */
static bool
take_waiting(RmqConn *c, int32 opaque)
{
	for (int i = c->nwaiting - 1; i >= 0; i--)
		if (c->waiting[i] == opaque)
		{
			c->waiting[i] = c->waiting[--c->nwaiting];
			return true;
		}
	return false;
}

static int32 conn_send_frame(RmqConn *c, RmqCommand *cmd, TimestampTz deadline);

int32
rmq_conn_send(RmqConn *c, RmqCommand *cmd, TimestampTz deadline)
{
	cmd->opaque = c->next_opaque++;
	if (c->next_opaque < 0)
		c->next_opaque = 1;
	/* Last, over every field: what is added later is not signed. */
	if (c->access_key && !(cmd->flag & RMQ_FLAG_RESPONSE))
	{
		char	   *err = NULL;

		if (!rmq_sign(cmd, c->access_key, c->secret_key, &err))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not sign a request for RocketMQ at %s", c->addr),
					 errdetail("%s", err)));
	}
	/* Registered first: an answer may not be taken for a stranger's. */
	if (!(cmd->flag & (RMQ_FLAG_RESPONSE | RMQ_FLAG_ONEWAY)))
		wait_for(c, cmd->opaque);
	return conn_send_frame(c, cmd, deadline);
}

static int32
conn_send_frame(RmqConn *c, RmqCommand *cmd, TimestampTz deadline)
{
	StringInfoData out;
	int			off = 0;

	initStringInfo(&out);
	rmq_frame_encode(&out, cmd);
	while (off < out.len)
	{
		ssize_t		n;

		if (c->ssl)
		{
			size_t		w;
			char	   *err = NULL;
			RmqTlsStep	st = rmq_tls_write(c->ssl, out.data + off, out.len - off, &w, &err);

			if (st == RMQ_TLS_OK)
				off += (int) w;
			else if (st == RMQ_TLS_WANT_READ || st == RMQ_TLS_WANT_WRITE)
				(void) conn_wait(c, st == RMQ_TLS_WANT_READ ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
								 0, deadline, "sending to");
			else
				conn_fail(c, "send to", st == RMQ_TLS_SOCKET ? errno : 0);
			continue;
		}
		n = send(c->sock, out.data + off, out.len - off, MSG_NOSIGNAL);
		if (n > 0)
		{
			off += n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			(void) conn_wait(c, WL_SOCKET_WRITEABLE, 0, deadline, "sending to");
		else if (n < 0 && errno == EINTR)
			continue;
		else
			conn_fail(c, "send to", errno);
	}
	pfree(out.data);
	return cmd->opaque;
}

/* Fill rbuf until it holds `want` unconsumed bytes; false if `soft` passed. */
static bool
conn_fill(RmqConn *c, int want, TimestampTz soft, TimestampTz deadline)
{
	/* A connection that never finished opening: enlargeStringInfo would loop forever on it. */
	if (c->rbuf.data == NULL || c->rbuf.maxlen <= 0)
		elog(ERROR, "rocketmq_stream: connection to %s used before it was set up", c->addr);
	while (c->rbuf.len - c->rpos < want)
	{
		ssize_t		n;

		if (c->rpos > 0)
		{
			/* Slide unconsumed bytes to the front. */
			memmove(c->rbuf.data, c->rbuf.data + c->rpos, c->rbuf.len - c->rpos);
			c->rbuf.len -= c->rpos;
			c->rpos = 0;
		}
		if (c->rbuf.maxlen - c->rbuf.len < READ_CHUNK)
		{
			MemoryContext old = MemoryContextSwitchTo(conn_cxt);

			enlargeStringInfo(&c->rbuf, Max(want, READ_CHUNK));
			MemoryContextSwitchTo(old);
		}
		if (c->ssl)
		{
			size_t		got;
			char	   *err = NULL;
			RmqTlsStep	st = rmq_tls_read(c->ssl, c->rbuf.data + c->rbuf.len,
										  c->rbuf.maxlen - c->rbuf.len - 1, &got, &err);

			if (st == RMQ_TLS_OK)
			{
				c->rbuf.len += (int) got;
				c->answered = true;
			}
			else if (st == RMQ_TLS_WANT_READ || st == RMQ_TLS_WANT_WRITE)
			{
				if (!conn_wait(c, st == RMQ_TLS_WANT_READ ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
							   soft, deadline, "waiting for a response from"))
					return false;
			}
			else if (st == RMQ_TLS_FAILED)
			{
				/* e.g. a client certificate the server refuses (TLS 1.3 says so here) */
				char		addr[256];

				strlcpy(addr, c->addr, sizeof(addr));
				rmq_conn_discard(c);
				ereport(ERROR,
						(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
						 errmsg("TLS with RocketMQ at %s failed", addr),
						 errdetail("%s", err)));
			}
			else
				conn_fail(c, "receive from", st == RMQ_TLS_SOCKET ? errno : 0);
			continue;
		}
		n = recv(c->sock, c->rbuf.data + c->rbuf.len, c->rbuf.maxlen - c->rbuf.len - 1, 0);
		if (n > 0)
		{
			c->rbuf.len += n;
			c->answered = true;
		}
		else if (n == 0)
			conn_fail(c, "receive from", 0);
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
		{
			if (!conn_wait(c, WL_SOCKET_READABLE, soft, deadline, "waiting for a response from"))
				return false;
		}
		else if (errno != EINTR)
			conn_fail(c, "receive from", errno);
	}
	return true;
}

static void
conn_protocol_error(RmqConn *c, const char *err) pg_attribute_noreturn();
static void
conn_protocol_error(RmqConn *c, const char *err)
{
	char		addr[256];

	strlcpy(addr, c->addr, sizeof(addr));
	rmq_conn_discard(c);
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("invalid frame from RocketMQ at %s", addr),
			 errdetail("%s", err)));
}

static void
conn_reply_unsupported(RmqConn *c, int32 opaque, TimestampTz deadline)
{
	RmqCommand	resp;

	rmq_cmd_init(&resp, RMQ_REQUEST_CODE_NOT_SUPPORTED);
	resp.flag = RMQ_FLAG_RESPONSE;
	resp.remark = "request code not supported by rocketmq_stream";
	resp.opaque = opaque;
	conn_send_frame(c, &resp, deadline);
}

/* Done with the bytes of one frame: forget them, and a large buffer. */
static void
consume_frame(RmqConn *c, uint32 len)
{
	c->rpos += 4 + len;
	if (c->rpos == c->rbuf.len)
	{
		c->rpos = c->rbuf.len = 0;
		/* One 16 MiB answer must not pin 16 MiB for the connection's life. */
		if (c->rbuf.maxlen > 4 * (READ_CHUNK + 1))
		{
			pfree(c->rbuf.data);
			conn_buf_init(&c->rbuf, READ_CHUNK + 1);
		}
	}
	MemoryContextReset(c->scratch);
}

RmqRequestHandler rmq_request_handler = NULL;

/*
 * A request the server sent us: the handler's answer, else "not supported";
 * nothing for a oneway one.  Whatever the handler builds lives in the
 * frame's scratch context and goes with the frame.
 */
static void
conn_serve_request(RmqConn *c, const RmqCommand *req, uint32 len, TimestampTz deadline)
{
	RmqCommand	reply;
	int32		opaque = req->opaque;
	bool		oneway = (req->flag & RMQ_FLAG_ONEWAY) != 0;
	bool		answered;
	MemoryContext old = MemoryContextSwitchTo(c->scratch);

	rmq_cmd_init(&reply, RMQ_SUCCESS);
	answered = rmq_request_handler != NULL && rmq_request_handler(c->addr, req, &reply);
	if (!oneway && answered)
	{
		reply.flag = RMQ_FLAG_RESPONSE;
		reply.opaque = opaque;
		conn_send_frame(c, &reply, deadline);
	}
	MemoryContextSwitchTo(old);
	consume_frame(c, len);
	if (!oneway && !answered)
		conn_reply_unsupported(c, opaque, deadline);
}

/*
 * Read what the server at addr sent unasked on our idle connection to it,
 * without waiting: requests are served, answers nobody waits for dropped.
 * A member of a consumer group is told of changes so (the broker talks to
 * the connection that heartbeats it).  False if there is no such
 * connection: it was closed, and the broker forgot the member with it.
 */
bool
rmq_conn_serve(const char *addr, const RmqSecurity *sec, int timeout_ms)
{
	const char *profile = sec->profile ? sec->profile : "";
	RmqConn    *c = NULL;
	RmqCommand	none;
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < nconns && c == NULL; i++)
		if (!conns[i]->busy && strcmp(conns[i]->addr, addr) == 0 &&
			strcmp(conns[i]->profile, profile) == 0)
			c = conns[i];
	if (c == NULL)
		return false;
	c->busy = true;
	c->busy_level = GetCurrentTransactionNestLevel();
	c->last_used = ++use_clock;
	PG_TRY();
	{
		(void) rmq_conn_recv_soft(c, now, TimestampTzPlusMilliseconds(now, timeout_ms), &none);
	}
	PG_CATCH();
	{
		conn_discard_if_open(c);
		PG_RE_THROW();
	}
	PG_END_TRY();
	rmq_conn_done(c);
	return true;
}

/*
 * Receive the next answer to a request of ours.  Frames that answer nothing
 * we are waiting for are dropped as they are read, and requests the server
 * sends us (consumer list changes, transaction checks) are answered "not
 * supported" unless oneway.  The answer is copied into CurrentMemoryContext.
 * Returns false if `soft` (0: none) passes first; the connection stays
 * usable.  The hard deadline is checked after every frame too.
 */
bool
rmq_conn_recv_soft(RmqConn *c, TimestampTz soft, TimestampTz deadline, RmqCommand *resp)
{
	for (;;)
	{
		uint32		len;
		char	   *err = NULL;
		char	   *frame;
		RmqCommand	hdr;
		MemoryContext old;
		bool		ok;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (!conn_fill(c, 4, soft, deadline))
			return false;
		if (!rmq_frame_length((unsigned char *) c->rbuf.data + c->rpos, &len, &err))
			conn_protocol_error(c, err);
		if (!conn_fill(c, 4 + len, soft, deadline))
			return false;
		old = MemoryContextSwitchTo(c->scratch);
		ok = rmq_frame_decode(c->rbuf.data + c->rpos + 4, len, &hdr, &err);
		MemoryContextSwitchTo(old);
		if (!ok)
		{
			err = pstrdup(err);
			MemoryContextReset(c->scratch);
			conn_protocol_error(c, err);
		}
		if ((hdr.flag & RMQ_FLAG_RESPONSE) && take_waiting(c, hdr.opaque))
		{
			/* Decoded again where the caller keeps it; headers are small. */
			frame = palloc(len);
			memcpy(frame, c->rbuf.data + c->rpos + 4, len);
			consume_frame(c, len);
			if (!rmq_frame_decode(frame, len, resp, &err))
				conn_protocol_error(c, err);	/* cannot differ from above */
			return true;
		}
		if (!(hdr.flag & RMQ_FLAG_RESPONSE))
			conn_serve_request(c, &hdr, len, deadline);
		else
			consume_frame(c, len);
		now = GetCurrentTimestamp();
		if (now >= deadline)
		{
			char		addr[256];

			strlcpy(addr, c->addr, sizeof(addr));
			rmq_conn_discard(c);
			rmq_conn_timed_out = true;
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("timed out waiting for a response from RocketMQ at %s", addr),
					 errdetail("It kept sending frames that answer no request of ours.")));
		}
		if (soft != 0 && now >= soft)
			return false;
	}
}

/*
 * Sleep until one of `cs` has bytes to read, the latch is set, or `until`
 * passes; false only on the timeout.  For a caller with requests out on
 * several connections: it polls each with rmq_conn_recv_soft (soft = now)
 * and sleeps here when none had a frame, instead of sleeping on each in
 * turn.  The set is built per call: a few system calls, next to a network
 * round trip.
 */
bool
rmq_conn_wait_any(RmqConn **cs, int n, TimestampTz until)
{
	WaitEventSet *wes;
	WaitEvent	ev;
	long		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
	int			rc;

	if (timeout <= 0)
		return false;
	/* Bytes already read (into our buffer, or inside OpenSSL): no waiting. */
	for (int i = 0; i < n; i++)
		if (cs[i]->rbuf.len > cs[i]->rpos || (cs[i]->ssl && rmq_tls_pending(cs[i]->ssl)))
			return true;
	wes = CreateWaitEventSet(CurrentMemoryContext, n + 2);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < n; i++)
		AddWaitEventToSet(wes, WL_SOCKET_READABLE, cs[i]->sock, NULL, NULL);
	rc = WaitEventSetWait(wes, timeout, &ev, 1, PG_WAIT_EXTENSION);
	FreeWaitEventSet(wes);
	if (rc > 0 && (ev.events & WL_LATCH_SET))
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	return rc > 0;
}

void
rmq_conn_recv(RmqConn *c, TimestampTz deadline, RmqCommand *resp)
{
	(void) rmq_conn_recv_soft(c, 0, deadline, resp);
}

void
rmq_rpc(const RmqOptions *o, const char *addr, RmqCommand *req, RmqCommand *resp)
{
	TimestampTz deadline = rmq_deadline(o->request_timeout_ms);
	RmqConn    *c = rmq_conn_get(addr, &o->sec, o->request_timeout_ms);

	/*
	 * Whatever fails leaves no busy connection behind: callers that wait a
	 * failure out (stream workers) keep their other connections, so they
	 * cannot sweep up busy ones.
	 */
	PG_TRY();
	{
		(void) rmq_conn_send(c, req, deadline);
		/* A free connection waits for nothing else: this is our answer. */
		rmq_conn_recv(c, deadline, resp);
	}
	PG_CATCH();
	{
		conn_discard_if_open(c);
		PG_RE_THROW();
	}
	PG_END_TRY();
	rmq_conn_done(c);
}
