/*
 * GroupMember <namesrv> <topic> <group> <outFile> <stopFile>
 *
 * An official push consumer in the group, as teams run them: orderly
 * (MessageListenerOrderly, so it takes the broker's queue locks), clustering,
 * from the first offset.  Appends "topic TAB broker TAB queueId TAB
 * queueOffset" per message consumed to <outFile>, keeps the queues it holds
 * in <outFile>.alloc (rewritten every 200 ms: "topic TAB broker TAB queueId"),
 * prints its client id on the first line of stdout, and shuts down cleanly
 * (offsets persisted, locks given back) once <stopFile> exists.
 */
import java.io.FileWriter;
import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerOrderly;
import org.apache.rocketmq.client.impl.consumer.ProcessQueue;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

public class GroupMember {
    public static void main(String[] args) {
        FailFast.main(args, GroupMember::run);
    }

    static void run(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: GroupMember <namesrv> <topic> <group> <outFile> <stopFile>");
            Runtime.getRuntime().halt(2);
        }
        Path stop = Paths.get(args[4]);
        Path alloc = Paths.get(args[3] + ".alloc");
        Writer out = new FileWriter(args[3], StandardCharsets.UTF_8, true);
        DefaultMQPushConsumer c = new DefaultMQPushConsumer(args[2]);
        c.setNamesrvAddr(args[0]);
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        c.subscribe(args[1], "*");
        c.registerMessageListener((MessageListenerOrderly) (msgs, ctx) -> {
            synchronized (out) {
                try {
                    for (MessageExt m : msgs)
                        out.write(m.getTopic() + "\t" + m.getBrokerName() + "\t" + m.getQueueId() + "\t"
                            + m.getQueueOffset() + "\n");
                    out.flush();
                } catch (IOException e) {
                    throw new RuntimeException(e);
                }
            }
            return ConsumeOrderlyStatus.SUCCESS;
        });
        c.start();
        System.out.println(c.getDefaultMQPushConsumerImpl().getRebalanceImpl().getmQClientFactory().getClientId());
        System.out.flush();
        while (!Files.exists(stop)) {
            Map<MessageQueue, ProcessQueue> held = c.getDefaultMQPushConsumerImpl().getRebalanceImpl().getProcessQueueTable();
            List<String> lines = new ArrayList<>();
            for (Map.Entry<MessageQueue, ProcessQueue> e : held.entrySet())
                if (!e.getValue().isDropped() && e.getValue().isLocked())
                    lines.add(e.getKey().getTopic() + "\t" + e.getKey().getBrokerName() + "\t" + e.getKey().getQueueId());
            Collections.sort(lines);
            Path tmp = Paths.get(alloc + ".tmp");
            Files.write(tmp, lines, StandardCharsets.UTF_8);
            Files.move(tmp, alloc, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            Thread.sleep(200);
        }
        c.shutdown();
        synchronized (out) {
            out.close();
        }
        Files.write(alloc, new byte[0]);
        System.exit(0);
    }
}
