/*
 * SecureCheck <namesrv> <topic> <group> [count]
 *
 * The official Java client against a broker started with RMQ_ACL=1 and/or
 * RMQ_TLS=1 (credentials and TLS settings from the environment "broker.sh
 * env" prints; see Secure.java):
 *
 *   1. a DefaultMQProducer sends <count> (default 10) messages one by one
 *      and a batch of 3 (SEND_MESSAGE_V2, SEND_BATCH_MESSAGE);
 *   2. a DefaultLitePullConsumer in subscribe mode (HEART_BEAT, rebalance
 *      with GET_CONSUMER_LIST_BY_GROUP, QUERY_CONSUMER_OFFSET, PULL_MESSAGE)
 *      reads them back, commits and persists its offsets
 *      (UPDATE_CONSUMER_OFFSET, sent oneway by the client) and reads the
 *      committed offsets back from the broker;
 *   3. with RMQ_ACL_USER set, the refusals: a producer signing as
 *      RMQ_ACL_NOPUB_USER (if set) and one with a wrong secret must both be
 *      refused with NO_PERMISSION (16).
 *
 * Prints what happened; exit 0 if everything behaved, 1 otherwise.  The
 * bodies carry a run id, so earlier runs on the same topic do not count.
 */
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.client.exception.MQBrokerException;
import org.apache.rocketmq.client.exception.MQClientException;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;
import org.apache.rocketmq.remoting.RPCHook;

public class SecureCheck {
    public static void main(String[] args) {
        Secure.init();
        FailFast.main(args, SecureCheck::run);
    }

    static int failures = 0;

    static void check(boolean ok, String what) {
        System.out.println((ok ? "ok   " : "FAIL ") + what);
        if (!ok) failures++;
    }

    static void run(String[] args) throws Exception {
        if (args.length < 3 || args.length > 4) {
            System.err.println("usage: SecureCheck <namesrv> <topic> <group> [count]");
            Runtime.getRuntime().halt(2);
        }
        String ns = args[0], topic = args[1], group = args[2];
        int count = args.length > 3 ? Integer.parseInt(args[3]) : 10;
        String run = Long.toHexString(System.nanoTime());
        System.out.println("SecureCheck: " + Secure.describe() + ", run " + run);

        // 1. produce
        Set<String> sent = new HashSet<>();
        DefaultMQProducer p = Secure.apply(new DefaultMQProducer("rmq_secure_producer", Secure.rpcHook()));
        p.setNamesrvAddr(ns);
        p.setInstanceName("secure_check_" + run);
        p.setSendMsgTimeout(10000);
        p.start();
        try {
            for (int i = 0; i < count; i++) {
                String body = "secure " + run + " " + i;
                SendResult r = p.send(new Message(topic, "TagSecure", body.getBytes(StandardCharsets.UTF_8)));
                if (r.getSendStatus() != SendStatus.SEND_OK) throw new IllegalStateException("send: " + r);
                sent.add(body);
            }
            List<Message> batch = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                String body = "secure " + run + " b" + i;
                batch.add(new Message(topic, "TagSecure", body.getBytes(StandardCharsets.UTF_8)));
                sent.add(body);
            }
            SendResult r = p.send(batch);
            if (r.getSendStatus() != SendStatus.SEND_OK) throw new IllegalStateException("batch send: " + r);
        } finally {
            p.shutdown();
        }
        check(true, "sent " + count + " messages and a batch of 3 to " + topic);

        // 2. consume in subscribe mode, commit, read the committed offsets back
        System.setProperty("rocketmq.client.rebalance.waitInterval", "1000");
        DefaultLitePullConsumer c = Secure.apply(new DefaultLitePullConsumer(group, Secure.rpcHook()));
        c.setNamesrvAddr(ns);
        c.setInstanceName("secure_check_" + run);
        c.setAutoCommit(false);
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        c.subscribe(topic, "*");
        c.start();
        Set<String> got = new HashSet<>();
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (!got.containsAll(sent) && System.nanoTime() < deadline)
            for (MessageExt m : c.poll(500)) {
                String b = new String(m.getBody(), StandardCharsets.UTF_8);
                if (b.startsWith("secure " + run + " ")) got.add(b);
            }
        check(got.containsAll(sent), "received " + got.size() + " of " + sent.size() + " in group " + group);
        Set<MessageQueue> mine = c.assignment();
        c.commit(mine, true);
        long committed = 0;
        int queues = 0;
        for (int tries = 0; tries < 20; tries++) {  // the client persists offsets oneway
            committed = 0;
            queues = 0;
            for (MessageQueue mq : mine) {
                Long o = c.committed(mq);
                if (o != null && o > 0) {
                    committed += o;
                    queues++;
                }
            }
            if (queues > 0) break;
            Thread.sleep(250);
        }
        check(queues > 0, "committed offsets read back from the broker: " + queues + " queues, sum " + committed);
        // No c.shutdown(): it interrupts the parked long-poll pulls, which the
        // client logs as errors; the offsets are persisted already, and the
        // JVM ends with halt() below.

        // 3. refusals
        if (Secure.env("RMQ_ACL_USER") != null) {
            String nopub = Secure.env("RMQ_ACL_NOPUB_USER"), nopubSecret = Secure.env("RMQ_ACL_NOPUB_SECRET");
            if (nopub != null && nopubSecret != null)
                refused(ns, topic, run + "_nopub", new AclClientRPCHook(new SessionCredentials(nopub, nopubSecret)),
                    "sending as " + nopub, "no permission");
            refused(ns, topic, run + "_badsecret",
                new AclClientRPCHook(new SessionCredentials(Secure.env("RMQ_ACL_USER"), "not-the-secret")),
                "sending with a wrong secret", "check signature failed");
        }
        System.out.println(failures == 0 ? "SecureCheck: OK" : "SecureCheck: " + failures + " check(s) failed");
        Runtime.getRuntime().halt(failures == 0 ? 0 : 1);
    }

    /**
     * A send with this signer must fail with NO_PERMISSION and a remark
     * containing want.  Each signer needs its own client instance: clients
     * of one JVM with the same instance name share one MQClientInstance,
     * whose RPC hook is that of the first.
     */
    static void refused(String ns, String topic, String instance, RPCHook hook, String what, String want)
        throws Exception {
        DefaultMQProducer p = Secure.apply(new DefaultMQProducer("rmq_secure_refused", hook));
        p.setNamesrvAddr(ns);
        p.setInstanceName(instance);
        p.setSendMsgTimeout(10000);
        p.setRetryTimesWhenSendFailed(0);
        p.start();
        try {
            SendResult r = p.send(new Message(topic, "TagSecure", "must be refused".getBytes(StandardCharsets.UTF_8)));
            check(false, what + ": not refused: " + r);
        } catch (MQBrokerException | MQClientException e) {
            // send() wraps the broker's answer: MQClientException(16, ...)
            // caused by MQBrokerException(16, remark).
            Throwable t = e instanceof MQClientException && e.getCause() instanceof MQBrokerException ? e.getCause() : e;
            if (t instanceof MQBrokerException) {
                MQBrokerException b = (MQBrokerException) t;
                check(b.getResponseCode() == 16 && String.valueOf(b.getErrorMessage()).contains(want),
                    what + ": refused, code " + b.getResponseCode() + ", \"" + b.getErrorMessage() + "\"");
            } else {
                check(false, what + ": " + e);
            }
        } finally {
            p.shutdown();
        }
    }
}
