/*
 * JdbcLoop <namesrv> <topic> <group> <totalMessages> <jdbcUrl> <table> <offsetsTable> [maxSeconds]
 *
 * Benchmark baseline for streams: the consume loop users write today with
 * the official Java client and PostgreSQL JDBC.  DefaultLitePullConsumer in
 * assign mode over all queues (pullBatchSize 32, no broker offset commits);
 * for each non-empty poll(), one transaction that inserts the messages
 * (queue_id, queue_offset, body) into <table> with a prepared statement
 * (addBatch/executeBatch) and upserts <offsetsTable> (queue_id -> next
 * offset), then commits.  Queues start at their stored offset in
 * <offsetsTable>, else at the first offset.
 *
 * With JDBCLOOP_ROWS=1 in the environment it writes row at a time instead:
 * executeUpdate per message and per offsets row (a round trip each), as a
 * loop written without batching does.
 *
 * Timing runs from the first poll() to the commit that holds the last
 * needed message, or stops after maxSeconds (default unlimited) and reports
 * what was done by then.  Prints
 *   messages=<n> seconds=<s> rate=<msgs/s> transactions=<t>
 */
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

public class JdbcLoop {
    public static void main(String[] args) {
        FailFast.main(args, JdbcLoop::run);
    }

    static void run(String[] args) throws Exception {
        if (args.length != 7 && args.length != 8) {
            System.err.println("usage: JdbcLoop <namesrv> <topic> <group> <totalMessages> <jdbcUrl> <table> <offsetsTable> [maxSeconds]");
            Runtime.getRuntime().halt(2);
        }
        String topic = args[1], table = args[5], offsets = args[6];
        long total = Long.parseLong(args[3]);
        long maxNanos = args.length == 8 ? (long) (Double.parseDouble(args[7]) * 1e9) : Long.MAX_VALUE;

        Connection db = DriverManager.getConnection(args[4]);
        db.setAutoCommit(false);
        Map<Integer, Long> stored = new HashMap<>();
        try (Statement st = db.createStatement();
             ResultSet rs = st.executeQuery("SELECT queue_id, next_offset FROM " + offsets)) {
            while (rs.next()) stored.put(rs.getInt(1), rs.getLong(2));
        }
        db.commit();
        PreparedStatement ins = db.prepareStatement(
            "INSERT INTO " + table + " (queue_id, queue_offset, body) VALUES (?, ?, ?)");
        PreparedStatement ups = db.prepareStatement(
            "INSERT INTO " + offsets + " (queue_id, next_offset) VALUES (?, ?) "
            + "ON CONFLICT (queue_id) DO UPDATE SET next_offset = EXCLUDED.next_offset");

        DefaultLitePullConsumer c = new DefaultLitePullConsumer(args[2]);
        c.setNamesrvAddr(args[0]);
        c.setAutoCommit(false);
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        c.setPullBatchSize(32);
        c.start();
        List<MessageQueue> mqs = new ArrayList<>(c.fetchMessageQueues(topic));
        c.assign(mqs);
        for (MessageQueue mq : mqs)
            if (stored.containsKey(mq.getQueueId())) c.seek(mq, stored.get(mq.getQueueId()));

        boolean rows = "1".equals(System.getenv("JDBCLOOP_ROWS"));
        long n = 0, xacts = 0;
        long t0 = System.nanoTime(), idleSince = t0, t1 = t0;
        Map<Integer, Long> next = new HashMap<>();
        while (n < total) {
            List<MessageExt> got = c.poll(1000);
            long now = System.nanoTime();
            if (now - t0 > maxNanos) break;
            if (got.isEmpty()) {
                if (now - idleSince > 30_000_000_000L) {
                    System.err.println("JdbcLoop: no message for 30 s after " + n);
                    Runtime.getRuntime().halt(1);
                }
                continue;
            }
            idleSince = now;
            next.clear();
            for (MessageExt m : got) {
                ins.setInt(1, m.getQueueId());
                ins.setLong(2, m.getQueueOffset());
                ins.setBytes(3, m.getBody());
                if (rows) ins.executeUpdate(); else ins.addBatch();
                next.merge(m.getQueueId(), m.getQueueOffset() + 1, Math::max);
            }
            if (!rows) ins.executeBatch();
            for (Map.Entry<Integer, Long> e : next.entrySet()) {
                ups.setInt(1, e.getKey());
                ups.setLong(2, e.getValue());
                if (rows) ups.executeUpdate(); else ups.addBatch();
            }
            if (!rows) ups.executeBatch();
            db.commit();
            xacts++;
            n += got.size();
            t1 = System.nanoTime();
        }
        double s = (t1 - t0) / 1e9;
        System.out.printf("messages=%d seconds=%.3f rate=%.0f transactions=%d%n", n, s, n / s, xacts);
        System.out.flush();
        // No c.shutdown(), and halt() rather than exit(): see InteropConsume.
        Runtime.getRuntime().halt(0);
    }
}
