/*
 * InteropDump <namesrv> <topic> <group> <expectedCount> <timeoutSec> [<tagExpression>]
 *
 * Reads every queue of the topic from its first offset to its max offset
 * with the official client's pull API (DefaultMQPullConsumer: the same
 * decoding as every Java consumer, PullAPIWrapper.processPullResult, with
 * each pull retried here until the deadline, so that one failed request on
 * a fresh channel cannot stall a queue), nothing committed, until
 * expectedCount distinct (queue, offset) pairs arrived, and prints one JSON
 * object per message, sorted by queue and offset, with every field the
 * Java client decodes: the same fields rmq_create_rdd returns, so the TAP
 * tests can compare them one for one.
 *
 * Two rules of rocketmq_stream are applied here so that equal means equal:
 * a NUL character in tags, keys or properties reads as U+FFFD (PostgreSQL
 * text cannot hold NUL; the row's properties_raw keeps the exact bytes, so
 * "lossy" says whether any was there), and keys are the KEYS property split
 * on spaces with empty pieces dropped.  MIN_OFFSET and MAX_OFFSET are left
 * out: the client adds them after a pull, they are not stored.
 *
 * With a tag expression it subscribes instead (DefaultLitePullConsumer; the
 * group's offsets start at the first one), as a consumer filtering by tag
 * does.
 *
 * Exit 1 on timeout (what was read is still printed).
 *
 * Against a broker started with RMQ_ACL=1 / RMQ_TLS=1 it signs and talks
 * TLS as the environment of "broker.sh env" says (Secure.java).
 */
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.client.consumer.DefaultMQPullConsumer;
import org.apache.rocketmq.client.consumer.PullResult;
import org.apache.rocketmq.client.consumer.PullStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageClientExt;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

public class InteropDump {
    public static void main(String[] args) {
        Secure.init();
        FailFast.main(args, InteropDump::run);
    }

    static void run(String[] args) throws Exception {
        if (args.length != 5 && args.length != 6) {
            System.err.println("usage: InteropDump <namesrv> <topic> <group> <expectedCount> <timeoutSec> [<tagExpression>]");
            Runtime.getRuntime().halt(2);
        }
        String topic = args[1];
        int expected = Integer.parseInt(args[3]);
        long deadline = System.nanoTime() + Long.parseLong(args[4]) * 1_000_000_000L;

        TreeMap<String, MessageExt> byPos = new TreeMap<>();
        if (args.length == 6) {
            DefaultLitePullConsumer c = Secure.apply(new DefaultLitePullConsumer(args[2], Secure.rpcHook()));
            c.setNamesrvAddr(args[0]);
            c.setAutoCommit(false);
            c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
            c.subscribe(topic, args[5]);
            c.start();
            while (byPos.size() < expected && System.nanoTime() < deadline)
                for (MessageExt m : c.poll(200)) byPos.put(key(m), m);
        } else {
            DefaultMQPullConsumer c = Secure.apply(new DefaultMQPullConsumer(args[2], Secure.rpcHook()));
            c.setNamesrvAddr(args[0]);
            c.start();
            List<MessageQueue> mqs = new ArrayList<>(retry(deadline, () -> c.fetchSubscribeMessageQueues(topic)));
            for (MessageQueue mq : mqs) {
                // An empty BatchCQ queue says -1.
                long offset = Math.max(0, retry(deadline, () -> c.minOffset(mq)));
                long max = retry(deadline, () -> c.maxOffset(mq));
                while (offset < max && System.nanoTime() < deadline) {
                    final long from = offset;
                    PullResult r = retry(deadline, () -> c.pull(mq, "*", from, 32));
                    if (r.getPullStatus() == PullStatus.FOUND)
                        for (MessageExt m : r.getMsgFoundList()) byPos.put(key(m), m);
                    if (r.getNextBeginOffset() <= offset) break;
                    offset = r.getNextBeginOffset();
                }
            }
        }
        StringBuilder sb = new StringBuilder();
        for (MessageExt m : byPos.values()) sb.append(json(m)).append('\n');
        System.out.write(InteropTsv.utf8(sb.toString()));
        System.out.flush();
        if (byPos.size() < expected) {
            System.err.println("InteropDump: timeout: got " + byPos.size() + " of " + expected + " messages of " + topic);
            Runtime.getRuntime().halt(1);
        }
        Runtime.getRuntime().halt(0);
    }

    interface Call<T> {
        T call() throws Exception;
    }

    /* The client sometimes fails a request on a fresh channel: again, until the deadline. */
    static <T> T retry(long deadline, Call<T> f) throws Exception {
        for (;;) {
            try {
                return f.call();
            } catch (Exception e) {
                if (System.nanoTime() >= deadline) throw e;
                System.err.println("InteropDump: " + e.getMessage() + "; again");
                Thread.sleep(200);
            }
        }
    }

    static String key(MessageExt m) {
        return String.format("%s/%08d/%019d", m.getBrokerName(), m.getQueueId(), m.getQueueOffset());
    }

    static String json(MessageExt m) {
        String offsetMsgId = m instanceof MessageClientExt ? ((MessageClientExt) m).getOffsetMsgId() : m.getMsgId();
        Map<String, String> props = new TreeMap<>();
        boolean lossy = false;
        for (Map.Entry<String, String> e : m.getProperties().entrySet()) {
            if (e.getKey().equals("MIN_OFFSET") || e.getKey().equals("MAX_OFFSET")) continue;
            lossy |= e.getKey().indexOf('\0') >= 0 || e.getValue().indexOf('\0') >= 0;
            props.put(nul(e.getKey()), nul(e.getValue()));
        }
        List<String> keys = null;
        if (m.getKeys() != null) {
            keys = new ArrayList<>();
            for (String k : nul(m.getKeys()).split(" ")) if (!k.isEmpty()) keys.add(k);
        }
        byte[] body = m.getBody();
        StringBuilder sb = new StringBuilder("{");
        field(sb, "topic", str(m.getTopic()));
        field(sb, "broker", str(m.getBrokerName()));
        field(sb, "queue_id", Integer.toString(m.getQueueId()));
        field(sb, "queue_offset", Long.toString(m.getQueueOffset()));
        field(sb, "msg_id", str(offsetMsgId));
        field(sb, "unique_key", str(m.getProperty("UNIQ_KEY")));
        field(sb, "keys", keys == null ? "null" : array(keys));
        field(sb, "tags", str(m.getTags() == null ? null : nul(m.getTags())));
        field(sb, "body_md5", str(InteropTsv.md5(body)));
        field(sb, "body_len", Integer.toString(body.length));
        field(sb, "properties", InteropTsv.json(props));
        field(sb, "born_ms", Long.toString(m.getBornTimestamp()));
        field(sb, "born_host", str(host(m.getBornHost())));
        field(sb, "store_ms", Long.toString(m.getStoreTimestamp()));
        field(sb, "store_host", str(host(m.getStoreHost())));
        field(sb, "reconsume_times", Integer.toString(m.getReconsumeTimes()));
        field(sb, "lossy", Boolean.toString(lossy));
        return sb.append('}').toString();
    }

    static String nul(String s) {
        return s.replace('\0', '\uFFFD');
    }

    static void field(StringBuilder sb, String name, String jsonValue) {
        if (sb.length() > 1) sb.append(',');
        sb.append('"').append(name).append("\":").append(jsonValue);
    }

    static String str(String s) {
        if (s == null) return "null";
        String j = InteropTsv.json(Map.of("s", s));
        return j.substring(5, j.length() - 1);  // {"s":"..."} -> "..."
    }

    static String array(List<String> xs) {
        StringBuilder sb = new StringBuilder("[");
        for (String x : xs) {
            if (sb.length() > 1) sb.append(',');
            sb.append(str(x));
        }
        return sb.append(']').toString();
    }

    /* host:port, IPv6 in brackets, as rocketmq_stream writes hosts */
    static String host(SocketAddress a) {
        if (!(a instanceof InetSocketAddress)) return null;
        InetSocketAddress i = (InetSocketAddress) a;
        String h = i.getAddress().getHostAddress();
        return (h.contains(":") ? "[" + h + "]" : h) + ":" + i.getPort();
    }
}
