/*
 * SteadyProduce <namesrv> <topic> <msgsPerSecond> <stopFile>
 *
 * Load for outage tests: sends small messages at a steady rate with the
 * official producer until <stopFile> exists, riding out broker and name
 * server restarts (a failed send is tried again 20 ms later, not counted).
 * Prints "sent=<n> failed_attempts=<m>" at the end.  What was stored is
 * what the tests count, from the queues' offsets: a send that timed out may
 * still have been stored.
 */
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.message.Message;

public class SteadyProduce {
    public static void main(String[] args) {
        FailFast.main(args, SteadyProduce::run);
    }

    static void run(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: SteadyProduce <namesrv> <topic> <msgsPerSecond> <stopFile>");
            Runtime.getRuntime().halt(2);
        }
        String topic = args[1];
        long periodNanos = 1_000_000_000L / Math.max(1, Integer.parseInt(args[2]));
        DefaultMQProducer p = new DefaultMQProducer("rmq_steady_producer");
        p.setNamesrvAddr(args[0]);
        p.setSendMsgTimeout(2000);
        p.setRetryTimesWhenSendFailed(0);
        // Learn the route again soon after a name server restart.
        p.setPollNameServerInterval(1000);
        p.start();
        long sent = 0, failed = 0, next = System.nanoTime();
        while (!Files.exists(Paths.get(args[3]))) {
            long now = System.nanoTime();
            if (now < next) {
                Thread.sleep(Math.max(1, (next - now) / 1_000_000));
                continue;
            }
            try {
                Message m = new Message(topic, "TagSteady", ("steady " + sent).getBytes(StandardCharsets.UTF_8));
                if (p.send(m).getSendStatus() == SendStatus.SEND_OK) {
                    sent++;
                    next += periodNanos;
                } else {
                    failed++;
                }
            } catch (Exception e) {
                failed++;
                Thread.sleep(20);
                next = System.nanoTime();
            }
        }
        System.out.println("sent=" + sent + " failed_attempts=" + failed);
        System.out.flush();
        // No shutdown: see InteropConsume.
        Runtime.getRuntime().halt(0);
    }
}
