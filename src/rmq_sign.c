/*
 * rmq_sign.c — signing a request for a broker with ACL (ACL 2.0 in 5.3.x,
 * and the ACL 1.0 of earlier releases, which signs the same way).
 *
 * As the official client's AclClientRPCHook, checked against its output
 * (test/java/SignVector.java) and a live 5.3.3 broker: the extFields gain
 * AccessKey; the values of all extFields, sorted by key (Java String order:
 * bytes, for the ASCII keys requests have), are concatenated without keys
 * or separators, the body follows as sent, and Signature is the base64 of
 * HMAC-SHA1 over that, keyed with the secret.  Nothing else is signed.
 */
#include "rmq_codec.h"

#include <openssl/evp.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_names.h>
#else
#include <openssl/hmac.h>
#endif

#include "common/base64.h"

#define SHA1_LEN 20

/*
 * OpenSSL's HMAC directly, not PostgreSQL's pg_hmac: that one hangs its
 * state on the current resource owner, and a stream worker pulls between
 * transactions, where there is none.
 */
typedef struct Mac
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	EVP_MAC    *mac;
	EVP_MAC_CTX *ctx;
#else
	HMAC_CTX   *ctx;
#endif
} Mac;

static bool
mac_init(Mac *m, const char *key)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	/* Fetched once: a fetch is a provider lookup, dearer than the HMAC. */
	static EVP_MAC *hmac = NULL;
	OSSL_PARAM	params[2];

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA1", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (hmac == NULL)
		hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	m->mac = hmac;
	m->ctx = m->mac ? EVP_MAC_CTX_new(m->mac) : NULL;
	return m->ctx != NULL && EVP_MAC_init(m->ctx, (const unsigned char *) key, strlen(key), params) == 1;
#else
	m->ctx = HMAC_CTX_new();
	return m->ctx != NULL && HMAC_Init_ex(m->ctx, key, (int) strlen(key), EVP_sha1(), NULL) == 1;
#endif
}

static bool
mac_update(Mac *m, const void *data, size_t len)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	return EVP_MAC_update(m->ctx, data, len) == 1;
#else
	return HMAC_Update(m->ctx, data, len) == 1;
#endif
}

static bool
mac_final(Mac *m, unsigned char *out)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	size_t		outl = 0;

	return EVP_MAC_final(m->ctx, out, &outl, SHA1_LEN) == 1 && outl == SHA1_LEN;
#else
	unsigned int outl = 0;

	return HMAC_Final(m->ctx, out, &outl) == 1 && outl == SHA1_LEN;
#endif
}

static void
mac_free(Mac *m)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	EVP_MAC_CTX_free(m->ctx);
#else
	HMAC_CTX_free(m->ctx);
#endif
}

static int
cmp_index_by_key(const void *a, const void *b, void *arg)
{
	char	  **keys = (char **) arg;

	return strcmp(keys[*(const int *) a], keys[*(const int *) b]);
}

bool
rmq_sign(RmqCommand *cmd, const char *access_key, const char *secret_key, char **err)
{
	Mac			m;
	unsigned char mac[SHA1_LEN];
	int		   *order;
	int			n;
	char	   *b64;
	int			b64len;
	bool		ok;

	rmq_cmd_add(cmd, "AccessKey", access_key);
	n = cmd->nfields;
	order = palloc(sizeof(int) * n);
	for (int i = 0; i < n; i++)
		order[i] = i;
	qsort_arg(order, n, sizeof(int), cmp_index_by_key, cmd->keys);

	memset(&m, 0, sizeof(m));
	ok = mac_init(&m, secret_key);
	for (int i = 0; ok && i < n; i++)
	{
		const char *v = cmd->values[order[i]];

		/* A field without a value is not sent, so it is not signed. */
		if (v != NULL)
			ok = mac_update(&m, v, strlen(v));
	}
	if (ok && cmd->body_len > 0)
		ok = mac_update(&m, cmd->body, cmd->body_len);
	if (ok)
		ok = mac_final(&m, mac);
	mac_free(&m);
	if (!ok)
	{
		*err = pstrdup("HMAC-SHA1 failed in OpenSSL");
		return false;
	}
	pfree(order);
	b64 = palloc(pg_b64_enc_len(SHA1_LEN) + 1);
	b64len = pg_b64_encode((const char *) mac, SHA1_LEN, b64, pg_b64_enc_len(SHA1_LEN));
	if (b64len < 0)
	{
		*err = pstrdup("base64 encoding failed");
		return false;
	}
	b64[b64len] = '\0';
	rmq_cmd_add(cmd, "Signature", b64);
	return true;
}
