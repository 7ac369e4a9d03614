/*
 * InteropKinds <namesrv> <prefix>
 *
 * Sends every kind of message the official Java producer can send, each to
 * a topic of the matching 5.x type, which the caller has created:
 *
 *   <prefix>_normal  message.type=NORMAL: plain, tagless, UTF-8 and binary
 *                    bodies, user properties, 600 properties, NUL characters
 *                    in tags/keys/properties, zlib/LZ4/ZSTD bodies, a 3 MiB
 *                    body, a batch; and messages a push consumer of group
 *                    <prefix>_retry asks to see again, so that
 *                    %RETRY%<prefix>_retry holds their retries
 *   <prefix>_fifo    message.type=FIFO: three ordered streams by order id
 *   <prefix>_delay   message.type=DELAY: a delay level, delay seconds and a
 *                    delivery time (the last two need the timer wheel)
 *   <prefix>_tx      message.type=TRANSACTION: committed at once, rolled
 *                    back, and committed when the broker checks back
 *   <prefix>_bcq     queue.type=BatchCQ: single messages, compressed ones,
 *                    and batches the broker stores as one record each
 *
 * Waits until the delayed, checked-back and retried messages have landed,
 * then prints "topic<TAB>count" per topic: how many messages a reader of
 * that topic must find.
 */
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.LocalTransactionState;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.client.producer.TransactionListener;
import org.apache.rocketmq.client.producer.TransactionMQProducer;
import org.apache.rocketmq.common.compression.CompressionType;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

public class InteropKinds {
    static final Map<String, Integer> counts = new LinkedHashMap<>();

    public static void main(String[] args) {
        FailFast.main(args, InteropKinds::run);
    }

    static void run(String[] args) throws Exception {
        System.setProperty("rocketmq.client.rebalance.waitInterval", "1000");
        if (args.length != 2) {
            System.err.println("usage: InteropKinds <namesrv> <prefix>");
            Runtime.getRuntime().halt(2);
        }
        String ns = args[0], p = args[1];
        String normal = p + "_normal", fifo = p + "_fifo", delay = p + "_delay", tx = p + "_tx",
            bcq = p + "_bcq", retryGroup = p + "_retry";
        for (String t : new String[] {normal, fifo, delay, tx, bcq, "%RETRY%" + retryGroup}) counts.put(t, 0);

        // --- retries: a push consumer asks to see TagRetry messages again;
        // started first, so it is rebalanced by the time they are sent -----
        AtomicInteger firstSeen = new AtomicInteger(), secondSeen = new AtomicInteger();
        DefaultMQPushConsumer pc = new DefaultMQPushConsumer(retryGroup);
        pc.setNamesrvAddr(ns);
        // Find the retry topic, and its queues, within a second.
        pc.setPollNameServerInterval(1000);
        pc.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        pc.subscribe(normal, "TagRetry");
        pc.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            boolean again = false;
            for (MessageExt m : msgs) {
                if (m.getReconsumeTimes() == 0) {
                    firstSeen.incrementAndGet();
                    again = true;
                } else {
                    secondSeen.incrementAndGet();
                }
            }
            if (again) {
                ctx.setDelayLevelWhenNextConsume(1);
                return ConsumeConcurrentlyStatus.RECONSUME_LATER;
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        pc.setConsumeMessageBatchMaxSize(1);
        pc.start();
        counts.merge("%RETRY%" + retryGroup, 3, Integer::sum);

        DefaultMQProducer zlib = producer(ns, "kinds_zlib", CompressionType.ZLIB);
        DefaultMQProducer lz4 = producer(ns, "kinds_lz4", CompressionType.LZ4);
        DefaultMQProducer zstd = producer(ns, "kinds_zstd", CompressionType.ZSTD);

        // --- normal ---------------------------------------------------------
        send(zlib, new Message(normal, "TagA", "k1 k2", utf8("plain")));
        send(zlib, new Message(normal, "", utf8("no tag, no keys")));
        send(zlib, new Message(normal, "TagUtf8", "ключ 鍵", utf8("Grüße, 世界 🚀")));
        byte[] all = new byte[256];
        for (int i = 0; i < 256; i++) all[i] = (byte) i;
        send(zlib, new Message(normal, "TagBin", all));
        Message props = new Message(normal, "TagProps", "p", utf8("user properties"));
        props.putUserProperty("a", "1");
        props.putUserProperty("uni", "ünï©ødé");
        props.putUserProperty("ctl", "tab\there\nnewline");
        send(zlib, props);
        Message many = new Message(normal, "TagMany", utf8("600 properties"));
        for (int i = 0; i < 600; i++) many.putUserProperty("p" + i, "v" + i);
        send(zlib, many);
        Message nul = new Message(normal, "Tag\0Nul", "k\0ey other", utf8("NUL in tags, keys, properties"));
        nul.putUserProperty("nul", "a\0b");
        nul.putUserProperty("n\0k", "v");
        send(zlib, nul);
        send(zlib, new Message(normal, "TagZlib", compressible(10000, 1)));
        send(lz4, new Message(normal, "TagLz4", compressible(10000, 2)));
        send(zstd, new Message(normal, "TagZstd", compressible(10000, 3)));
        byte[] big = new byte[3 * 1024 * 1024];
        new Random(7).nextBytes(big);
        send(zlib, new Message(normal, "TagHuge", big));
        List<Message> batch = new ArrayList<>();
        for (int i = 0; i < 10; i++) batch.add(new Message(normal, "TagBatch", "b" + i, utf8("batch " + i)));
        sendBatch(zlib, normal, batch);
        for (int i = 0; i < 3; i++) send(zlib, new Message(normal, "TagRetry", "r" + i, utf8("retry me " + i)));

        // --- FIFO: three orders, five steps each, each order on one queue --
        for (int step = 0; step < 5; step++)
            for (int order = 0; order < 3; order++) {
                Message m = new Message(fifo, "TagFifo", "order-" + order, utf8("order " + order + " step " + step));
                final int key = order;
                SendResult r = zlib.send(m, (mqs, msg, arg) -> mqs.get((Integer) arg % mqs.size()), key);
                check(r);
                counts.merge(fifo, 1, Integer::sum);
            }

        // --- delay and timer --------------------------------------------------
        for (int i = 0; i < 2; i++) {
            Message m = new Message(delay, "TagLevel", utf8("delay level 1, " + i));
            m.setDelayTimeLevel(1);
            send(zlib, m);
        }
        Message sec = new Message(delay, "TagSec", utf8("delay 1 s"));
        sec.setDelayTimeSec(1);
        send(zlib, sec);
        Message at = new Message(delay, "TagAt", utf8("deliver in 1.5 s"));
        at.setDeliverTimeMs(System.currentTimeMillis() + 1500);
        send(zlib, at);

        // --- transactions -------------------------------------------------------
        ConcurrentHashMap<String, Integer> checked = new ConcurrentHashMap<>();
        TransactionMQProducer txp = new TransactionMQProducer("kinds_tx");
        txp.setNamesrvAddr(ns);
        txp.setSendMsgTimeout(10000);
        txp.setTransactionListener(new TransactionListener() {
            public LocalTransactionState executeLocalTransaction(Message msg, Object arg) {
                switch (msg.getKeys()) {
                    case "commit": return LocalTransactionState.COMMIT_MESSAGE;
                    case "rollback": return LocalTransactionState.ROLLBACK_MESSAGE;
                    default: return LocalTransactionState.UNKNOW;
                }
            }

            public LocalTransactionState checkLocalTransaction(MessageExt msg) {
                checked.merge(msg.getProperty("UNIQ_KEY"), 1, Integer::sum);
                return msg.getKeys().equals("check") ? LocalTransactionState.COMMIT_MESSAGE
                    : LocalTransactionState.ROLLBACK_MESSAGE;
            }
        });
        txp.start();
        for (String k : new String[] {"commit", "commit", "rollback", "check", "check"}) {
            SendResult r = txp.sendMessageInTransaction(new Message(tx, "TagTx", k, utf8("transaction " + k)), null);
            if (r.getSendStatus() != SendStatus.SEND_OK) throw new IllegalStateException("tx send " + r);
            if (!k.equals("rollback")) counts.merge(tx, 1, Integer::sum);
        }

        // --- BatchCQ ----------------------------------------------------------
        send(zlib, new Message(bcq, "TagSingle", "s1", utf8("single on BatchCQ")));
        send(zlib, new Message(bcq, "TagZ", compressible(8000, 4)));
        List<Message> b1 = new ArrayList<>();
        for (int i = 0; i < 10; i++)
            b1.add(new Message(bcq, i % 2 == 0 ? "TagA" : "TagB", "bk" + i + " x" + i, utf8("inner " + i)));
        sendBatch(zlib, bcq, b1);
        List<Message> b2 = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            Message m = new Message(bcq, "TagC", utf8("inner with props " + i));
            m.putUserProperty("i", Integer.toString(i));
            if (i == 2) m.putUserProperty("nul", "x\0y");
            b2.add(m);
        }
        sendBatch(zlib, bcq, b2);
        send(zlib, new Message(bcq, "TagSingle", "s2", utf8("single after batches")));
        List<Message> b3 = new ArrayList<>();
        for (int i = 0; i < 40; i++) b3.add(new Message(bcq, "TagD", utf8("bigger batch " + i)));
        sendBatch(zlib, bcq, b3);


        long deadline = System.currentTimeMillis() + 120_000;
        while (System.currentTimeMillis() < deadline && (secondSeen.get() < 3 || checked.size() < 2))
            Thread.sleep(200);
        if (secondSeen.get() < 3)
            throw new IllegalStateException("retried messages seen again: " + secondSeen.get() + " of 3");
        if (checked.size() < 2)
            throw new IllegalStateException("transactions checked back: " + checked.size() + " of 2");
        // Delayed messages are due after at most 1.5 s; commits of checked
        // transactions land as the check answer is processed.
        Thread.sleep(3000);
        // No shutdown: it interrupts the push consumer's parked pulls, which
        // the client logs as a screenful of warnings.  halt() drops the
        // sockets; nothing is left half-sent.
        StringBuilder sb = new StringBuilder();
        for (Map.Entry<String, Integer> e : counts.entrySet()) sb.append(e.getKey()).append('\t').append(e.getValue()).append('\n');
        System.out.print(sb);
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }

    static DefaultMQProducer producer(String ns, String group, CompressionType type) throws Exception {
        DefaultMQProducer p = new DefaultMQProducer(group);
        p.setNamesrvAddr(ns);
        p.setSendMsgTimeout(10000);
        p.setCompressType(type);
        p.setMaxMessageSize(4 * 1024 * 1024);
        p.start();
        return p;
    }

    static void check(SendResult r) {
        if (r.getSendStatus() != SendStatus.SEND_OK) throw new IllegalStateException("send status " + r.getSendStatus());
    }

    static void send(DefaultMQProducer p, Message m) throws Exception {
        check(p.send(m));
        counts.merge(m.getTopic(), 1, Integer::sum);
    }

    static void sendBatch(DefaultMQProducer p, String topic, List<Message> ms) throws Exception {
        // One queue for the whole batch, as a batch always goes.
        List<MessageQueue> mqs = p.fetchPublishMessageQueues(topic);
        check(p.send(ms, mqs.get(0)));
        counts.merge(topic, ms.size(), Integer::sum);
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static byte[] compressible(int len, long seed) {
        String[] words = {"rocketmq", "stream", "postgres", "queue", "offset", "broker", "message"};
        Random rnd = new Random(seed);
        StringBuilder sb = new StringBuilder(len + 16);
        while (sb.length() < len) sb.append(words[rnd.nextInt(words.length)]).append(' ');
        return sb.substring(0, len).getBytes(StandardCharsets.US_ASCII);
    }
}
