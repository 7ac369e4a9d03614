#!/usr/bin/env python3
"""How the name server and the broker started by broker.sh treat each kind of
client connection: plain text, TLS with and without verification, wrong CA,
wrong host name, SNI, ALPN, protocol versions, client certificates.  Prints a
Markdown table (case | name server | broker | broker fast port).  Python 3
stdlib only; uses rmq_probe.py.

  eval "$(RMQ_TLS=1 test/broker/broker.sh env)"
  test/broker/tls_matrix.py [--access-key AK --secret-key SK]

Works against any mode (the default, permissive one too); the cases that need
the test CA are skipped when RMQ_TLS_CA is not set.  With RMQ_ACL the
requests are signed when --access-key is given.
"""
import argparse
import json
import os
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rmq_probe as rp  # noqa: E402

E = os.environ
NAMESRV = E.get("RMQ_NAMESRV", "127.0.0.1:9876")
BROKER = E.get("RMQ_BROKER", "127.0.0.1:10911")
CA = E.get("RMQ_TLS_CA")
WRONG_CA = E.get("RMQ_TLS_WRONG_CA")
CCERT, CKEY = E.get("RMQ_TLS_CLIENT_CERT"), E.get("RMQ_TLS_CLIENT_KEY")
WCERT, WKEY = E.get("RMQ_TLS_WRONG_CLIENT_CERT"), E.get("RMQ_TLS_WRONG_CLIENT_KEY")
AUTH = [None, None]


def frame(code, ext):
    if AUTH[0]:
        ext = rp.sign(ext, b"", AUTH[0], AUTH[1])
    h = json.dumps({"code": code, "flag": 0, "language": "OTHER", "opaque": 1, "version": 475,
                    "extFields": ext}, separators=(",", ":")).encode()
    return struct.pack(">ii", 4 + len(h), len(h)) + h


def query(addr):
    """A harmless request for this server: (code, ext)."""
    if addr == NAMESRV:
        return 106, {}
    return 30, {"topic": "TBW102", "queueId": "0"}


def attempt(addr, ctx=None, server_name=None, payload=None):
    """Connect (TLS if ctx), send one request, describe what happened."""
    host, port = addr.rsplit(":", 1)
    t0 = time.monotonic()
    s = socket.create_connection((host, int(port)), timeout=5)
    what = ""
    try:
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname=server_name)
            what = "%s; " % s.version()
            alpn = s.selected_alpn_protocol()
            if ctx.__dict__.get("alpn"):
                what += "ALPN selected: %s; " % alpn
        s.sendall(payload if payload is not None else frame(*query(addr)))
        h, _ = rp.read_frame(s)
        while not h.get("flag", 0) & 1:
            h, _ = rp.read_frame(s)
        return what + "response code %s" % h.get("code")
    except ConnectionError as e:
        return what + "%s after %.0f ms" % (describe(e), 1000 * (time.monotonic() - t0))
    except ssl.SSLError as e:
        return what + "%s: %s" % (type(e).__name__, getattr(e, "reason", None) or e)
    except socket.timeout:
        return what + "no answer within 5 s"
    finally:
        s.close()


def describe(e):
    if isinstance(e, ConnectionResetError):
        return "connection reset (RST)"
    if "closed before a response" in str(e):
        return "connection closed (EOF), no response"
    return "%s: %s" % (type(e).__name__, e)


def ctx_noverify(**kw):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return tune(c, **kw)


def ctx_verify(ca, **kw):
    c = ssl.create_default_context(cafile=ca)
    return tune(c, **kw)


def tune(c, cert=None, key=None, alpn=None, version=None):
    if cert:
        c.load_cert_chain(cert, key)
    if alpn:
        c.set_alpn_protocols(alpn)
        c.__dict__["alpn"] = True
    if version:
        c.minimum_version = c.maximum_version = version
    return c


def topic_exists(topic):
    """Ask over TLS (or plain, whatever works) whether the name server has a route."""
    for opts in ((True, None), (False, None)):
        rp.Conn.tls = opts[0]
        rp.Conn.tls_cert, rp.Conn.tls_key = CCERT, CKEY
        try:
            h, _ = rp.rpc(NAMESRV, 105, {"topic": topic}, timeout=5, signed=False)
            return h.get("code") == 0
        except (OSError, RuntimeError):
            continue
        finally:
            rp.Conn.tls = False
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--access-key")
    ap.add_argument("--secret-key")
    a = ap.parse_args()
    AUTH[:] = [a.access_key, a.secret_key]
    host, port = BROKER.rsplit(":", 1)
    fast = "%s:%d" % (host, int(port) - 2)
    servers = [("name server", NAMESRV), ("broker", BROKER), ("broker fast port (-2)", fast)]
    cases = [("plain text", lambda: None, None)]
    cases.append(("TLS, no verification, no SNI", lambda: ctx_noverify(), None))
    if CA:
        cases += [
            ("TLS, verify against the test CA, host 127.0.0.1 (IP SAN, no SNI)", lambda: ctx_verify(CA), "127.0.0.1"),
            ("TLS, verify, SNI and host name localhost (DNS SAN)", lambda: ctx_verify(CA), "localhost"),
            ("TLS, verify, host name wrong.example", lambda: ctx_verify(CA), "wrong.example"),
        ]
    if WRONG_CA:
        cases.append(("TLS, verify against an unrelated CA", lambda: ctx_verify(WRONG_CA), "127.0.0.1"))
    cases += [
        ("TLS, arbitrary SNI (other.example), no verification", lambda: ctx_noverify(), "other.example"),
        ("TLS, ALPN offered (h2, http/1.1)", lambda: ctx_noverify(alpn=["h2", "http/1.1"]), None),
        ("TLS 1.2 only", lambda: ctx_noverify(version=ssl.TLSVersion.TLSv1_2), None),
        ("TLS 1.3 only", lambda: ctx_noverify(version=ssl.TLSVersion.TLSv1_3), None),
    ]
    if CCERT:
        cases.append(("TLS, client certificate from the test CA", lambda: ctx_noverify(cert=CCERT, key=CKEY), None))
    if WCERT:
        cases.append(("TLS, client certificate from the unrelated CA",
                      lambda: ctx_noverify(cert=WCERT, key=WKEY), None))
        cases.append(("TLS 1.2, client certificate from the unrelated CA",
                      lambda: ctx_noverify(cert=WCERT, key=WKEY, version=ssl.TLSVersion.TLSv1_2), None))
        cases.append(("TLS 1.2, no client certificate",
                      lambda: ctx_noverify(version=ssl.TLSVersion.TLSv1_2), None))

    print("| case | " + " | ".join(n for n, _ in servers) + " |")
    print("|---" * (len(servers) + 1) + "|")
    for name, mk, sn in cases:
        cells = []
        for _, addr in servers:
            try:
                cells.append(attempt(addr, mk(), sn) if name != "plain text" else attempt(addr))
            except OSError as e:
                cells.append("%s: %s" % (type(e).__name__, e))
        print("| %s | %s |" % (name, " | ".join(c.replace("|", "\\|") for c in cells)))

    # Does a plain-text request reach the broker's processor before the
    # channel is closed?  Send UPDATE_AND_CREATE_TOPIC in plain text, then
    # ask the name server for the topic's route.
    topic = "tls_plain_probe_%d" % int(time.time())
    ext = {"topic": topic, "defaultTopic": "TBW102", "readQueueNums": "1", "writeQueueNums": "1",
           "perm": "6", "topicFilterType": "SINGLE_TAG", "topicSysFlag": "0", "order": "false"}
    r = attempt(BROKER, None, None, frame(17, ext))
    time.sleep(2)
    print("| plain-text UPDATE_AND_CREATE_TOPIC %s: %s; topic created anyway: %s | | | |"
          % (topic, r, topic_exists(topic)))


if __name__ == "__main__":
    main()
