/*
 * Secure: ACL credentials and TLS settings for the test programs, taken from
 * the environment that "broker.sh env" prints for a broker started with
 * RMQ_ACL=1 and/or RMQ_TLS=1.  With none of these variables set every method
 * is a no-op, so a program that uses it behaves exactly as before.
 *
 *   RMQ_ACL_USER, RMQ_ACL_SECRET   sign every request as this user
 *                                  (AclClientRPCHook + SessionCredentials)
 *   RMQ_TLS=1                      TLS to the name server and the brokers
 *   RMQ_TLS_CA                     verify the servers' certificate chain
 *                                  against this CA (the Java client never
 *                                  checks the host name); without it, the
 *                                  client trusts any certificate
 *   RMQ_TLS_CLIENT_AUTH (optional|require), RMQ_TLS_CLIENT_CERT,
 *   RMQ_TLS_CLIENT_KEY             present this client certificate
 *
 * init() must run first in main: RocketMQ reads the tls.* system properties
 * once, when its TlsSystemConfig class is loaded.
 */
import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.client.ClientConfig;
import org.apache.rocketmq.remoting.RPCHook;

final class Secure {
    static boolean tls() {
        return "1".equals(System.getenv("RMQ_TLS"));
    }

    static String env(String name) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? null : v;
    }

    /** Set RocketMQ's tls.* system properties; call before any client class is used. */
    static void init() {
        if (!tls()) return;
        System.setProperty("tls.enable", "true");
        // Never read a machine-wide /etc/rocketmq/tls.properties.
        System.setProperty("tls.config.file", System.getProperty("java.io.tmpdir") + "/rmq-no-tls.properties");
        String ca = env("RMQ_TLS_CA");
        String auth = env("RMQ_TLS_CLIENT_AUTH");
        String cert = env("RMQ_TLS_CLIENT_CERT"), key = env("RMQ_TLS_CLIENT_KEY");
        boolean clientCert = auth != null && !auth.equals("none") && cert != null && key != null;
        if (ca == null && !clientCert) return;  // test mode: trust any server, no client certificate
        // Out of test mode the client uses the files below; authServer=false
        // would trust any server.
        System.setProperty("tls.test.mode.enable", "false");
        if (ca != null) {
            System.setProperty("tls.client.authServer", "true");
            System.setProperty("tls.client.trustCertPath", ca);
        }
        if (clientCert) {
            System.setProperty("tls.client.certPath", cert);
            System.setProperty("tls.client.keyPath", key);
        }
    }

    /** The request signer for RMQ_ACL_USER / RMQ_ACL_SECRET, or null. */
    static RPCHook rpcHook() {
        String user = env("RMQ_ACL_USER"), secret = env("RMQ_ACL_SECRET");
        if (user == null || secret == null) return null;
        return new AclClientRPCHook(new SessionCredentials(user, secret));
    }

    /** Switch the client to TLS when RMQ_TLS=1. */
    static <T extends ClientConfig> T apply(T c) {
        if (tls()) c.setUseTLS(true);
        return c;
    }

    static String describe() {
        String user = env("RMQ_ACL_USER");
        return "acl=" + (user == null ? "off" : user) + " tls=" + (tls() ? (env("RMQ_TLS_CA") != null ? "verified" : "on") : "off");
    }

    private Secure() {
    }
}
