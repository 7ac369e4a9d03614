/*
 * LitePullBench <namesrv> <topic> <group> <totalMessages>
 *
 * Benchmark baseline: how fast the official Java DefaultLitePullConsumer
 * drains a topic.  Assign mode over all queues, every queue from its first
 * offset, pullBatchSize 32, no offset commits, no sink (messages are only
 * counted).  Timing runs from the first poll() call to the poll() that
 * returns the last needed message.  Prints
 *   messages=<n> seconds=<s> rate=<msgs/s>
 * Against a broker started with RMQ_ACL=1 / RMQ_TLS=1 it signs and talks TLS
 * as the environment of "broker.sh env" says (Secure.java).
 */
import java.util.ArrayList;
import java.util.List;
import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

public class LitePullBench {
    public static void main(String[] args) {
        Secure.init();
        FailFast.main(args, LitePullBench::run);
    }

    static void run(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: LitePullBench <namesrv> <topic> <group> <totalMessages>");
            Runtime.getRuntime().halt(2);
        }
        long total = Long.parseLong(args[3]);
        DefaultLitePullConsumer c = Secure.apply(new DefaultLitePullConsumer(args[2], Secure.rpcHook()));
        c.setNamesrvAddr(args[0]);
        c.setAutoCommit(false);
        // Start every queue at its first offset.  (The group never commits, so
        // the broker has no offset for it; seekToBegin() after assign() would
        // do the same but cancels the running pull tasks, which logs noise.)
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        c.setPullBatchSize(32);
        c.start();
        long n = 0, t0, t1;
        List<MessageQueue> mqs = new ArrayList<>(c.fetchMessageQueues(args[1]));
        c.assign(mqs);
        t0 = System.nanoTime();
        long idleSince = t0;
        while (n < total) {
            List<MessageExt> got = c.poll(1000);
            long now = System.nanoTime();
            if (got.isEmpty()) {
                if (now - idleSince > 30_000_000_000L) {
                    System.err.println("LitePullBench: no message for 30 s after " + n);
                    Runtime.getRuntime().halt(1);
                }
                continue;
            }
            idleSince = now;
            n += got.size();
        }
        t1 = System.nanoTime();
        // No c.shutdown(), and halt() rather than exit(): see InteropConsume.
        double s = (t1 - t0) / 1e9;
        System.out.printf("messages=%d seconds=%.3f rate=%.0f%n", n, s, n / s);
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }
}
