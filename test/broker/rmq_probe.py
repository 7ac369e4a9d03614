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

Exit status 0 when the condition holds, 1 on timeout (last error on stderr).
"""
import argparse
import json
import socket
import struct
import sys
import time


def rpc(addr, code, ext=None, body=b"", timeout=3.0):
    """One request/response on a fresh connection; returns (header, body)."""
    host, port = addr.rsplit(":", 1)
    hdr = {"code": code, "flag": 0, "language": "OTHER", "opaque": 1,
           "serializeTypeCurrentRPC": "JSON", "version": 475,
           "extFields": ext or {}}
    h = json.dumps(hdr, separators=(",", ":")).encode()
    frame = struct.pack(">ii", 4 + len(h) + len(body), len(h)) + h + body
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(frame)
        raw = _recv(s, 4)
        (length,) = struct.unpack(">i", raw)
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
            raise ConnectionError("connection closed")
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=0)
    ap.add_argument("--nudge", action="store_true")
    ap.add_argument("what", choices=["cluster", "route", "create-topic", "delete-expired", "send-raw",
                                     "send-inner-batch"])
    ap.add_argument("args", nargs="+")
    a = ap.parse_args()
    fn = {"cluster": check_cluster, "route": check_route,
          "create-topic": create_topic, "delete-expired": delete_expired,
          "send-raw": send_raw, "send-inner-batch": send_inner_batch}[a.what]
    deadline = time.monotonic() + a.timeout
    while True:
        try:
            err = fn(*a.args)
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
