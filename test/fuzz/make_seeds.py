#!/usr/bin/env python3
"""Regenerate the hand-made fuzzing seeds in test/fuzz/seeds/<target>/.

    python3 test/fuzz/make_seeds.py

Python 3 stdlib plus the lz4 and zstd command-line tools (for the LZ4-frame
and zstd bodies).  Layouts follow rocketmq-protocol.md §1 (frames) and
§4.1 (stored messages).  The output is deterministic; the files are
committed, so running this is only needed to change them.
"""
import os
import struct
import subprocess
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    assert len(data) < 10240, (name, len(data))


def json_frame(header, body=b""):
    h = header.encode()
    return struct.pack(">ii", 4 + len(h) + len(body), len(h)) + h + body


def binary_frame(code, lang, version, opaque, flag, remark, ext, body=b""):
    h = struct.pack(">hbhii", code, lang, version, opaque, flag)
    r = remark.encode() if remark else b""
    h += struct.pack(">i", len(r)) + r
    e = b""
    for k, v in ext:
        kb, vb = k.encode(), v.encode()
        e += struct.pack(">h", len(kb)) + kb + struct.pack(">i", len(vb)) + vb
    h += struct.pack(">i", len(e)) + e
    return struct.pack(">ii", 4 + len(h) + len(body), (1 << 24) | len(h)) + h + body


def props(pairs):
    return "".join("%s\x01%s\x02" % kv for kv in pairs).encode()


def record(body, topic="TopicTest", prop=b"", sysflag=0, v2=False, qid=0, qoff=0,
           phys=0, born=(b"\x7f\x00\x00\x01", 50000), store=(b"\x7f\x00\x00\x01", 10911)):
    crc = zlib.crc32(body) & 0x7FFFFFFF
    t = topic.encode()
    r = struct.pack(">IIiiqqiq", 0xDAA320AB if v2 else 0xDAA320A7, crc, qid, 0, qoff, phys,
                    sysflag, 1700000000000)
    r += born[0] + struct.pack(">i", born[1])
    r += struct.pack(">q", 1700000000100)
    r += store[0] + struct.pack(">i", store[1])
    r += struct.pack(">iqi", 0, 0, len(body)) + body
    r += (struct.pack(">h", len(t)) if v2 else struct.pack(">b", len(t))) + t
    r += struct.pack(">h", len(prop)) + prop
    return struct.pack(">i", 4 + len(r)) + r


def cli(cmd, data):
    return subprocess.run(cmd, input=data, stdout=subprocess.PIPE, check=True).stdout


ROUTE_STD = ('{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"broker-a",'
             '"cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},'
             '"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,'
             '"writeQueueNums":4}]}')
ROUTE_NONSTD = ROUTE_STD.replace('{"0":', '{0:')
ROUTE_4X = ('{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},'
            '"brokerName":"broker-b","cluster":"C"},{"brokerAddrs":{1:"[::1]:10911"},'
            '"brokerName":"broker-c","cluster":"C"}],"filterServerTable":{},"orderTopicConf":'
            '"broker-b:4","queueDatas":[{"brokerName":"broker-b","perm":6,"readQueueNums":8,'
            '"topicSynFlag":0,"writeQueueNums":8},{"brokerName":"broker-c","perm":4,'
            '"readQueueNums":2,"topicSynFlag":0,"writeQueueNums":0}]}')
CLUSTER = ('{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911"},'
           '"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},'
           '"clusterAddrTable":{"DefaultCluster":["broker-a"]}}')
OFFSETS = ('{"offsetTable":{{"brokerName":"b","queueId":2,"topic":"t"}:{"brokerOffset":10,'
           '"consumerOffset":7,"lastTimestamp":1700000000000},{"brokerName":"b","queueId":3,'
           '"topic":"t"}:{"brokerOffset":NaN,"consumerOffset":Infinity,"x":-Infinity}},'
           '"consumeTps":0.0}')
ESCAPES = ('{"s":"caf\\u00e9 \\u20ac \\ud83d\\ude00 \\ud83d lone \\/path\\/ \\"q\\" \\\\ '
           '\\b\\f\\n\\r\\t","\\u006bey":[true,false,null,-1.5e3,9223372036854775807],'
           "'single':'quoted',\"raw\":\"\xe6\x97\xa5\xe6\x9c\xac\"}")


def main():
    # ---- json / route ----
    for t in ("json", "route"):
        write(t, "route_std.json", ROUTE_STD.encode())
        write(t, "route_nonstd.json", ROUTE_NONSTD.encode())
        write(t, "route_4x.json", ROUTE_4X.encode())
        write(t, "cluster.json", CLUSTER.encode())
    write("json", "offset_table.json", OFFSETS.encode())
    write("json", "escapes.json", ESCAPES.encode("utf-8"))

    # ---- messages ----
    text = b"hello rocketmq, " * 40
    std = props([("TAGS", "TagA"), ("KEYS", "k1 k2"),
                 ("UNIQ_KEY", "7F0000010001B4AAC2E5000000000000"), ("WAIT", "true")])
    zl = zlib.compress(text, 5)
    l4 = cli(["lz4", "-q", "-c"], text)
    zs = cli(["zstd", "-q", "-c"], text)
    v6 = b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"
    plain = record(b"Hello RocketMQ", prop=std, qoff=0, phys=0)
    write("message", "v1_plain_zlib.bin",
          plain + record(zl, prop=std + props([("DUP", "a"), ("DUP", "b")]) + b"EMPTY\x01\x02",
                         sysflag=0x301, qoff=1, phys=len(plain)))
    write("message", "v2_ipv6.bin",
          record(b"v6 body", topic="T" * 130, prop=std, sysflag=0x30, v2=True,
                 born=(v6, 40000), store=(b"\x00" * 15 + b"\x01", 10911), qid=3, qoff=5,
                 phys=123456))
    write("message", "lz4.bin", record(l4, prop=std, sysflag=0x101))
    write("message", "zstd.bin", record(zs, prop=std, sysflag=0x201))
    write("message", "zlib_legacy.bin", record(zl, prop=std, sysflag=0x1))
    # A BatchCQ record: inner messages (§6.3 batch encoding) standing for
    # queue offsets 7, 8, 9; NUL and a malformed byte in properties.
    inner = b""
    for i, pr in enumerate([props([("TAGS", "TagA"), ("UNIQ_KEY", "I0")]),
                            props([("TAGS", "T\x00g"), ("UNIQ_KEY", "I1")]),
                            b"KEYS\x01\xffk\x02UNIQ_KEY\x01I2\x02"]):
        body = b"inner %d" % i
        inner += struct.pack(">iiiii", 22 + len(body) + len(pr), 0, 0, i, len(body)) + body
        inner += struct.pack(">h", len(pr)) + pr
    batch_props = props([("WAIT", "true"), ("UNIQ_KEY", "B"), ("INNER_NUM", "3"), ("INNER_BASE", "7")])
    write("message", "inner_batch.bin",
          record(b"before", prop=std, qoff=6) + record(inner, prop=batch_props, sysflag=0xC0, qoff=7)
          + record(b"after", prop=std, qoff=10))
    write("message", "inner_batch_zlib.bin",
          record(zlib.compress(inner, 5), prop=batch_props, sysflag=0xC0 | 0x301, qoff=7))
    write("message", "raw.zlib", zl)
    write("message", "raw.lz4", l4)
    write("message", "raw.zstd", zs)

    # ---- frames ----
    write("frame", "json_reply.frame", json_frame(
        '{"code":0,"flag":1,"language":"JAVA","opaque":0,"serializeTypeCurrentRPC":"JSON",'
        '"version":403}'))
    write("frame", "json_request.frame", json_frame(
        '{"code":105,"extFields":{"topic":"TopicTest"},"flag":0,"language":"CPP","opaque":1,'
        '"version":401}'))
    write("frame", "binary_request.frame", binary_frame(105, 1, 401, 1, 0, None,
                                                         [("topic", "TopicTest")]))
    write("frame", "binary_reply_body.frame", binary_frame(
        17, 0, 479, 9, 1, "No topic route info in name server for the topic: X",
        [("a", "1"), ("bb", "")], b"body bytes"))
    write("frame", "json_route.frame", json_frame(
        '{"code":0,"flag":1,"language":"JAVA","opaque":2,"serializeTypeCurrentRPC":"JSON",'
        '"version":479}', ROUTE_STD.encode()))
    write("frame", "json_cluster.frame", json_frame(
        '{"code":0,"flag":1,"language":"JAVA","opaque":3,"version":479}', CLUSTER.encode()))
    write("frame", "json_pull.frame", json_frame(
        '{"code":0,"extFields":{"suggestWhichBrokerId":"0","nextBeginOffset":"2",'
        '"minOffset":"0","maxOffset":"2"},"flag":1,"language":"JAVA","opaque":4,'
        '"remark":"FOUND","serializeTypeCurrentRPC":"JSON","version":479}',
        plain + record(zl, prop=std, sysflag=0x301, qoff=1, phys=len(plain))))


if __name__ == "__main__":
    main()
