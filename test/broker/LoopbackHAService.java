/*
 * The master broker always opens its HA (replication) port, listenPort+1, and
 * RocketMQ 5.3.3 binds it to the wildcard address with no setting to change
 * that.  Anyone who connects there is streamed the commit log, so for a test
 * broker on a shared machine we rebind it to 127.0.0.1.  broker.sh compiles
 * this class and registers it through RocketMQ's own service lookup
 * (META-INF/service/org.apache.rocketmq.store.ha.HAService, read by
 * org.apache.rocketmq.common.utils.ServiceProvider in DefaultMessageStore).
 */
import java.io.IOException;
import java.lang.reflect.Field;
import java.net.InetSocketAddress;
import org.apache.rocketmq.store.DefaultMessageStore;
import org.apache.rocketmq.store.ha.DefaultHAService;

public class LoopbackHAService extends DefaultHAService {
    @Override
    public void init(DefaultMessageStore store) throws IOException {
        super.init(store);
        try {
            Field f = DefaultHAService.AcceptSocketService.class.getDeclaredField("socketAddressListen");
            f.setAccessible(true);
            f.set(acceptSocketService,
                new InetSocketAddress("127.0.0.1", store.getMessageStoreConfig().getHaListenPort()));
        } catch (ReflectiveOperationException e) {
            throw new IOException("cannot rebind the HA port to 127.0.0.1", e);
        }
    }
}
