/*
 * InteropProduce <namesrv> <topic> <outfile>
 *
 * Sends a fixed, deterministic set of messages with the official Java
 * producer and writes one InteropTsv line per message to <outfile>, using
 * the queue id / offset / msg id the SendResult reports, sorted by (queue_id,
 * queue_offset) like InteropConsume's output.  Message i goes to publish
 * queue (i mod queue count), in queue-id order; the batch goes to one queue
 * as a single SEND_BATCH_MESSAGE.
 *
 * The set: plain ASCII with tag and keys; user properties (non-ASCII value);
 * non-ASCII UTF-8 body; all 256 byte values; 10000 B compressible text
 * (>= 4 KiB, so the client zlib-compresses it, sysFlag 0x301); 100 KiB of
 * random bytes (also compressed); a message without a tag; a batch of 10.
 *
 * Against a broker started with RMQ_ACL=1 / RMQ_TLS=1 it signs and talks
 * TLS as the environment of "broker.sh env" says (Secure.java).
 */
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageQueue;

public class InteropProduce {
    public static void main(String[] args) {
        Secure.init();
        FailFast.main(args, InteropProduce::run);
    }

    static void run(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: InteropProduce <namesrv> <topic> <outfile>");
            System.exit(2);
        }
        String namesrv = args[0], topic = args[1];
        DefaultMQProducer p = Secure.apply(new DefaultMQProducer("rmq_interop_producer", Secure.rpcHook()));
        p.setNamesrvAddr(namesrv);
        p.setSendMsgTimeout(10000);
        p.start();
        int rc = 0;
        TreeMap<Long, String> lines = new TreeMap<>();  // (queueId << 40) + queueOffset -> line
        try {
            List<MessageQueue> mqs = new ArrayList<>(p.fetchPublishMessageQueues(topic));
            mqs.sort(Comparator.comparingInt(MessageQueue::getQueueId));
            int next = 0;

            List<Message> singles = new ArrayList<>();
            List<Map<String, String>> singleProps = new ArrayList<>();

            singles.add(new Message(topic, "TagA", "k1 k2", InteropTsv.utf8("hello from the Java producer")));
            singleProps.add(new LinkedHashMap<>());

            Map<String, String> up = new LinkedHashMap<>();
            up.put("a", "1");
            up.put("uni", "ünï©ødé");
            up.put("zz_spaces", "x y z");
            Message m = new Message(topic, "TagProps", InteropTsv.utf8("message with user properties"));
            for (Map.Entry<String, String> e : up.entrySet()) m.putUserProperty(e.getKey(), e.getValue());
            singles.add(m);
            singleProps.add(up);

            singles.add(new Message(topic, "TagUtf8", "utf8", InteropTsv.utf8("Grüße, 世界! Ünïcödé ✓ 🚀 ©")));
            singleProps.add(new LinkedHashMap<>());

            byte[] all = new byte[256];
            for (int i = 0; i < 256; i++) all[i] = (byte) i;
            singles.add(new Message(topic, "TagBin", "bin", all));
            singleProps.add(new LinkedHashMap<>());

            singles.add(new Message(topic, "TagZip", "zip", compressibleText(10000, 42)));
            singleProps.add(new LinkedHashMap<>());

            byte[] big = new byte[100 * 1024];
            new Random(7).nextBytes(big);
            singles.add(new Message(topic, "TagBig", "big", big));
            singleProps.add(new LinkedHashMap<>());

            singles.add(new Message(topic, "", InteropTsv.utf8("no tag, no keys")));
            singleProps.add(new LinkedHashMap<>());

            for (int i = 0; i < singles.size(); i++) {
                Message msg = singles.get(i);
                byte[] body = msg.getBody();
                MessageQueue mq = mqs.get(next++ % mqs.size());
                SendResult r = p.send(msg, mq);
                if (r.getSendStatus() != SendStatus.SEND_OK) {
                    System.err.println("send status " + r.getSendStatus());
                    rc = 1;
                }
                lines.put(pos(r.getMessageQueue().getQueueId(), r.getQueueOffset()),
                    InteropTsv.line(r.getMessageQueue().getQueueId(), r.getQueueOffset(), r.getMsgId(),
                        msg.getTags(), msg.getKeys(), singleProps.get(i), body));
            }

            List<Message> batch = new ArrayList<>();
            for (int i = 0; i < 10; i++)
                batch.add(new Message(topic, "TagBatch", "batch-" + i, InteropTsv.utf8("batch message " + i)));
            MessageQueue mq = mqs.get(next++ % mqs.size());
            SendResult r = p.send(batch, mq);
            if (r.getSendStatus() != SendStatus.SEND_OK) {
                System.err.println("batch send status " + r.getSendStatus());
                rc = 1;
            }
            // SendResult.msgId of a batch is the comma-joined UNIQ_KEYs of the
            // messages, in order; queueOffset is that of the first message.
            String[] ids = r.getMsgId().split(",");
            for (int i = 0; i < batch.size(); i++) {
                Message msg = batch.get(i);
                String id = ids.length == batch.size() ? ids[i] : msg.getProperty("UNIQ_KEY");
                lines.put(pos(r.getMessageQueue().getQueueId(), r.getQueueOffset() + i),
                    InteropTsv.line(r.getMessageQueue().getQueueId(), r.getQueueOffset() + i, id,
                        msg.getTags(), msg.getKeys(), new LinkedHashMap<>(), msg.getBody()));
            }
        } finally {
            p.shutdown();
        }
        try (PrintWriter out = new PrintWriter(Files.newBufferedWriter(Paths.get(args[2]), StandardCharsets.UTF_8))) {
            for (String l : lines.values()) out.println(l);
        }
        System.exit(rc);
    }

    static long pos(int queueId, long queueOffset) {
        return ((long) queueId << 40) + queueOffset;
    }

    /** Deterministic words from a small vocabulary: compresses ~4x with zlib. */
    static byte[] compressibleText(int len, long seed) {
        String[] words = {"rocketmq", "stream", "postgres", "queue", "offset", "broker", "message",
            "consumer", "producer", "topic", "batch", "commit", "pull", "zlib", "tag", "key"};
        Random rnd = new Random(seed);
        StringBuilder sb = new StringBuilder(len + 16);
        while (sb.length() < len) sb.append(words[rnd.nextInt(words.length)]).append(rnd.nextInt(10) == 0 ? '\n' : ' ');
        return sb.substring(0, len).getBytes(StandardCharsets.US_ASCII);
    }
}
