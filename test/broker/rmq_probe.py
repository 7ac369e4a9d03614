#!/usr/bin/env python3
"""Readiness probes for the test broker, spoken directly in RocketMQ's remoting
protocol (JSON headers) so that broker.sh need not start a JVM just to ask the
name server a question.  Python 3 stdlib only.

  rmq_probe.py [--timeout S] [--nudge] cluster NAMESRV BROKER_NAME BROKER_ADDR
      wait until GET_BROKER_CLUSTER_INFO (106) lists BROKER_ADDR for BROKER_NAME.
      With --nudge, while it does not, ask the broker (about once a second)
      to re-register: see nudge() for why
  rmq_probe.py [--timeout S] route NAMESRV TOPIC
      wait until GET_ROUTEINFO_BY_TOPIC (105) succeeds with at least one queue

  rmq_probe.py create-topic BROKER_ADDR TOPIC QUEUES
      UPDATE_AND_CREATE_TOPIC (17) sent straight to the broker, as mqadmin
      updateTopic does, without the ~3.5 s JVM start-up and client shutdown

  rmq_probe.py delete-expired BROKER_ADDR
      DELETE_EXPIRED_COMMITLOG (329), as mqadmin deleteExpiredCommitLog sends

  rmq_probe.py send-raw BROKER_ADDR TOPIC QUEUE_ID SYSFLAG BODY [TAGS]
      SEND_MESSAGE (10) with a sysFlag of our choosing, which the broker
      stores as given: a message flagged compressed whose body is not is the
      poison a buggy producer leaves behind.  Prints the queue offset.  Sent
      once, never retried.

  rmq_probe.py send-inner-batch BROKER_ADDR TOPIC QUEUE_ID N good|lengths
      SEND_BATCH_MESSAGE (320) as the Java producer sends a batch (a UNIQ_KEY
      for the batch), so a BatchCQ topic stores it as one record of N
      messages with tag TagRaw and bodies "raw 0".. .  With "lengths" the
      second message's property length is one more than its properties:
      the broker, which counts messages by their size fields, stores it,
      but it does not decode.  Prints the batch's first queue offset.

  rmq_probe.py request ADDR CODE [KEY=VALUE...] [--body TEXT|--body-hex HEX]
      send one request (signed when --access-key is given) and print the
      response as one JSON line: {"code":..,"remark":..,"extFields":..,
      "bodyLength":..,"body":..(text, first 2000 chars)}.  Exit 0 whenever a
      response arrived, whatever its code; 1 if the connection failed or was
      closed (the reason on stderr, e.g. "ConnectionError: connection closed
      before a response", "SSLCertVerificationError: ...")

  rmq_probe.py create-user BROKER_ADDR USER PASSWORD [Normal|Super]
      AUTH_CREATE_USER (3001), or AUTH_UPDATE_USER (3002) if the user
      exists, as mqadmin createUser/updateUser send them.  Needs a Super
      user's --access-key/--secret-key
  rmq_probe.py create-acl BROKER_ADDR USER RESOURCES ACTIONS [Allow|Deny]
      AUTH_CREATE_ACL (3006): grant (or deny) ACTIONS (comma list: Pub, Sub,
      Get, Create, Update, Delete, List, All) on RESOURCES (comma list:
      Topic:T, Group:G, Topic:pre*, *, ...) to User:USER, as mqadmin
      createAcl does; merges with the user's existing policy

Options for every command (before the command name):
  --access-key AK --secret-key SK [--security-token T]
      sign every request as RocketMQ's AclClientRPCHook does (ACL 1.0 and
      2.0 use the same remoting signature): see sign()
  --tls                 talk TLS (to a broker or name server started with
                        RMQ_TLS=1, or to the default "permissive" one)
  --tls-ca FILE         verify the server certificate against this CA and
                        its name against the address's host (or
                        --tls-server-name); without it nothing is verified
  --tls-server-name N   the name to send as SNI and to check the
                        certificate against (default: the address's host;
                        Python sends no SNI for an IP address)
  --tls-cert F --tls-key F   client certificate (for tls.server.need.client.auth)

Exit status 0 when the condition holds, 1 on timeout (last error on stderr).
"""
import argparse
import base64
import hashlib
import hmac
import json
import socket
import ssl
import struct
import sys
import time


class Conn:
    """How to reach and authenticate to the servers (set from the options)."""
    access_key = None
    secret_key = None
    security_token = None
    tls = False
    tls_ca = None
    tls_server_name = None
    tls_cert = None
    tls_key = None


def java_order(key):
    """Java's String.compareTo order (UTF-16 code units), which the TreeMap
    of AclClientRPCHook and of the broker use; for ASCII keys it is plain
    byte order, so "AccessKey" sorts before lower-case header fields."""
    return key.encode("utf-16-be")


def sign(ext, body, access_key, secret_key, security_token=None):
    """Return ext plus AccessKey [, SecurityToken], Signature.

    The content signed is the VALUES of all extFields but Signature, sorted
    by key (java_order), concatenated with no separator, as UTF-8 (the
    decoded strings, not their JSON escapes), followed by the body bytes as
    sent.  Signature = base64(HMAC-SHA1(key = secret as UTF-8, content)).
    """
    ext = dict(ext)
    ext["AccessKey"] = access_key
    if security_token:
        ext["SecurityToken"] = security_token
    ext.pop("Signature", None)
    content = "".join(ext[k] for k in sorted(ext, key=java_order)).encode("utf-8") + (body or b"")
    mac = hmac.new(secret_key.encode("utf-8"), content, hashlib.sha1).digest()
    ext["Signature"] = base64.b64encode(mac).decode("ascii")
    return ext


def connect(addr, timeout):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    if not Conn.tls:
        return s
    if Conn.tls_ca:
        ctx = ssl.create_default_context(cafile=Conn.tls_ca)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if Conn.tls_cert:
        ctx.load_cert_chain(Conn.tls_cert, Conn.tls_key)
    try:
        return ctx.wrap_socket(s, server_hostname=Conn.tls_server_name or host)
    except BaseException:
        s.close()
        raise


def rpc(addr, code, ext=None, body=b"", timeout=3.0, signed=True):
    """One request/response on a fresh connection; returns (header, body).
    Signed with Conn's credentials when there are any (and signed)."""
    ext = {k: str(v) for k, v in (ext or {}).items() if v is not None}
    if signed and Conn.access_key is not None:
        ext = sign(ext, body, Conn.access_key, Conn.secret_key or "", Conn.security_token)
    hdr = {"code": code, "flag": 0, "language": "OTHER", "opaque": 1,
           "serializeTypeCurrentRPC": "JSON", "version": 475,
           "extFields": ext}
    h = json.dumps(hdr, separators=(",", ":")).encode()
    frame = struct.pack(">ii", 4 + len(h) + len(body), len(h)) + h + body
    with connect(addr, timeout) as s:
        s.sendall(frame)
        while True:
            h, rbody = read_frame(s)
            # Skip requests the broker sends meanwhile (e.g. a HEART_BEAT
            # makes it send NOTIFY_CONSUMER_IDS_CHANGED, oneway, first).
            if h.get("flag", 0) & 1:
                return h, rbody


def read_frame(s):
    """One frame from socket s: (header dict, body bytes)."""
    (length,) = struct.unpack(">i", _recv(s, 4))
    rest = _recv(s, length)
    th = struct.unpack(">i", rest[:4])[0]
    if (th >> 24) & 0xFF != 0:
        raise RuntimeError("non-JSON response header (serialize type %d)" % ((th >> 24) & 0xFF))
    hlen = th & 0xFFFFFF
    return json.loads(rest[4:4 + hlen]), rest[4 + hlen:]


def _recv(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed before a response")
        buf += chunk
    return buf


def check_cluster(namesrv, name, addr):
    h, body = rpc(namesrv, 106)
    if h.get("code") != 0:
        return "code %s %s" % (h.get("code"), h.get("remark", ""))
    text = body.decode("utf-8", "replace")
    # The body is fastjson's non-standard form ({0:"ip:port"}), so do not
    # json.loads it; a substring test on the quoted name and address suffices.
    if ('"%s"' % name) in text and ('"%s"' % addr) in text:
        return None
    return "broker not registered yet: " + text[:200]


_last_nudge = 0.0


def nudge(broker):
    """Make a starting broker register with the name server now.

    RocketMQ 5.3.3 registers at start-up only with name servers its client
    has already found reachable; that scan runs asynchronously and often
    loses the race, and then the route appears only with the first periodic
    registration, 10 s later.  UPDATE_BROKER_CONFIG (25) with
    brokerPermission (set to its default, 6 = read+write) makes the broker
    register synchronously.  Side effect: the broker rewrites its -c config
    file with every setting (broker.sh regenerates it on each start anyway).
    """
    global _last_nudge
    if time.monotonic() - _last_nudge < 1.0:
        return
    _last_nudge = time.monotonic()
    try:
        rpc(broker, 25, body=b"brokerPermission=6\n", timeout=5)
    except (OSError, ValueError, RuntimeError):
        pass  # not listening yet; try again on the next round


def check_route(namesrv, topic):
    h, body = rpc(namesrv, 105, {"topic": topic})
    if h.get("code") != 0:
        return "code %s %s" % (h.get("code"), h.get("remark", ""))
    route = json.loads(body)  # version 475 => standard JSON
    if route.get("queueDatas"):
        return None
    return "route has no queues: " + body[:200].decode("utf-8", "replace")


def create_topic(broker, topic, queues):
    h, _ = rpc(broker, 17, {
        "topic": topic, "defaultTopic": "TBW102",
        "readQueueNums": str(queues), "writeQueueNums": str(queues),
        "perm": "6", "topicFilterType": "SINGLE_TAG", "topicSysFlag": "0",
        "order": "false"}, timeout=10)
    if h.get("code") != 0:
        return "UPDATE_AND_CREATE_TOPIC: code %s %s" % (h.get("code"), h.get("remark", ""))
    return None


def delete_expired(broker):
    h, _ = rpc(broker, 329, timeout=10)
    if h.get("code") != 0:
        return "DELETE_EXPIRED_COMMITLOG: code %s %s" % (h.get("code"), h.get("remark", ""))
    return None


def send_raw(broker, topic, queue_id, sysflag, body, tags=None):
    props = "UNIQ_KEY\x01%032X\x02" % int(time.time() * 1e6)
    if tags:
        props += "TAGS\x01%s\x02" % tags
    ext = {"producerGroup": "rmq_probe", "topic": topic, "defaultTopic": "TBW102",
           "defaultTopicQueueNums": "4", "queueId": str(int(queue_id)),
           "sysFlag": str(int(sysflag, 0)), "bornTimestamp": str(int(time.time() * 1000)),
           "flag": "0", "properties": props, "reconsumeTimes": "0", "unitMode": "false",
           "batch": "false"}
    h, _ = rpc(broker, 10, ext, body.encode())
    if h.get("code") != 0:
        raise SystemExit("rmq_probe: SEND_MESSAGE: code %s %s" % (h.get("code"), h.get("remark", "")))
    print(h["extFields"]["queueOffset"])
    return None


def send_inner_batch(broker, topic, queue_id, n, damage):
    now = int(time.time() * 1e6)
    body = b""
    for i in range(int(n)):
        props = ("UNIQ_KEY\x01%032X\x02TAGS\x01TagRaw\x02WAIT\x01true\x02" % (now + i)).encode()
        data = ("raw %d" % i).encode()
        proplen = len(props) + (1 if damage == "lengths" and i == 1 else 0)
        body += struct.pack(">iiiii", 22 + len(data) + len(props), 0, 0, 0, len(data)) + data
        body += struct.pack(">h", proplen) + props
    ext = {"a": "rmq_probe", "b": topic, "c": "TBW102", "d": "4", "e": str(int(queue_id)),
           "f": "0", "g": str(int(time.time() * 1000)), "h": "0",
           "i": "WAIT\x01true\x02UNIQ_KEY\x01%032X\x02" % (now + 1000), "j": "0", "k": "false",
           "m": "true"}
    h, _ = rpc(broker, 320, ext, body)
    if h.get("code") != 0:
        raise SystemExit("rmq_probe: SEND_BATCH_MESSAGE: code %s %s" % (h.get("code"), h.get("remark", "")))
    print(h["extFields"]["queueOffset"])
    return None


def request(addr, code, *kvs, body=b""):
    ext = {}
    for kv in kvs:
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit("rmq_probe: request: %r is not KEY=VALUE" % kv)
        ext[k] = v
    h, rbody = rpc(addr, int(code), ext, body, timeout=10)
    out = {"code": h.get("code"), "remark": h.get("remark"), "extFields": h.get("extFields", {}),
           "bodyLength": len(rbody)}
    if rbody:
        out["body"] = rbody[:2000].decode("utf-8", "replace")
    print(json.dumps(out, ensure_ascii=False, sort_keys=True))
    return None


def create_user(broker, user, password, user_type="Normal"):
    body = json.dumps({"username": user, "password": password, "userType": user_type}).encode()
    h, _ = rpc(broker, 3001, {"username": user}, body, timeout=10)
    if h.get("code") != 0 and "existed" in (h.get("remark") or ""):
        h, _ = rpc(broker, 3002, {"username": user}, body, timeout=10)
    if h.get("code") != 0:
        return "create/update user %s: code %s %s" % (user, h.get("code"), h.get("remark", ""))
    return None


def create_acl(broker, user, resources, actions, decision="Allow"):
    entries = [{"resource": r, "actions": actions.split(","), "decision": decision}
               for r in resources.split(",")]
    subject = "User:" + user
    body = json.dumps({"subject": subject, "policies": [{"policyType": "Custom", "entries": entries}]}).encode()
    h, _ = rpc(broker, 3006, {"subject": subject}, body, timeout=10)
    if h.get("code") != 0:
        return "create acl for %s: code %s %s" % (subject, h.get("code"), h.get("remark", ""))
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=0)
    ap.add_argument("--nudge", action="store_true")
    ap.add_argument("--access-key")
    ap.add_argument("--secret-key")
    ap.add_argument("--security-token")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--tls-ca")
    ap.add_argument("--tls-server-name")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--body", help="request body (UTF-8 text)")
    ap.add_argument("--body-hex", help="request body (hex)")
    ap.add_argument("what", choices=["cluster", "route", "create-topic", "delete-expired", "send-raw",
                                     "send-inner-batch", "request", "create-user", "create-acl"])
    ap.add_argument("args", nargs="+")
    a = ap.parse_args()
    Conn.access_key, Conn.secret_key, Conn.security_token = a.access_key, a.secret_key, a.security_token
    Conn.tls = a.tls or bool(a.tls_ca or a.tls_cert)
    Conn.tls_ca, Conn.tls_server_name = a.tls_ca, a.tls_server_name
    Conn.tls_cert, Conn.tls_key = a.tls_cert, a.tls_key
    fn = {"cluster": check_cluster, "route": check_route,
          "create-topic": create_topic, "delete-expired": delete_expired,
          "send-raw": send_raw, "send-inner-batch": send_inner_batch,
          "request": request, "create-user": create_user, "create-acl": create_acl}[a.what]
    kw = {}
    if a.what == "request":
        kw["body"] = (a.body or "").encode() if a.body_hex is None else bytes.fromhex(a.body_hex)
    deadline = time.monotonic() + a.timeout
    while True:
        try:
            err = fn(*a.args, **kw)
        except (OSError, ValueError, RuntimeError) as e:
            err = "%s: %s" % (type(e).__name__, e)
        if err is None:
            return 0
        if a.nudge and a.what == "cluster":
            nudge(a.args[2])
        if time.monotonic() >= deadline:
            print("rmq_probe: %s" % err, file=sys.stderr)
            return 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
