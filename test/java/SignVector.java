/*
 * SignVector: fixed request-signing vectors computed by the official 5.3.3
 * client's AclClientRPCHook (what the Java producer and consumer run before
 * every request), for unit tests of other implementations.  Prints, per
 * vector, the extFields after signing (sorted) and the body, as JSON lines.
 * No broker needed.
 */
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.TreeMap;
import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.remoting.protocol.RemotingCommand;
import org.apache.rocketmq.remoting.protocol.RequestCode;
import org.apache.rocketmq.remoting.protocol.header.GetMaxOffsetRequestHeader;
import org.apache.rocketmq.remoting.protocol.header.SendMessageRequestHeader;
import org.apache.rocketmq.remoting.protocol.header.SendMessageRequestHeaderV2;

public class SignVector {
    public static void main(String[] args) {
        // 1. GET_MAX_OFFSET, no body
        GetMaxOffsetRequestHeader h = new GetMaxOffsetRequestHeader();
        h.setTopic("TopicTest");
        h.setQueueId(0);
        h.setBrokerName("broker-a");
        RemotingCommand c = RemotingCommand.createRequestCommand(RequestCode.GET_MAX_OFFSET, h);
        new AclClientRPCHook(new SessionCredentials("app", "app_secret")).doBeforeRequest("127.0.0.1:10911", c);
        print("GET_MAX_OFFSET", c);

        // 2. SEND_MESSAGE_V2 with a UTF-8 body, \u0001/\u0002 and non-ASCII
        // in the properties, and a security token
        SendMessageRequestHeader s = new SendMessageRequestHeader();
        s.setProducerGroup("pg");
        s.setTopic("TopicTest");
        s.setDefaultTopic("TBW102");
        s.setDefaultTopicQueueNums(4);
        s.setQueueId(1);
        s.setSysFlag(0);
        s.setBornTimestamp(1700000000000L);
        s.setFlag(0);
        s.setProperties("TAGS\u0001ü\u0002UNIQ_KEY\u0001AC1100010000000000000000000000001\u0002");
        s.setReconsumeTimes(0);
        s.setUnitMode(false);
        s.setBatch(false);
        s.setBrokerName("broker-a");
        RemotingCommand v2 = RemotingCommand.createRequestCommand(RequestCode.SEND_MESSAGE_V2,
            SendMessageRequestHeaderV2.createSendMessageRequestHeaderV2(s));
        v2.setBody("hello ü 世界".getBytes(StandardCharsets.UTF_8));
        new AclClientRPCHook(new SessionCredentials("app", "app_secret", "tok123")).doBeforeRequest("127.0.0.1:10911", v2);
        print("SEND_MESSAGE_V2", v2);
    }

    static void print(String name, RemotingCommand c) {
        StringBuilder sb = new StringBuilder("{\"name\":\"" + name + "\",\"code\":" + c.getCode() + ",\"extFields\":{");
        boolean first = true;
        for (Map.Entry<String, String> e : new TreeMap<>(c.getExtFields()).entrySet()) {
            sb.append(first ? "" : ",").append(q(e.getKey())).append(':').append(q(e.getValue()));
            first = false;
        }
        sb.append("},\"body\":").append(c.getBody() == null ? "null" : q(new String(c.getBody(), StandardCharsets.UTF_8)));
        System.out.println(sb.append('}'));
    }

    static String q(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') sb.append('\\').append(ch);
            else if (ch < 0x20 || ch > 0x7e) sb.append(String.format("\\u%04x", (int) ch));
            else sb.append(ch);
        }
        return sb.append('"').toString();
    }
}
