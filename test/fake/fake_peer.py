#!/usr/bin/env python3
"""A fake RocketMQ name server and broker on loopback that answers plausibly
and then misbehaves on demand, for test/t/007_hostile_peer.pl.  Python 3
stdlib only.  One process, one mode per start.

  fake_peer.py --port NS_PORT [--broker-port B_PORT] --mode MODE [--on CODES]
               [--queues N] [--messages N] [--ready-file F] [--log F]

The name-server port answers GET_ROUTEINFO_BY_TOPIC (105) and
GET_BROKER_CLUSTER_INFO (106), and refuses everything else with
REQUEST_CODE_NOT_SUPPORTED (3), as a real name server does.  The broker port
(default NS_PORT + 1) is "broker-a" of cluster "FakeCluster": every topic
exists with --queues queues holding --messages stored messages each (real
§4.1 records), and it answers PULL_MESSAGE (11, long polls held up to
suspendTimeoutMillis, at most 5 s), QUERY/UPDATE_CONSUMER_OFFSET (14/15),
UPDATE_AND_CREATE_TOPIC (17), SEARCH_OFFSET_BY_TIMESTAMP (29),
GET_MAX/MIN_OFFSET (30/31), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE
(320).  Requests are JSON-headed, as rocketmq_stream sends them.

--on CODES (comma-separated request codes) limits the frame-level modes to
the answers of those requests; without it they apply to every request.  The
route-level modes change only the 105/106 answers.

Modes:
  good                  everything plausible
 route-level (105; 106 too where it names a broker address):
  overflow_route        broker-a's QueueData repeated 32770 times with read/write
                        queue nums 65535 (a ~2.2 MB answer): the sums pass 2^31
  many_queues           brokers broker-a..broker-b, 4096 queues each, all here
  duplicate_brokers     broker-a listed twice in brokerDatas and in queueDatas
  route_to_self         broker-a's address is the name server's own port
  route_port_0          broker-a's address is 127.0.0.1:0
  garbage_route         the route / cluster-info body is not JSON
 frame-level (the answer to a matching request):
  silent                never answered (the connection stays open)
  blackhole             reads whatever comes, frame or not, and never writes:
                        a TLS handshake waits for an answer that never comes
  trickle               the right answer, one byte every 100 ms
  truncated_frame       the first half of the answer, then FIN
  reset_mid_frame       the first half of the answer, then RST
  length_2gib           a length prefix of 2 GiB, then the rest of the answer
  header_past_frame     a header length (24 bits) longer than the frame
  garbage_json          a JSON header that does not parse
  huge_json_header      the right answer with ~16 MiB of header (an array of
                        zeros, the costliest JSON per byte)
  answer_other_request  a plausible answer with another request's opaque, and
                        nothing else
  foreign_opaque_flood  1 MiB response frames with another opaque, nonstop
  oneway_flood          61-byte oneway request frames (code 40), nonstop
  bomb_answer           a pull (11) answered with --bomb-records (default 5)
                        zlib records of 64 MiB of zeros each, the per-body
                        limit (RMQ_MAX_BODY_LEN): 4 fill the 256 MiB budget of
                        one answer (RMQ_MAX_ANSWER_BODIES), 5 exceed it; other
                        requests are answered plausibly

Floods stop after --flood-seconds (default 60) and the whole process exits
after --lifetime seconds (default 900), so a forgotten fake cannot hog the
machine.  --log writes one line per request and what was done with it.
"""
import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import zlib

MAGIC_V1 = 0xDAA320A7
BROKER = "broker-a"
CLUSTER = "FakeCluster"
NAMESRV_CODES = (105, 106)
ROUTE_MODES = ("overflow_route", "many_queues", "duplicate_brokers", "route_to_self",
               "route_port_0", "garbage_route")
FRAME_MODES = ("silent", "blackhole", "trickle", "truncated_frame", "reset_mid_frame", "length_2gib",
               "header_past_frame", "garbage_json", "huge_json_header", "answer_other_request",
               "foreign_opaque_flood", "oneway_flood", "bomb_answer")
MODES = ("good",) + ROUTE_MODES + FRAME_MODES
# The client's frame limit (RMQ_MAX_FRAME_LEN): LEN + 4 <= 16 MiB.
MAX_FRAME_LEN = 16 * 1024 * 1024 - 4
BOMB_BODY = 64 * 1024 * 1024

args = None
log_lock = threading.Lock()
offsets_lock = threading.Lock()
consumer_offsets = {}
send_counter = [0]
base_ts = int(time.time() * 1000) - 3600 * 1000
bomb_zbody = None


def log(msg):
    if args.log:
        with log_lock, open(args.log, "a") as f:
            f.write("%.3f %s\n" % (time.time(), msg))


# ---------------------------------------------------------------- frames

def frame(header, body=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">ii", 4 + len(h) + len(body), len(h)) + h + body


def response(opaque, code=0, ext=None, body=b"", remark=None):
    hdr = {"code": code, "extFields": {k: str(v) for k, v in (ext or {}).items()},
           "flag": 1, "language": "JAVA", "opaque": opaque,
           "serializeTypeCurrentRPC": "JSON", "version": 475}
    if remark is not None:
        hdr["remark"] = remark
    return hdr, body


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


# ---------------------------------------------------------------- good data

def broker_addr():
    if args.mode == "route_to_self":
        return "127.0.0.1:%d" % args.port
    if args.mode == "route_port_0":
        return "127.0.0.1:0"
    return "127.0.0.1:%d" % args.broker_port


def broker_data(name):
    return {"brokerAddrs": {"0": broker_addr()}, "brokerName": name, "cluster": CLUSTER,
            "enableActingMaster": False}


def queue_data(name, n):
    return {"brokerName": name, "perm": 6, "readQueueNums": n, "topicSysFlag": 0,
            "writeQueueNums": n}


def route_body():
    if args.mode == "garbage_route":
        return b'{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:1'
    if args.mode == "overflow_route":
        # One QueueData, serialised once and repeated: 32770 * 65535 > 2^31.
        q = json.dumps(queue_data(BROKER, 65535), separators=(",", ":"))
        b = json.dumps([broker_data(BROKER)], separators=(",", ":"))
        return ('{"brokerDatas":%s,"filterServerTable":{},"queueDatas":[%s]}'
                % (b, ",".join([q] * 32770))).encode()
    if args.mode == "many_queues":
        names = ["broker-a", "broker-b"]
        route = {"brokerDatas": [broker_data(n) for n in names],
                 "queueDatas": [queue_data(n, 4096) for n in names]}
    elif args.mode == "duplicate_brokers":
        route = {"brokerDatas": [broker_data(BROKER), broker_data(BROKER)],
                 "queueDatas": [queue_data(BROKER, args.queues), queue_data(BROKER, args.queues)]}
    else:
        route = {"brokerDatas": [broker_data(BROKER)],
                 "queueDatas": [queue_data(BROKER, args.queues)]}
    route["filterServerTable"] = {}
    return json.dumps(route, separators=(",", ":")).encode()


def cluster_body():
    if args.mode == "garbage_route":
        return b'{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:'
    # fastjson's non-standard form, as the real name server always sends it.
    return ('{"brokerAddrTable":{"%s":{"brokerAddrs":{0:"%s"},"brokerName":"%s","cluster":"%s",'
            '"enableActingMaster":false}},"clusterAddrTable":{"%s":["%s"]}}'
            % (BROKER, broker_addr(), BROKER, CLUSTER, CLUSTER, BROKER)).encode()


def store_ts(offset):
    return base_ts + offset * 1000


def record(topic, qid, offset, body, sysflag=0, stored_body=None):
    """One stored message (§4.1), V1 magic, IPv4 hosts."""
    stored = body if stored_body is None else stored_body
    t = topic.encode()[:127]
    props = ("UNIQ_KEY\x01%032X\x02TAGS\x01TagA\x02KEYS\x01k%d\x02WAIT\x01true\x02"
             % (qid * 1000000 + offset, offset)).encode()
    total = 91 + len(stored) + len(t) + len(props)
    host = bytes([127, 0, 0, 1])
    crc = zlib.crc32(stored) & 0x7FFFFFFF
    return (struct.pack(">iIiii", total, MAGIC_V1, crc, qid, 0)
            + struct.pack(">qqiq", offset, qid * 1000000 + offset, sysflag, store_ts(offset) - 5)
            + host + struct.pack(">iq", 40000, store_ts(offset))
            + host + struct.pack(">iiqi", args.broker_port, 0, 0, len(stored)) + stored
            + struct.pack(">b", len(t)) + t + struct.pack(">h", len(props)) + props)


def pull_answer(opaque, ext):
    """(header, body, hold_seconds) for a PULL_MESSAGE."""
    m = args.messages
    off = int(ext.get("queueOffset", 0))
    n = max(1, int(ext.get("maxMsgNums", 32)))
    qid = int(ext.get("queueId", 0))
    topic = ext.get("topic", "t")
    bounds = {"minOffset": 0, "maxOffset": m, "suggestWhichBrokerId": 0}
    if args.mode == "bomb_answer":
        recs = b"".join(record(topic, qid, off + i, b"", 0x301, bomb_zbody)
                        for i in range(args.bomb_records))
        h, b = response(opaque, 0, dict(bounds, nextBeginOffset=off + args.bomb_records), recs, "FOUND")
        return h, b, 0
    if off < 0 or off > m:
        h, b = response(opaque, 21, dict(bounds, nextBeginOffset=min(max(off, 0), m)),
                        remark="OFFSET_OVERFLOW_BADLY")
        return h, b, 0
    if off == m:
        flags = int(ext.get("sysFlag", 0))
        hold = int(ext.get("suspendTimeoutMillis", 0)) / 1000.0 if flags & 2 else 0
        h, b = response(opaque, 19, dict(bounds, nextBeginOffset=m), remark="OFFSET_OVERFLOW_ONE")
        return h, b, min(hold, 5.0)
    end = min(off + n, m)
    recs = b"".join(record(topic, qid, o, b"fake message %d/%d" % (qid, o)) for o in range(off, end))
    h, b = response(opaque, 0, dict(bounds, nextBeginOffset=end), recs, "FOUND")
    return h, b, 0


def good_answer(role, hdr, body):
    """(header, body, hold_seconds) for a request, as a sane server answers."""
    code = hdr.get("code")
    opaque = hdr.get("opaque", 0)
    ext = hdr.get("extFields") or {}
    if (role == "namesrv") != (code in NAMESRV_CODES):
        h, b = response(opaque, 3, remark="request type %s not supported" % code)
        return h, b, 0
    if code == 105:
        return response(opaque, 0, body=route_body()) + (0,)
    if code == 106:
        return response(opaque, 0, body=cluster_body()) + (0,)
    if code == 11:
        return pull_answer(opaque, ext)
    if code == 31:
        return response(opaque, 0, {"offset": 0}) + (0,)
    if code == 30:
        return response(opaque, 0, {"offset": args.messages}) + (0,)
    if code == 29:
        ts = int(ext.get("timestamp", 0))
        off = next((o for o in range(args.messages) if store_ts(o) >= ts), args.messages)
        return response(opaque, 0, {"offset": off}) + (0,)
    if code == 14:
        key = (ext.get("consumerGroup"), ext.get("topic"), ext.get("queueId"))
        with offsets_lock:
            if key not in consumer_offsets:
                return response(opaque, 22, remark="Not found") + (0,)
            return response(opaque, 0, {"offset": consumer_offsets[key]}) + (0,)
    if code == 15:
        key = (ext.get("consumerGroup"), ext.get("topic"), ext.get("queueId"))
        with offsets_lock:
            consumer_offsets[key] = int(ext.get("commitOffset", 0))
        return response(opaque, 0) + (0,)
    if code == 17:
        return response(opaque, 0) + (0,)
    if code in (310, 320):
        with offsets_lock:
            send_counter[0] += 1
            qoff = 1000 + send_counter[0]
        return response(opaque, 0, {"msgId": "7F00000100009C40%016X" % qoff,
                                    "queueId": ext.get("e", "0"), "queueOffset": qoff,
                                    "MSG_REGION": "DefaultRegion", "TRACE_ON": "true"}) + (0,)
    return response(opaque, 3, remark="request type %s not supported" % code) + (0,)


# ---------------------------------------------------------------- misbehaviour

def huge_header_frame(hdr, body):
    """The right answer, its header padded to the frame limit with [0,0,...]."""
    base = json.dumps(hdr, separators=(",", ":"))[:-1] + ',"junk":['
    room = MAX_FRAME_LEN - 4 - len(body) - len(base) - 2  # "]}"
    room = min(room, 0xFFFFFF - len(base) - 2)
    zeros = "0," * (room // 2)
    h = (base + zeros.rstrip(",") + "]}").encode()
    return struct.pack(">ii", 4 + len(h) + len(body), len(h)) + h + body


def oneway_chunk():
    """1000 oneway requests of exactly 61 bytes each (NOTIFY_CONSUMER_IDS_CHANGED)."""
    h = b'{"code":40,"flag":2,"language":"JAVA","opaque":7}'
    h = h[:-1] + b" " * (53 - len(h)) + b"}"
    one = struct.pack(">ii", 4 + len(h), len(h)) + h
    assert len(one) == 61, len(one)
    return one * 1000


def flood(conn, chunk):
    deadline = time.monotonic() + args.flood_seconds
    sent = 0
    try:
        while time.monotonic() < deadline:
            conn.sock.sendall(chunk)
            sent += len(chunk)
    except OSError as e:
        log("flood ended after %d bytes: %s" % (sent, e))
        return
    log("flood stopped after %d s, %d bytes" % (args.flood_seconds, sent))


def misbehave(conn, hdr, ans_hdr, ans_body):
    """Do the mode's harm instead of answering; False to stop reading."""
    mode = args.mode
    good = frame(ans_hdr, ans_body)
    opaque = hdr.get("opaque", 0)
    s = conn.sock
    if mode == "silent":
        return True
    if mode == "trickle":
        for i in range(len(good)):
            s.sendall(good[i:i + 1])
            time.sleep(0.1)
        return True
    if mode in ("truncated_frame", "reset_mid_frame"):
        s.sendall(good[:len(good) // 2])
        time.sleep(0.05)
        if mode == "reset_mid_frame":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            s.shutdown(socket.SHUT_WR)
        s.close()
        return False
    if mode == "length_2gib":
        s.sendall(struct.pack(">I", 0x80000000) + good[4:])
        return True
    if mode == "header_past_frame":
        h = b'{"code":0,"flag":1,"opaque":%d}' % opaque
        s.sendall(struct.pack(">ii", 4 + len(h), 0xFFFFFF) + h)
        return True
    if mode == "garbage_json":
        h = b'{"code":0,"flag":1,"opaque":%d,"extFields":{"offset":"12' % opaque
        s.sendall(struct.pack(">ii", 4 + len(h), len(h)) + h)
        return True
    if mode == "huge_json_header":
        s.sendall(huge_header_frame(ans_hdr, ans_body))
        return True
    if mode == "answer_other_request":
        other = dict(ans_hdr, opaque=opaque + 7)
        s.sendall(frame(other, ans_body))
        return True
    if mode == "foreign_opaque_flood":
        h = json.dumps({"code": 0, "flag": 1, "language": "JAVA", "opaque": opaque + 100000,
                        "version": 475}, separators=(",", ":")).encode()
        body = b"x" * ((1 << 20) - 8 - len(h))
        flood(conn, struct.pack(">ii", 4 + len(h) + len(body), len(h)) + h + body)
        return False
    if mode == "oneway_flood":
        flood(conn, oneway_chunk())
        return False
    raise AssertionError(mode)


# ---------------------------------------------------------------- serving

class Conn:
    def __init__(self, sock, role):
        self.sock = sock
        self.role = role
        self.wlock = threading.Lock()

    def send(self, data):
        try:
            with self.wlock:
                self.sock.sendall(data)
        except OSError:
            pass


def applies(code):
    return args.on is None or code in args.on


def serve_conn(sock, role, peer):
    conn = Conn(sock, role)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if args.mode == "blackhole":
        while sock.recv(65536):
            pass
        return
    try:
        while True:
            (length,) = struct.unpack(">i", recv_exact(sock, 4))
            if length < 4 or length > MAX_FRAME_LEN:
                log("%s %s: bad frame length %d" % (role, peer, length))
                return
            rest = recv_exact(sock, length)
            (th,) = struct.unpack(">I", rest[:4])
            hlen = th & 0xFFFFFF
            hdr = json.loads(rest[4:4 + hlen])
            body = rest[4 + hlen:]
            if hdr.get("flag", 0) & 1:
                continue  # the client answering a request of ours
            code = hdr.get("code")
            ans_hdr, ans_body, hold = good_answer(role, hdr, body)
            harm = args.mode in FRAME_MODES and applies(code) and ans_hdr["code"] != 3
            if harm and args.mode == "bomb_answer":
                harm = False  # pull_answer already made the bomb; others are fine
            log("%s %s: code %s opaque %s -> %s" % (role, peer, code, hdr.get("opaque"),
                                                   args.mode if harm else "answer %d%s" % (
                                                       ans_hdr["code"], " held %.1fs" % hold if hold else "")))
            if harm:
                if not misbehave(conn, hdr, ans_hdr, ans_body):
                    return
            elif hold > 0:
                threading.Timer(hold, conn.send, [frame(ans_hdr, ans_body)]).start()
            else:
                conn.send(frame(ans_hdr, ans_body))
    except (OSError, ConnectionError, ValueError, struct.error) as e:
        log("%s %s: connection ends: %s" % (role, peer, e))
    finally:
        try:
            sock.close()
        except OSError:
            pass


def listen(port, role):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(128)

    def loop():
        while True:
            s, peer = ls.accept()
            threading.Thread(target=serve_conn, args=(s, role, "%s:%d" % peer), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def main():
    global args, bomb_zbody
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True, help="name server port")
    ap.add_argument("--broker-port", type=int, help="broker port (default: --port + 1)")
    ap.add_argument("--mode", choices=MODES, default="good")
    ap.add_argument("--on", help="comma-separated request codes the frame-level mode applies to")
    ap.add_argument("--queues", type=int, default=4)
    ap.add_argument("--messages", type=int, default=16, help="stored messages per queue")
    ap.add_argument("--bomb-records", type=int, default=5)
    ap.add_argument("--flood-seconds", type=float, default=60)
    ap.add_argument("--lifetime", type=float, default=900)
    ap.add_argument("--ready-file")
    ap.add_argument("--log")
    args = ap.parse_args()
    args.broker_port = args.broker_port or args.port + 1
    args.on = set(int(c) for c in args.on.split(",")) if args.on else None
    if args.mode == "bomb_answer":
        bomb_zbody = zlib.compress(b"\0" * BOMB_BODY, 9)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    listen(args.port, "namesrv")
    listen(args.broker_port, "broker")
    log("listening on %d (namesrv) and %d (broker), mode %s, on %s"
        % (args.port, args.broker_port, args.mode, sorted(args.on) if args.on else "all"))
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write("%d\n" % os.getpid())
        os.rename(args.ready_file + ".tmp", args.ready_file)
    time.sleep(args.lifetime)
    os._exit(0)


if __name__ == "__main__":
    main()
