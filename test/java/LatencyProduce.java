/*
 * LatencyProduce <namesrv> <topic> <msgsPerSecond> <seconds> <bodyBytes>
 *
 * Sends messages at a steady rate for the latency benchmark: message i is
 * due at start + i / rate and is sent synchronously as soon as it is due
 * (queues round-robin, the producer's default), so a slow send delays the
 * next ones but the schedule catches up.  The latency is measured from each
 * message's born timestamp, which the client sets at send time; bodies are
 * "<sequence number> " padded with 'x'.  Prints
 *   sent=<n> seconds=<s> rate=<msgs/s> late_max_ms=<worst lag behind schedule>
 */
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.concurrent.locks.LockSupport;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.message.Message;

public class LatencyProduce {
    public static void main(String[] args) {
        FailFast.main(args, LatencyProduce::run);
    }

    static void run(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: LatencyProduce <namesrv> <topic> <msgsPerSecond> <seconds> <bodyBytes>");
            System.exit(2);
        }
        String topic = args[1];
        double rate = Double.parseDouble(args[2]);
        long count = (long) (rate * Double.parseDouble(args[3]));
        int bodyBytes = Integer.parseInt(args[4]);
        DefaultMQProducer p = new DefaultMQProducer("rmq_bench_latency");
        p.setNamesrvAddr(args[0]);
        p.setSendMsgTimeout(10000);
        p.start();
        // Warm up the route and the connection before the clock starts.
        p.fetchPublishMessageQueues(topic);
        long t0 = System.nanoTime(), lateMax = 0;
        for (long i = 0; i < count; i++) {
            long due = t0 + (long) (i * 1e9 / rate), now;
            while ((now = System.nanoTime()) < due) LockSupport.parkNanos(due - now);
            lateMax = Math.max(lateMax, now - due);
            SendResult r = p.send(new Message(topic, body(i, bodyBytes)));
            if (r.getSendStatus() != SendStatus.SEND_OK)
                throw new IllegalStateException("send status " + r.getSendStatus());
        }
        double s = (System.nanoTime() - t0) / 1e9;
        p.shutdown();
        System.out.printf("sent=%d seconds=%.3f rate=%.0f late_max_ms=%.1f%n", count, s, count / s, lateMax / 1e6);
        System.exit(0);
    }

    static byte[] body(long seq, int len) {
        byte[] b = new byte[len];
        Arrays.fill(b, (byte) 'x');
        byte[] s = (seq + " ").getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(s, 0, b, 0, Math.min(s.length, len));
        return b;
    }
}
