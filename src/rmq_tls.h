/*
 * rmq_tls.h — TLS steps on a non-blocking socket (rmq_tls.c), for
 * rmq_conn.c, which does the waiting.
 */
#ifndef RMQ_TLS_H
#define RMQ_TLS_H

#include "rmq_client.h"

typedef struct ssl_st SSL;

typedef enum RmqTlsStep
{
	RMQ_TLS_OK,
	RMQ_TLS_WANT_READ,			/* wait until the socket is readable, then again */
	RMQ_TLS_WANT_WRITE,
	RMQ_TLS_CLOSED,				/* the peer closed the connection */
	RMQ_TLS_SOCKET,				/* a socket error (*err) */
	RMQ_TLS_FAILED				/* TLS itself failed: handshake, certificate (*err) */
} RmqTlsStep;

extern SSL *rmq_tls_new(int sock, const char *host, const RmqSecurity *sec, char **err);
extern RmqTlsStep rmq_tls_connect(SSL *ssl, char **err);
extern RmqTlsStep rmq_tls_read(SSL *ssl, char *buf, size_t len, size_t *n, char **err);
extern RmqTlsStep rmq_tls_write(SSL *ssl, const char *buf, size_t len, size_t *n, char **err);
extern bool rmq_tls_pending(SSL *ssl);
extern void rmq_tls_free(SSL *ssl);

#endif
