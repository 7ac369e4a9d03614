import java.util.*;
import org.apache.rocketmq.client.consumer.rebalance.AllocateMessageQueueAveragely;
import org.apache.rocketmq.common.message.MessageQueue;

/**
 * Allocation vectors from the official client: for many groups (consumer
 * ids of Java's and of our shape, shuffled, some repeated) and topics
 * (1-4 brokers, 1-20 queues each), what AllocateMessageQueueAveragely gives
 * each member after RebalanceImpl's sorting.  test/unit/test_alloc.c checks
 * src/rmq_alloc.c against the output; run-all regenerates it and compares.
 *
 *   test/java/run.sh AllocVectors > test/unit/alloc_vectors.tsv
 *
 * Line: ids (comma-separated, as the broker lists them) TAB queues
 * (broker:count;...) TAB me TAB what me gets (broker/queueId,...).
 */
public class AllocVectors {
    public static void main(String[] args) {
        Random rnd = new Random(20261201L);
        AllocateMessageQueueAveragely avg = new AllocateMessageQueueAveragely();
        String[] brokerNames = {"broker-a", "broker-b", "broker-B", "bk10", "bk9", "broker_a"};
        StringBuilder out = new StringBuilder();
        for (int c = 0; c < 600; c++) {
            int nids = 1 + rnd.nextInt(c < 300 ? 6 : 14);
            List<String> ids = new ArrayList<>();
            for (int i = 0; i < nids; i++) {
                String id;
                if (i > 0 && rnd.nextInt(12) == 0)
                    id = ids.get(rnd.nextInt(ids.size()));      // one process, two connections
                else if (rnd.nextBoolean())
                    id = "10.0." + rnd.nextInt(3) + "." + rnd.nextInt(300) + "@" + rnd.nextInt(99999) + "#" + Math.abs(rnd.nextLong());
                else
                    id = "pg" + Math.abs(rnd.nextLong() % 100000) + "@db" + rnd.nextInt(3) + ":s" + rnd.nextInt(4) + ":" + rnd.nextInt(3);
                ids.add(id);
            }
            int nbrokers = 1 + rnd.nextInt(4);
            List<String> names = new ArrayList<>(Arrays.asList(brokerNames));
            Collections.shuffle(names, rnd);
            StringBuilder qdesc = new StringBuilder();
            List<MessageQueue> mqs = new ArrayList<>();
            for (int b = 0; b < nbrokers; b++) {
                int nq = 1 + rnd.nextInt(c % 5 == 0 ? 20 : 8);
                qdesc.append(b > 0 ? ";" : "").append(names.get(b)).append(':').append(nq);
                for (int q = 0; q < nq; q++)
                    mqs.add(new MessageQueue("T", names.get(b), q));
            }
            // as RebalanceImpl.rebalanceByTopic: sorted copies
            List<MessageQueue> mqAll = new ArrayList<>(mqs);
            Collections.sort(mqAll);
            List<String> cidAll = new ArrayList<>(ids);
            Collections.sort(cidAll);
            List<String> mes = new ArrayList<>(new LinkedHashSet<>(ids));
            if (rnd.nextInt(10) == 0)
                mes.add("10.9.9.9@0#stranger");
            for (String me : mes) {
                List<MessageQueue> got = avg.allocate("G", me, mqAll, cidAll);
                StringBuilder g = new StringBuilder();
                for (MessageQueue mq : got)
                    g.append(g.length() > 0 ? "," : "").append(mq.getBrokerName()).append('/').append(mq.getQueueId());
                out.append(String.join(",", ids)).append('\t').append(qdesc).append('\t').append(me)
                   .append('\t').append(g).append('\n');
            }
        }
        System.out.print(out);
    }
}
