/*
 * rmq_tls.c — TLS for connections to name servers and brokers, with
 * OpenSSL on a non-blocking socket: every step says whether it needs the
 * socket readable or writable, and rmq_conn.c waits for that on the
 * latch, as it does for plain sockets, so cancel, terminate and timeouts
 * keep working in the middle of a handshake.
 *
 * Modes as libpq names them: require encrypts without checking who answers;
 * verify-ca checks the certificate chain against tls_root_cert (or the
 * system's trust store); verify-full also checks that the certificate names
 * the host connected to (its IP address for an IP).  The host goes out as
 * SNI when it is a name.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "utils/memutils.h"

#include "rmq_tls.h"

/* One SSL_CTX per distinct set of TLS options, for the backend's life. */
typedef struct TlsCtx
{
	char	   *key;
	SSL_CTX    *ctx;
	struct TlsCtx *next;
} TlsCtx;

static TlsCtx *contexts = NULL;

/* The queued OpenSSL errors as one line, the queue emptied. */
static char *
openssl_errors(void)
{
	StringInfoData s;
	unsigned long e;

	initStringInfo(&s);
	while ((e = ERR_get_error()) != 0)
	{
		char		buf[256];

		ERR_error_string_n(e, buf, sizeof(buf));
		appendStringInfo(&s, "%s%s", s.len ? "; " : "", buf);
	}
	return s.len ? s.data : pstrdup("unknown TLS error");
}

static SSL_CTX *
tls_context(const RmqSecurity *sec, char **err)
{
	char	   *key = psprintf("%d/%s/%s/%s", sec->tls, sec->tls_root_cert ? sec->tls_root_cert : "",
							   sec->tls_cert ? sec->tls_cert : "", sec->tls_key ? sec->tls_key : "");
	TlsCtx	   *t;
	SSL_CTX    *ctx;

	for (t = contexts; t; t = t->next)
		if (strcmp(t->key, key) == 0)
			return t->ctx;
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
	{
		*err = openssl_errors();
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/*
	 * Read ahead: one recv() takes in as many records as have arrived,
	 * instead of a header and a body per record (two system calls per
	 * 16 KiB of pull answers otherwise).
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
	if (sec->tls >= RMQ_TLS_VERIFY_CA)
	{
		if (sec->tls_root_cert
			? SSL_CTX_load_verify_locations(ctx, sec->tls_root_cert, NULL) != 1
			: SSL_CTX_set_default_verify_paths(ctx) != 1)
		{
			*err = psprintf("could not load root certificate \"%s\": %s",
							sec->tls_root_cert ? sec->tls_root_cert : "(system default)", openssl_errors());
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (sec->tls_cert || sec->tls_key)
	{
		if (!sec->tls_cert || !sec->tls_key)
		{
			*err = pstrdup("tls_cert and tls_key must be given together");
			SSL_CTX_free(ctx);
			return NULL;
		}
		if (SSL_CTX_use_certificate_chain_file(ctx, sec->tls_cert) != 1 ||
			SSL_CTX_use_PrivateKey_file(ctx, sec->tls_key, SSL_FILETYPE_PEM) != 1 ||
			SSL_CTX_check_private_key(ctx) != 1)
		{
			*err = psprintf("could not use client certificate \"%s\" and key \"%s\": %s",
							sec->tls_cert, sec->tls_key, openssl_errors());
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	t = MemoryContextAlloc(TopMemoryContext, sizeof(TlsCtx));
	t->key = MemoryContextStrdup(TopMemoryContext, key);
	t->ctx = ctx;
	t->next = contexts;
	contexts = t;
	return ctx;
}

SSL *
rmq_tls_new(int sock, const char *host, const RmqSecurity *sec, char **err)
{
	SSL_CTX    *ctx = tls_context(sec, err);
	SSL		   *ssl;
	unsigned char ip[16];
	bool		is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;

	if (ctx == NULL)
		return NULL;
	ERR_clear_error();
	ssl = SSL_new(ctx);
	if (ssl == NULL || SSL_set_fd(ssl, sock) != 1)
	{
		*err = openssl_errors();
		if (ssl)
			SSL_free(ssl);
		return NULL;
	}
	/* SNI takes names only, never IP addresses (RFC 6066). */
	if (!is_ip)
		SSL_set_tlsext_host_name(ssl, host);
	if (sec->tls == RMQ_TLS_VERIFY_FULL)
	{
		int			ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
			: SSL_set1_host(ssl, host);

		if (ok != 1)
		{
			*err = psprintf("could not set host \"%s\" to verify: %s", host, openssl_errors());
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

/* What an OpenSSL call's result means for the caller. */
static RmqTlsStep
step(SSL *ssl, int rc, char **err)
{
	int			e = SSL_get_error(ssl, rc);

	switch (e)
	{
		case SSL_ERROR_NONE:
			return RMQ_TLS_OK;
		case SSL_ERROR_WANT_READ:
			return RMQ_TLS_WANT_READ;
		case SSL_ERROR_WANT_WRITE:
			return RMQ_TLS_WANT_WRITE;
		case SSL_ERROR_ZERO_RETURN:
			return RMQ_TLS_CLOSED;
		case SSL_ERROR_SYSCALL:
			if (ERR_peek_error() == 0)
			{
				if (errno == 0 || rc == 0)
					return RMQ_TLS_CLOSED;
				*err = pstrdup(strerror(errno));
				return RMQ_TLS_SOCKET;
			}
			*err = openssl_errors();
			return RMQ_TLS_FAILED;
		default:
			{
				long		v = SSL_get_verify_result(ssl);

				*err = openssl_errors();
				if (v != X509_V_OK)
					*err = psprintf("%s (certificate: %s)", *err, X509_verify_cert_error_string(v));
				return RMQ_TLS_FAILED;
			}
	}
}

RmqTlsStep
rmq_tls_connect(SSL *ssl, char **err)
{
	ERR_clear_error();
	errno = 0;
	return step(ssl, SSL_connect(ssl), err);
}

RmqTlsStep
rmq_tls_read(SSL *ssl, char *buf, size_t len, size_t *n, char **err)
{
	int			rc;

	ERR_clear_error();
	errno = 0;
	rc = SSL_read(ssl, buf, (int) Min(len, (size_t) INT_MAX));
	*n = rc > 0 ? (size_t) rc : 0;
	return rc > 0 ? RMQ_TLS_OK : step(ssl, rc, err);
}

RmqTlsStep
rmq_tls_write(SSL *ssl, const char *buf, size_t len, size_t *n, char **err)
{
	int			rc;

	ERR_clear_error();
	errno = 0;
	rc = SSL_write(ssl, buf, (int) Min(len, (size_t) INT_MAX));
	*n = rc > 0 ? (size_t) rc : 0;
	return rc > 0 ? RMQ_TLS_OK : step(ssl, rc, err);
}

/* Decrypted bytes waiting inside OpenSSL, which no socket wait would see. */
bool
rmq_tls_pending(SSL *ssl)
{
	return SSL_pending(ssl) > 0;
}

void
rmq_tls_free(SSL *ssl)
{
	SSL_free(ssl);
}
