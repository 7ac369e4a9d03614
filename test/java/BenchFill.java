/*
 * BenchFill <namesrv> <topic> <count> <bodyBytes> [json]
 *
 * Fills a topic quickly for the benchmarks: batches of up to 256 messages of
 * bodyBytes each (SEND_BATCH_MESSAGE), batch k to queue k mod queueCount,
 * sent by 4 threads (synchronous sends, so several batches are in flight).
 * Bodies are "<sequence number> " padded with 'x' to bodyBytes; no tags or
 * keys.  With "json", bodies are JSON objects of five typed fields padded
 * (in a sixth, "pad") to bodyBytes:
 *   {"id":123,"user":"u123","amount":23.45,"ok":false,"ts":"2026-11-24T23:55:03.123Z","pad":"xx"}
 * Prints count=<n> seconds=<s> rate=<msgs/s>.
 */
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageQueue;

public class BenchFill {
    static final int BATCH = 256, THREADS = 4;

    public static void main(String[] args) {
        FailFast.main(args, BenchFill::run);
    }

    static void run(String[] args) throws Exception {
        if (args.length != 4 && !(args.length == 5 && args[4].equals("json"))) {
            System.err.println("usage: BenchFill <namesrv> <topic> <count> <bodyBytes> [json]");
            System.exit(2);
        }
        String topic = args[1];
        long count = Long.parseLong(args[2]);
        int bodyBytes = Integer.parseInt(args[3]);
        boolean json = args.length == 5;
        DefaultMQProducer p = new DefaultMQProducer("rmq_bench_fill");
        p.setNamesrvAddr(args[0]);
        p.setSendMsgTimeout(30000);
        p.setRetryTimesWhenSendFailed(5);
        p.start();
        List<MessageQueue> mqs = new ArrayList<>(p.fetchPublishMessageQueues(topic));
        mqs.sort(Comparator.comparingInt(MessageQueue::getQueueId));
        long batches = (count + BATCH - 1) / BATCH;
        AtomicLong nextBatch = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        long t0 = System.nanoTime();
        Thread[] ts = new Thread[THREADS];
        for (int t = 0; t < THREADS; t++) {
            ts[t] = new Thread(() -> {
                try {
                    long b;
                    while (failure.get() == null && (b = nextBatch.getAndIncrement()) < batches) {
                        long first = b * BATCH, last = Math.min(count, first + BATCH);
                        List<Message> msgs = new ArrayList<>((int) (last - first));
                        for (long i = first; i < last; i++) msgs.add(new Message(topic, json ? jsonBody(i, bodyBytes) : body(i, bodyBytes)));
                        SendResult r = p.send(msgs, mqs.get((int) (b % mqs.size())));
                        if (r.getSendStatus() != SendStatus.SEND_OK)
                            throw new IllegalStateException("send status " + r.getSendStatus());
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            });
            ts[t].start();
        }
        for (Thread t : ts) t.join();
        double s = (System.nanoTime() - t0) / 1e9;
        p.shutdown();
        if (failure.get() != null) {
            failure.get().printStackTrace();
            System.exit(1);
        }
        System.out.printf("count=%d seconds=%.3f rate=%.0f%n", count, s, count / s);
        System.exit(0);
    }

    static byte[] body(long seq, int len) {
        byte[] b = new byte[len];
        Arrays.fill(b, (byte) 'x');
        byte[] s = (seq + " ").getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(s, 0, b, 0, Math.min(s.length, len));
        return b;
    }

    static byte[] jsonBody(long seq, int len) {
        StringBuilder b = new StringBuilder(len + 8);
        b.append(String.format("{\"id\":%d,\"user\":\"u%d\",\"amount\":%d.%02d,\"ok\":%b,"
                + "\"ts\":\"2026-11-24T23:55:%02d.%03dZ\",\"pad\":\"", seq, seq, seq % 1000, seq % 100,
                seq % 2 == 0, seq % 60, seq % 1000));
        while (b.length() < len - 2) b.append('x');
        return b.append("\"}").toString().getBytes(StandardCharsets.US_ASCII);
    }
}
