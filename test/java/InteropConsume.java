/*
 * InteropConsume <namesrv> <topic> <group> <expectedCount> <timeoutSec>
 *
 * Reads the topic from the earliest offset of every queue with the official
 * DefaultLitePullConsumer (assign mode, seekToBegin, so offsets the group may
 * have committed are ignored; commits nothing) until expectedCount messages
 * arrived, then prints one InteropTsv line per message sorted by
 * (queueId, queueOffset).  User properties = all properties minus the
 * system keys in MessageConst.STRING_HASH_SET.  Exit 1 on timeout (the lines
 * read so far are still printed), 0 otherwise.
 *
 * Against a broker started with RMQ_ACL=1 / RMQ_TLS=1 it signs and talks
 * TLS as the environment of "broker.sh env" says (Secure.java).
 */
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageConst;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

public class InteropConsume {
    public static void main(String[] args) {
        Secure.init();
        FailFast.main(args, InteropConsume::run);
    }

    static void run(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: InteropConsume <namesrv> <topic> <group> <expectedCount> <timeoutSec>");
            Runtime.getRuntime().halt(2);
        }
        String topic = args[1];
        int expected = Integer.parseInt(args[3]);
        long deadline = System.nanoTime() + Long.parseLong(args[4]) * 1_000_000_000L;

        DefaultLitePullConsumer c = Secure.apply(new DefaultLitePullConsumer(args[2], Secure.rpcHook()));
        c.setNamesrvAddr(args[0]);
        c.setAutoCommit(false);
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        c.start();
        List<MessageExt> got = new ArrayList<>();
        List<MessageQueue> mqs = new ArrayList<>(c.fetchMessageQueues(topic));
        c.assign(mqs);
        // Read from the first offset even if the group has committed offsets
        // (e.g. a group shared with the C side).  seekToBegin() cancels the
        // pull tasks assign() started; their "interrupted" warnings are muted
        // in rmq.quiet.logback.xml.
        // The client sometimes fails a request on a fresh channel ("send
        // request ... failed"); try again until the deadline.
        for (MessageQueue mq : mqs)
            for (;;) {
                try {
                    c.seekToBegin(mq);
                    break;
                } catch (Exception e) {
                    if (System.nanoTime() >= deadline) throw e;
                    System.err.println("InteropConsume: seekToBegin: " + e.getMessage() + "; again");
                    Thread.sleep(200);
                }
            }
        // Keyed by (queueId, queueOffset): a pull that was in flight during
        // the seek must not be counted twice.
        TreeMap<Long, MessageExt> byPos = new TreeMap<>();
        while (byPos.size() < expected && System.nanoTime() < deadline)
            for (MessageExt m : c.poll(200)) byPos.put(((long) m.getQueueId() << 40) + m.getQueueOffset(), m);
        got.addAll(byPos.values());
        // No c.shutdown(), and halt() rather than exit() below: shutting the
        // client down (also from its JVM shutdown hook) interrupts the parked
        // long-poll pulls, which it logs as a screenful of warnings.  Nothing
        // is committed, so just dropping the sockets loses nothing.
        StringBuilder sb = new StringBuilder();
        for (MessageExt m : got) {
            Map<String, String> user = new TreeMap<>();
            for (Map.Entry<String, String> e : m.getProperties().entrySet())
                if (!MessageConst.STRING_HASH_SET.contains(e.getKey())) user.put(e.getKey(), e.getValue());
            sb.append(InteropTsv.line(m.getQueueId(), m.getQueueOffset(), m.getMsgId(), m.getTags(), m.getKeys(),
                user, m.getBody())).append('\n');
        }
        // Raw UTF-8 whatever the locale (System.out would use the platform
        // charset and turn non-ASCII into '?' under LANG=C).
        System.out.write(InteropTsv.utf8(sb.toString()));
        System.out.flush();
        if (got.size() < expected) {
            System.err.println("InteropConsume: timeout: got " + got.size() + " of " + expected + " messages");
            Runtime.getRuntime().halt(1);
        }
        Runtime.getRuntime().halt(0);
    }
}
