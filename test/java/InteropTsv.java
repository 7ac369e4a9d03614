/*
 * The one TSV line format shared by InteropProduce and InteropConsume (and
 * meant to be reproduced by the C side of the interop tests):
 *
 *   queue_id  queue_offset  msg_id  tags  keys  user_props_json  body_md5  body_len  body_hex
 *
 * - tags / keys: as stored, empty when absent.
 * - user_props_json: compact JSON object of the user properties only, keys
 *   sorted (Java String order = byte order for ASCII keys), e.g.
 *   {"a":"1","uni":"ünï©ødé"}; {} when none.  Escaping: only '"', '\' and
 *   chars below 0x20 (as backslash-u00xx, lowercase hex); everything else is raw UTF-8.
 * - body_md5 and body_hex: lowercase hex of the uncompressed body.
 */
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Map;
import java.util.TreeMap;

final class InteropTsv {
    private InteropTsv() {}

    static String line(int queueId, long queueOffset, String msgId, String tags, String keys,
                       Map<String, String> userProps, byte[] body) {
        return queueId + "\t" + queueOffset + "\t" + nz(msgId) + "\t" + nz(tags) + "\t" + nz(keys)
            + "\t" + json(userProps) + "\t" + md5(body) + "\t" + body.length + "\t" + hex(body);
    }

    static String json(Map<String, String> props) {
        StringBuilder sb = new StringBuilder("{");
        for (Map.Entry<String, String> e : new TreeMap<>(props).entrySet()) {
            if (sb.length() > 1) sb.append(',');
            str(sb, e.getKey());
            sb.append(':');
            str(sb, e.getValue());
        }
        return sb.append('}').toString();
    }

    private static void str(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') sb.append('\\').append(c);
            else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
            else sb.append(c);
        }
        sb.append('"');
    }

    static String md5(byte[] b) {
        try {
            return hex(MessageDigest.getInstance("MD5").digest(b));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static String hex(byte[] b) {
        char[] digits = "0123456789abcdef".toCharArray();
        char[] out = new char[b.length * 2];
        for (int i = 0; i < b.length; i++) {
            out[2 * i] = digits[(b[i] >> 4) & 0xF];
            out[2 * i + 1] = digits[b[i] & 0xF];
        }
        return new String(out);
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static String nz(String s) {
        return s == null ? "" : s;
    }
}
