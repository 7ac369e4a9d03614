#!/usr/bin/env python3
"""Ask a broker started with RMQ_ACL=1 (broker.sh) which request needs which
permission, and what it answers when one is missing: every request code a
client sends, signed as each test user (and unsigned, unknown, wrongly
signed), printed as a Markdown table of "code remark".  Also checks the
signing rules (what is signed, replays, tokens, oneway failures) and that the
name server ignores ACL.  Python 3 stdlib only; uses rmq_probe.py.

  eval "$(RMQ_ACL=1 test/broker/broker.sh env)"
  test/broker/acl_matrix.py [--tls --tls-ca F ...] matrix   # the table
  test/broker/acl_matrix.py [--tls ...] signing             # signing checks

It creates a few more users (as the Super user) for the cases broker.sh
does not: app_deny (Allow on the group, Deny All on the topic) and
app_disabled (status disable, same grants as app).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rmq_probe as rp  # noqa: E402

E = os.environ
BROKER = E.get("RMQ_BROKER", "127.0.0.1:10911")
NAMESRV = E.get("RMQ_NAMESRV", "127.0.0.1:9876")
BNAME = E.get("RMQ_BROKER_NAME", "broker-a")
T = E.get("RMQ_ACL_TOPIC", "acl_topic")
T2 = E.get("RMQ_ACL_OTHER_TOPIC", "acl_other_topic")
G = E.get("RMQ_ACL_GROUP", "acl_group")
G2 = E.get("RMQ_ACL_OTHER_GROUP", "acl_other_group")
ADMIN = (E.get("RMQ_ACL_ADMIN_USER", "rmq_admin"), E.get("RMQ_ACL_ADMIN_SECRET", "rmq_admin_secret"))


def cred(prefix, default):
    return (E.get(prefix + "_USER", default), E.get(prefix + "_SECRET", default + "_secret"))


APP = cred("RMQ_ACL", "app")
NOPUB = cred("RMQ_ACL_NOPUB", "app_nopub")
NOSUB = cred("RMQ_ACL_NOSUB", "app_nosub")
NOGET = cred("RMQ_ACL_NOGET", "app_noget")
DENY = ("app_deny", "app_deny_secret")
DISABLED = ("app_disabled", "app_disabled_secret")


def call(addr, code, ext, body=b"", who=None, timeout=10):
    """Send as `who` ((user, secret), or None = unsigned); return "code remark"."""
    rp.Conn.access_key, rp.Conn.secret_key = who if who else (None, None)
    try:
        h, _ = rp.rpc(addr, code, ext, body, timeout=timeout)
    except (OSError, ValueError, RuntimeError) as e:
        return "(%s: %s)" % (type(e).__name__, e)
    finally:
        rp.Conn.access_key = rp.Conn.secret_key = None
    return "%s %s" % (h.get("code"), h.get("remark") or "")


def pull_after_heartbeat(ext, who, group, topic):
    """PULL_MESSAGE on a connection that first sent a HEART_BEAT for the
    group (signed as the Super user) and got its answer, so that an
    authorized pull gets a real pull status rather than 24 "the consumer's
    group info not exist"."""
    hb = heartbeat_body(group, topic)
    e = rp.sign(ext, b"", *who) if who else dict(ext)
    try:
        with rp.connect(BROKER, 5) as s:
            for f in (raw_frame(rp.sign({}, hb, *ADMIN), 34, hb), raw_frame(e, 11)):
                s.sendall(f)
                while True:
                    h, _ = rp.read_frame(s)
                    if h.get("flag", 0) & 1:
                        break
        return "%s %s" % (h.get("code"), h.get("remark") or "")
    except (OSError, ValueError, RuntimeError) as ex:
        return "(%s: %s)" % (type(ex).__name__, ex)


def cell(result):
    """Refusals in full; anything else is "ok (code)": authorization passed
    and the request was processed (its own status is beside the point)."""
    code, _, remark = result.partition(" ")
    if code == "16" or not code.isdigit():
        return result.replace("|", "\\|").replace("\n", " ")
    return "ok (%s)" % code


def now_ms():
    return str(int(time.time() * 1000))


def props(**kv):
    return "".join("%s\x01%s\x02" % (k, v) for k, v in kv.items())


def uniq():
    return "%032X" % int(time.time() * 1e9)


def send_v2_ext(topic, group="rmq_acl_producer"):
    return {"a": group, "b": topic, "c": "TBW102", "d": "4", "e": "0", "f": "0", "g": now_ms(),
            "h": "0", "i": props(UNIQ_KEY=uniq(), TAGS="acl"), "j": "0", "k": "false", "m": "false",
            "bname": BNAME}


def batch_body(n=2):
    out = b""
    for i in range(n):
        p = props(UNIQ_KEY=uniq() + str(i)).encode()
        data = ("acl batch %d" % i).encode()
        out += struct.pack(">iiiii", 22 + len(data) + len(p), 0, 0, 0, len(data)) + data
        out += struct.pack(">h", len(p)) + p
    return out


def heartbeat_body(group, topic):
    return json.dumps({"clientID": "127.0.0.1@acl_matrix", "producerDataSet": [],
                       "consumerDataSet": [{
                           "groupName": group, "consumeType": "CONSUME_ACTIVELY",
                           "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
                           "unitMode": False,
                           "subscriptionDataSet": [{"topic": topic, "subString": "*", "tagsSet": [],
                                                    "codeSet": [], "subVersion": 1, "expressionType": "TAG",
                                                    "classFilterMode": False}]}]}).encode()


def lock_body(group, topic):
    return json.dumps({"consumerGroup": group, "clientId": "127.0.0.1@acl_matrix", "onlyThisBroker": True,
                       "mqSet": [{"topic": topic, "brokerName": BNAME, "queueId": 0}]}).encode()


# (name, code, addr, ext(topic, group), body(topic, group))
REQUESTS = [
    ("SEND_MESSAGE_V2 (310)", 310, BROKER, lambda t, g: send_v2_ext(t), lambda t, g: b"acl test"),
    ("SEND_BATCH_MESSAGE (320)", 320, BROKER,
     lambda t, g: dict(send_v2_ext(t), i=props(UNIQ_KEY=uniq()), m="true"), lambda t, g: batch_body()),
    ("PULL_MESSAGE (11)", 11, BROKER,
     lambda t, g: {"consumerGroup": g, "topic": t, "queueId": "0", "queueOffset": "0", "maxMsgNums": "1",
                   "sysFlag": "0", "commitOffset": "0", "suspendTimeoutMillis": "0", "subscription": "*",
                   "subVersion": "0", "expressionType": "TAG", "bname": BNAME}, None),
    ("QUERY_CONSUMER_OFFSET (14)", 14, BROKER,
     lambda t, g: {"consumerGroup": g, "topic": t, "queueId": "0", "bname": BNAME}, None),
    ("UPDATE_CONSUMER_OFFSET (15)", 15, BROKER,
     lambda t, g: {"consumerGroup": g, "topic": t, "queueId": "0", "commitOffset": "0", "bname": BNAME}, None),
    ("GET_MAX_OFFSET (30)", 30, BROKER, lambda t, g: {"topic": t, "queueId": "0", "bname": BNAME}, None),
    ("GET_MIN_OFFSET (31)", 31, BROKER, lambda t, g: {"topic": t, "queueId": "0", "bname": BNAME}, None),
    ("SEARCH_OFFSET_BY_TIMESTAMP (29)", 29, BROKER,
     lambda t, g: {"topic": t, "queueId": "0", "timestamp": now_ms(), "bname": BNAME}, None),
    ("GET_EARLIEST_MSG_STORETIME (32)", 32, BROKER, lambda t, g: {"topic": t, "queueId": "0", "bname": BNAME}, None),
    ("HEART_BEAT (34)", 34, BROKER, lambda t, g: {}, lambda t, g: heartbeat_body(g, t)),
    ("GET_CONSUMER_LIST_BY_GROUP (38)", 38, BROKER, lambda t, g: {"consumerGroup": g}, None),
    ("LOCK_BATCH_MQ (41)", 41, BROKER, lambda t, g: {}, lambda t, g: lock_body(g, t)),
    ("UNLOCK_BATCH_MQ (42)", 42, BROKER, lambda t, g: {}, lambda t, g: lock_body(g, t)),
    ("UNREGISTER_CLIENT (35)", 35, BROKER,
     lambda t, g: {"clientID": "127.0.0.1@acl_matrix", "consumerGroup": g}, None),
    ("UPDATE_AND_CREATE_TOPIC (17)", 17, BROKER,
     lambda t, g: {"topic": t, "defaultTopic": "TBW102", "readQueueNums": "4", "writeQueueNums": "4",
                   "perm": "6", "topicFilterType": "SINGLE_TAG", "topicSysFlag": "0", "order": "false"}, None),
    ("UPDATE_BROKER_CONFIG (25)", 25, BROKER, lambda t, g: {}, lambda t, g: b"brokerPermission=6\n"),
    ("GET_BROKER_RUNTIME_INFO (28)", 28, BROKER, lambda t, g: {}, None),
    ("GET_ROUTEINFO_BY_TOPIC (105) to the broker", 105, BROKER, lambda t, g: {"topic": t}, None),
    ("GET_ROUTEINFO_BY_TOPIC (105) to the name server", 105, NAMESRV, lambda t, g: {"topic": t}, None),
    ("GET_BROKER_CLUSTER_INFO (106) to the name server", 106, NAMESRV, lambda t, g: {}, None),
]

# (column title, who, topic, group)
WHO = [
    ("Super user", ADMIN, T, G),
    ("app (Pub,Sub,Get)", APP, T, G),
    ("no Pub", NOPUB, T, G),
    ("no Sub", NOSUB, T, G),
    ("no Get", NOGET, T, G),
    ("topic not granted", APP, T2, G),
    ("group not granted", APP, T, G2),
    ("Deny on topic", DENY, T, G),
    ("disabled user", DISABLED, T, G),
    ("unknown user", ("nobody", "x"), T, G),
    ("wrong secret", (APP[0], "not_the_secret"), T, G),
    ("unsigned", None, T, G),
]


def setup_extra_users():
    for user, secret, status in ((DENY[0], DENY[1], "enable"), (DISABLED[0], DISABLED[1], "disable")):
        body = json.dumps({"username": user, "password": secret, "userType": "Normal",
                           "userStatus": status}).encode()
        r = call(BROKER, 3001, {"username": user}, body, ADMIN)
        if not r.startswith("0 ") and "existed" in r:
            r = call(BROKER, 3002, {"username": user}, body, ADMIN)
        if not r.startswith("0 "):
            raise SystemExit("acl_matrix: creating %s: %s" % (user, r))
    acls = [(DENY[0], [("Group:" + G, ["Pub", "Sub", "Get"], "Allow"), ("Topic:" + T, ["All"], "Deny")]),
            (DISABLED[0], [("Group:" + G, ["Pub", "Sub", "Get"], "Allow"),
                           ("Topic:" + T, ["Pub", "Sub", "Get"], "Allow")])]
    for user, entries in acls:
        body = json.dumps({"subject": "User:" + user, "policies": [{"policyType": "Custom", "entries": [
            {"resource": r, "actions": a, "decision": d} for r, a, d in entries]}]}).encode()
        r = call(BROKER, 3006, {"subject": "User:" + user}, body, ADMIN)
        if not r.startswith("0 "):
            raise SystemExit("acl_matrix: acl for %s: %s" % (user, r))


def matrix():
    setup_extra_users()
    print("Cells: 16 + remark = refused; ok (N) = authorized, N = the request's own response code.\n")
    print("| request | " + " | ".join(w[0] for w in WHO) + " |")
    print("|---" * (len(WHO) + 1) + "|")
    for name, code, addr, ext, body in REQUESTS:
        cells = []
        for _, who, t, g in WHO:
            b = body(t, g) if body else b""
            if code == 17 and t == T:
                t = t + "_created"      # do not touch the test topic's queues
                b = b""
            if code == 11:
                cells.append(cell(pull_after_heartbeat(ext(t, g), who, g if g == G else G, T)))
            else:
                cells.append(cell(call(addr, code, ext(t, g), b, who)))
        print("| %s | %s |" % (name, " | ".join(cells)))


def raw_frame(ext, code, body=b"", flag=0, opaque=7):
    hdr = {"code": code, "flag": flag, "language": "OTHER", "opaque": opaque, "version": 475, "extFields": ext}
    h = json.dumps(hdr, separators=(",", ":")).encode()
    return struct.pack(">ii", 4 + len(h) + len(body), len(h)) + h + body


def send_frames(frames, want):
    """Send frames on one connection, read `want` responses: ["code remark"]
    in the order of their opaque (the broker may answer out of order)."""
    out = {}
    with rp.connect(BROKER, 5) as s:
        for f in frames:
            s.sendall(f)
        while len(out) < want:
            h, _ = rp.read_frame(s)
            if h.get("flag", 0) & 1:
                out[(h.get("opaque"), len(out))] = "%s %s" % (h.get("code"), h.get("remark") or "")
    return [out[k] for k in sorted(out)]


def signing():
    user, secret = APP
    q = {"topic": T, "queueId": "0", "bname": BNAME}
    checks = []

    def chk(name, got):
        checks.append((name, got))

    # baseline
    chk("GET_MAX_OFFSET signed as app", call(BROKER, 30, q, b"", APP))
    # replay: the very same signed frame twice, 3 s apart
    f = raw_frame(rp.sign(q, b"", user, secret), 30)
    a = send_frames([f], 1)[0]
    time.sleep(3)
    chk("same signed frame again 3 s later (replay)", a + " / " + send_frames([f], 1)[0])
    # an extra field added after signing
    ext = rp.sign(q, b"", user, secret)
    ext["extra"] = "x"
    chk("extra field added after signing", send_frames([raw_frame(ext, 30)], 1)[0])
    # extra field signed too
    chk("extra field signed too", send_frames([raw_frame(rp.sign(dict(q, extra="x"), b"", user, secret), 30)], 1)[0])
    # AccessKey present, no Signature
    chk("AccessKey without Signature", send_frames([raw_frame(dict(q, AccessKey=user), 30)], 1)[0])
    # SecurityToken signed / not signed
    chk("SecurityToken included in the signature",
        send_frames([raw_frame(rp.sign(q, b"", user, secret, "tok123"), 30)], 1)[0])
    ext = rp.sign(q, b"", user, secret)
    ext["SecurityToken"] = "tok123"
    chk("SecurityToken sent but not signed", send_frames([raw_frame(ext, 30)], 1)[0])
    # keys sorted by byte order vs case-insensitively: SecurityToken sorts
    # before bname in byte order, after it case-insensitively
    ext = dict(q, AccessKey=user, SecurityToken="tok123")
    content = "".join(ext[k] for k in sorted(ext, key=str.lower)).encode()
    ext["Signature"] = base64.b64encode(hmac.new(secret.encode(), content, hashlib.sha1).digest()).decode()
    chk("keys sorted case-insensitively (SecurityToken after bname)", send_frames([raw_frame(ext, 30)], 1)[0])
    # values in key order, but with the keys too (key=value...)
    ext = dict(q, AccessKey=user)
    content = "".join(k + "=" + ext[k] for k in sorted(ext, key=rp.java_order)).encode()
    ext["Signature"] = base64.b64encode(hmac.new(secret.encode(), content, hashlib.sha1).digest()).decode()
    chk("keys signed too (key=value)", send_frames([raw_frame(ext, 30)], 1)[0])
    # HMAC-SHA256 instead of SHA1
    ext = dict(q, AccessKey=user)
    content = "".join(ext[k] for k in sorted(ext, key=rp.java_order)).encode()
    ext["Signature"] = base64.b64encode(hmac.new(secret.encode(), content, hashlib.sha256).digest()).decode()
    chk("HMAC-SHA256 instead of HMAC-SHA1", send_frames([raw_frame(ext, 30)], 1)[0])
    # hex instead of base64
    ext = dict(q, AccessKey=user)
    ext["Signature"] = hmac.new(secret.encode(), content, hashlib.sha1).hexdigest()
    chk("hex signature instead of base64", send_frames([raw_frame(ext, 30)], 1)[0])
    # body: signed with body vs without
    ext = send_v2_ext(T)
    body = "body ü 世界".encode()
    chk("SEND_MESSAGE_V2, body (UTF-8) and \\x01\\x02 properties signed",
        send_frames([raw_frame(rp.sign(ext, body, user, secret), 310, body)], 1)[0])
    ext = dict(send_v2_ext(T), i=props(UNIQ_KEY=uniq(), TAGS="ü", k="ü 世界"))
    chk("non-ASCII property value in the header, signed as UTF-8",
        send_frames([raw_frame(rp.sign(ext, body, user, secret), 310, body)], 1)[0])
    ext = send_v2_ext(T)
    chk("body not included in the signature",
        send_frames([raw_frame(rp.sign(ext, b"", user, secret), 310, body)], 1)[0])
    ext = send_v2_ext(T)
    signed = rp.sign(ext, body, user, secret)
    chk("body changed after signing", send_frames([raw_frame(signed, 310, body + b"!")], 1)[0])
    # the version field and other top-level header fields are not signed
    f = raw_frame(rp.sign(q, b"", user, secret), 30).replace(b'"version":475', b'"version":479')
    chk("top-level header field (version) changed after signing", send_frames([f], 1)[0])
    # oneway failure: flag 2, unsigned; then a normal request on the same connection
    with rp.connect(BROKER, 5) as s:
        s.sendall(raw_frame(dict(q), 30, flag=2))
        s.settimeout(2)
        try:
            d = s.recv(4)
            r = "got %r" % d
        except socket.timeout:
            r = "no response within 2 s, connection open"
        s.settimeout(5)
        s.sendall(raw_frame(rp.sign(q, b"", user, secret), 30))
        h, _ = rp.read_frame(s)
        r += "; then a signed request on it: %s" % h.get("code")
    chk("oneway unsigned request", r)
    # many requests on one connection, first unsigned then signed (stateless: each checked)
    chk("unsigned then signed on one connection", " / ".join(send_frames(
        [raw_frame(q, 30, opaque=1), raw_frame(rp.sign(q, b"", user, secret), 30, opaque=2)], 2)))
    chk("signed then unsigned on one connection", " / ".join(send_frames(
        [raw_frame(rp.sign(q, b"", user, secret), 30, opaque=1), raw_frame(q, 30, opaque=2)], 2)))
    # _UNIQUE_KEY_QUERY is left out of the signed content when the request's
    # version is <= V4_9_3 (ordinal 395), and only then
    qm = {"topic": T, "key": "k", "maxNum": "1", "beginTimestamp": "0", "endTimestamp": now_ms()}
    ext = rp.sign(qm, b"", user, secret)           # signed without the flag
    ext["_UNIQUE_KEY_QUERY"] = "false"
    for ver in (395, 475):
        f = raw_frame(ext, 12).replace(b'"version":475', b'"version":%d' % ver)
        chk("QUERY_MESSAGE, _UNIQUE_KEY_QUERY added unsigned, version %d" % ver, send_frames([f], 1)[0])
    # The client's answer to a request the broker forwards to it
    # (GET_CONSUMER_RUNNING_INFO 307, sent by an admin) is not authenticated.
    chk("unsigned answer to a broker-initiated GET_CONSUMER_RUNNING_INFO", running_info_roundtrip())
    # name server: unsigned and badly signed
    rp.Conn.access_key = None
    chk("name server, GET_ROUTEINFO_BY_TOPIC unsigned", call(NAMESRV, 105, {"topic": T}))
    chk("name server, GET_ROUTEINFO_BY_TOPIC wrong secret", call(NAMESRV, 105, {"topic": T}, b"", (user, "bad")))
    for name, got in checks:
        print("| %s | %s |" % (name, got))


def running_info_roundtrip():
    cid = "127.0.0.1@acl_matrix_307"
    hb = json.loads(heartbeat_body(G, T))
    hb["clientID"] = cid
    hb = json.dumps(hb).encode()
    with rp.connect(BROKER, 10) as c, rp.connect(BROKER, 10) as a:
        c.sendall(raw_frame(rp.sign({}, hb, *APP), 34, hb, opaque=1))
        while not rp.read_frame(c)[0].get("flag", 0) & 1:
            pass
        a.sendall(raw_frame(rp.sign({"consumerGroup": G, "clientId": cid, "jstackEnable": "false"}, b"", *ADMIN),
                            307, opaque=2))
        while True:  # the forwarded request, on the consumer's connection
            h, _ = rp.read_frame(c)
            if h.get("code") == 307 and not h.get("flag", 0) & 1:
                break
        info = json.dumps({"properties": {"PROP_CONSUME_TYPE": "CONSUME_ACTIVELY",
                                          "PROP_CONSUMER_START_TIMESTAMP": now_ms()},
                           "subscriptionSet": [], "mqTable": {}, "statusTable": {}, "jstack": ""}).encode()
        hdr = json.dumps({"code": 0, "flag": 1, "language": "OTHER", "opaque": h["opaque"], "version": 475,
                          "extFields": {}}, separators=(",", ":")).encode()
        c.sendall(struct.pack(">ii", 4 + len(hdr) + len(info), len(hdr)) + hdr + info)
        while True:
            h, body = rp.read_frame(a)
            if h.get("flag", 0) & 1:
                return "admin got code %s, body %s" % (h.get("code"), "= our answer" if body == info else body[:80])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--tls-ca")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("what", choices=["matrix", "signing"])
    a = ap.parse_args()
    rp.Conn.tls = a.tls or bool(a.tls_ca)
    rp.Conn.tls_ca, rp.Conn.tls_cert, rp.Conn.tls_key = a.tls_ca, a.tls_cert, a.tls_key
    {"matrix": matrix, "signing": signing}[a.what]()


if __name__ == "__main__":
    main()
