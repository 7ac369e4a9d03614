#!/usr/bin/env python3
"""Capture real RocketMQ response frames as fuzzing seeds.

    capture_seeds.py <namesrv host:port> <broker host:port> <topic> <outdir>

Speaks the remoting protocol (JSON headers) to a live name server and broker
and saves each response frame byte for byte -- the whole frame, including its
4-byte length prefix -- as <outdir>/<name>.frame:

  route_v475          GET_ROUTEINFO_BY_TOPIC (105), version 475: standard JSON
  route_v317          the same with version 317: fastjson's non-standard form
  route_not_exist     105 for a topic that does not exist (17 TOPIC_NOT_EXIST)
  cluster             GET_BROKER_CLUSTER_INFO (106)
  min_offset          GET_MIN_OFFSET (31) of the chosen queue
  max_offset          GET_MAX_OFFSET (30) of the chosen queue
  pull_found          PULL_MESSAGE (11) with messages (code 0)
  pull_q<N>           the same for every other non-empty queue
  pull_not_found      pull at the max offset (19 PULL_NOT_FOUND)
  pull_offset_moved   pull far beyond the max offset (21 PULL_OFFSET_MOVED)
  query_offset_none   QUERY_CONSUMER_OFFSET (14) with no commit (22 QUERY_NOT_FOUND)
  send_v2             SEND_MESSAGE_V2 (310) response (sends one small message
                      to queue 0 of the topic, after everything else)

and response bodies on their own, for the decoder and JSON fuzzers:

  pull_body.bin       body of pull_found (stored-message records)
  route.json          body of route_v475
  route_nonstd.json   body of route_v317
  cluster.json        body of cluster

The chosen queue is the non-empty one whose first pull holds the most
compressed messages (then the most messages).  If the topic does not exist
it is created with one queue, and if it holds no message at all the official
Java producer fills it (test/java/run.sh InteropProduce; needs java and the
jars, see test/broker/fetch-jars.sh), so that one pull returns every kind of
message, the zlib-compressed ones too.  To choose the data yourself, produce
before running this.

Exits non-zero if any capture does not get the expected response code.
Python 3 stdlib only.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

GROUP = "rmq_seed"
opaque = 0


def rpc(addr, code, ext=None, body=b"", version=475):
    """Send one request on a fresh connection; return (raw frame, header, body)."""
    global opaque
    opaque += 1
    host, port = addr.rsplit(":", 1)
    hdr = {"code": code, "extFields": ext or {}, "flag": 0, "language": "OTHER",
           "opaque": opaque, "serializeTypeCurrentRPC": "JSON", "version": version}
    h = json.dumps(hdr, separators=(",", ":")).encode()
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(struct.pack(">ii", 4 + len(h) + len(body), len(h)) + h + body)
        head = recv_exact(s, 4)
        (length,) = struct.unpack(">i", head)
        rest = recv_exact(s, length)
    frame = head + rest
    th = struct.unpack(">i", rest[:4])[0]
    if th >> 24 != 0:
        raise RuntimeError("response header is not JSON (serialize type %d)" % (th >> 24))
    hlen = th & 0xFFFFFF
    rh = json.loads(rest[4:4 + hlen].decode("utf-8"))
    if rh.get("opaque") != opaque:
        raise RuntimeError("opaque mismatch: sent %d, got %s" % (opaque, rh.get("opaque")))
    return frame, rh, rest[4 + hlen:]


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def pull_ext(topic, qid, offset, bname):
    return {"consumerGroup": GROUP, "topic": topic, "queueId": str(qid),
            "queueOffset": str(offset), "maxMsgNums": "32", "sysFlag": "4",
            "commitOffset": "0", "suspendTimeoutMillis": "0", "subscription": "*",
            "subVersion": "0", "expressionType": "TAG", "bname": bname}


def count_messages(body):
    """(compressed, total) message counts in a pull body (§4.1 layout)."""
    pos = comp = total = 0
    while pos + 40 <= len(body):
        size = struct.unpack_from(">i", body, pos)[0]
        sysflag = struct.unpack_from(">i", body, pos + 36)[0]
        if size <= 0 or pos + size > len(body):
            break
        total += 1
        comp += sysflag & 1
        pos += size
    return comp, total


class Capture:
    def __init__(self, outdir):
        self.outdir = outdir
        self.failed = []

    def save(self, name, data):
        with open(os.path.join(self.outdir, name), "wb") as f:
            f.write(data)

    def take(self, name, expect, addr, code, ext=None, body=b"", version=475):
        """Do one request; save its frame if the response code is `expect`."""
        try:
            frame, h, b = rpc(addr, code, ext, body, version)
        except (OSError, ValueError, RuntimeError) as e:
            self.failed.append("%s: %s" % (name, e))
            print("FAIL %-18s %s" % (name, e), file=sys.stderr)
            return None, None
        if h.get("code") != expect:
            self.failed.append("%s: code %s (want %s) %s" % (name, h.get("code"), expect, h.get("remark", "")))
            print("FAIL %-18s code %s, want %s: %s" % (name, h.get("code"), expect, h.get("remark", "")), file=sys.stderr)
            return h, b
        self.save(name + ".frame", frame)
        print("ok   %-18s %6d bytes  %s" % (name, len(frame), json.dumps(h, ensure_ascii=False)))
        return h, b


def ensure_messages(namesrv, broker, topic):
    """Create the topic (1 queue) if missing; fill it with InteropProduce if empty."""
    h, body = rpc(namesrv, 105, {"topic": topic})[1:]
    if h.get("code") == 17:
        print("capture_seeds: creating topic %s (1 queue)" % topic, file=sys.stderr)
        ch = rpc(broker, 17, {"topic": topic, "defaultTopic": "TBW102", "readQueueNums": "1",
                              "writeQueueNums": "1", "perm": "6", "topicFilterType": "SINGLE_TAG",
                              "topicSysFlag": "0", "order": "false"})[1]
        if ch.get("code") != 0:
            raise RuntimeError("creating topic: code %s %s" % (ch.get("code"), ch.get("remark", "")))
        for _ in range(150):
            h, body = rpc(namesrv, 105, {"topic": topic})[1:]
            if h.get("code") == 0:
                break
            time.sleep(0.2)
    if h.get("code") != 0:
        raise RuntimeError("route of %s: code %s %s" % (topic, h.get("code"), h.get("remark", "")))
    route = json.loads(body)
    bname = route["brokerDatas"][0]["brokerName"]
    nq = max(q["readQueueNums"] for q in route["queueDatas"])
    total = 0
    for qid in range(nq):
        total += int(rpc(broker, 30, {"topic": topic, "queueId": str(qid), "bname": bname})[1]["extFields"]["offset"])
    if total:
        return
    run = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "java", "run.sh")
    print("capture_seeds: %s is empty; producing with %s InteropProduce" % (topic, run), file=sys.stderr)
    with tempfile.NamedTemporaryFile(suffix=".tsv") as tsv:
        subprocess.run([run, "InteropProduce", namesrv, topic, tsv.name], check=True)


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    namesrv, broker, topic, outdir = sys.argv[1:]
    os.makedirs(outdir, exist_ok=True)
    c = Capture(outdir)
    try:
        ensure_messages(namesrv, broker, topic)
    except (OSError, ValueError, RuntimeError, KeyError, subprocess.CalledProcessError) as e:
        print("capture_seeds: cannot prepare topic %s: %s" % (topic, e), file=sys.stderr)
        return 1

    h, route = c.take("route_v475", 0, namesrv, 105, {"topic": topic}, version=475)
    if h is None or h.get("code") != 0:
        print("capture_seeds: no route for topic %s; giving up" % topic, file=sys.stderr)
        return 1
    c.save("route.json", route)
    h, b = c.take("route_v317", 0, namesrv, 105, {"topic": topic}, version=317)
    if h and h.get("code") == 0:
        c.save("route_nonstd.json", b)
    c.take("route_not_exist", 17, namesrv, 105, {"topic": "rmq_seed_no_such_topic_%d" % os.getpid()})
    h, b = c.take("cluster", 0, namesrv, 106)
    if h and h.get("code") == 0:
        c.save("cluster.json", b)

    r = json.loads(route)
    bname = r["brokerDatas"][0]["brokerName"]
    nq = max(q["readQueueNums"] for q in r["queueDatas"])

    # First pull of every queue; choose the most interesting one.
    best = None  # (score, qid, frame, header, body)
    for qid in range(nq):
        try:
            _, mh, _ = rpc(broker, 31, {"topic": topic, "queueId": str(qid), "bname": bname})
            lo = int(mh["extFields"]["offset"])
            _, xh, _ = rpc(broker, 30, {"topic": topic, "queueId": str(qid), "bname": bname})
            hi = int(xh["extFields"]["offset"])
            if hi <= lo:
                continue
            frame, ph, pb = rpc(broker, 11, pull_ext(topic, qid, lo, bname))
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            c.failed.append("offsets or pull of queue %d: %s" % (qid, e))
            continue
        if ph.get("code") != 0:
            c.failed.append("pull queue %d at %d: code %s %s" % (qid, lo, ph.get("code"), ph.get("remark", "")))
            continue
        score = count_messages(pb)
        if best is None or score > best[0]:
            best = (score, qid, frame, ph, pb)
        c.save("pull_q%d.frame" % qid, frame)
    if best is None:
        print("capture_seeds: no message pulled from any queue of %s (produce some first?)%s"
              % (topic, "".join("\n  " + f for f in c.failed)), file=sys.stderr)
        return 1
    (comp, total), qid, frame, ph, pb = best
    c.save("pull_found.frame", frame)
    c.save("pull_body.bin", pb)
    os.remove(os.path.join(outdir, "pull_q%d.frame" % qid))  # same as pull_found
    print("ok   %-18s %6d bytes  queue %d, %d messages (%d compressed)  %s"
          % ("pull_found", len(frame), qid, total, comp, json.dumps(ph, ensure_ascii=False)))

    qext = {"topic": topic, "queueId": str(qid), "bname": bname}
    c.take("min_offset", 0, broker, 31, qext)
    h, _ = c.take("max_offset", 0, broker, 30, qext)
    maxoff = int(h["extFields"]["offset"]) if h and h.get("code") == 0 else 0
    c.take("pull_not_found", 19, broker, 11, pull_ext(topic, qid, maxoff, bname))
    c.take("pull_offset_moved", 21, broker, 11, pull_ext(topic, qid, maxoff + 1000000, bname))
    c.take("query_offset_none", 22, broker, 14,
           {"consumerGroup": GROUP + "_never_committed", "topic": topic, "queueId": str(qid),
            "setZeroIfNotFound": "false", "bname": bname})

    uniq = "%032X" % (int(time.time() * 1000) << 16 | os.getpid() & 0xFFFF)
    props = "UNIQ_KEY\x01%s\x02WAIT\x01true\x02TAGS\x01seed\x02KEYS\x01seed-key\x02" % uniq
    c.take("send_v2", 0, broker, 310, {
        "a": "rmq_seed_producer", "b": topic, "c": "TBW102", "d": "4", "e": "0", "f": "0",
        "g": str(int(time.time() * 1000)), "h": "0", "i": props, "j": "0", "k": "false",
        "m": "false", "n": bname}, body=b"seed message from capture_seeds.py")

    if c.failed:
        print("capture_seeds: %d capture(s) failed:\n  %s" % (len(c.failed), "\n  ".join(c.failed)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
