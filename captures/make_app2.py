"""Application protocols inside WebSocket, part 2 (issue 19): MQTT 3.1.1 and 5, STOMP 1.2 and the
Jupyter kernel protocol, real programs talking on loopback, recorded with tcpdump.

    python3 captures/make_app2.py [NAME...]        (all scenarios without a NAME; --list)

Writes captures/app/NAME.pcap and captures/app/NAME.expected.json. Each scenario starts a real server
(Debian's mosquitto, Debian's RabbitMQ with rabbitmq_web_stomp, jupyter_server with an ipykernel) as a
subprocess and drives a real client library in this process (paho-mqtt, stomp.py, the websocket
jupyter-kernel-client's KernelWebSocketClient). The expected file is built from what the programs
logged:

- the client's log: every application packet/frame/message it sent or received, in order, with
  time.time() taken by the library's own logging (paho's on_log "Sending"/"Received" lines, stomp.py's
  listener callbacks and the bytes its transport sends, the Jupyter client's send and receive);
- the server's log where it has one (mosquitto's `log_type all` lines, each stamped with time.time()
  when this script read it; RabbitMQ and jupyter_server log nothing per message), checked against the
  client's: the server must have received what the client sent and sent what the client received;
- `requests`: each request the client saw answered (or answered itself), with the client's times at
  send and receive and `latency_ms` between them; `correlation_id` spelled as in the issue-19
  conventions (notes app_conv), so a decoder's exchanges can be matched one to one;
- `counts`: application messages per sender and type.

Every logged message is tied to the WebSocket message tshark finds for it (ws_frame_no, t_capture:
one each here, checked per connection and sender). Needs root (tcpdump), tshark, apt-get install
mosquitto rabbitmq-server, pip install paho-mqtt stomp.py jupyter_server ipykernel
jupyter-kernel-client. Ports 9351-9399. See captures/README.md for the expected file's keys.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from make_captures import tcpdump  # noqa: E402
from tshark_frames import tshark_frames  # noqa: E402

OUT = HERE / "app"
HOST = "127.0.0.1"

Scenario = Callable[[Path, Path], dict]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    """Register fn(out_dir, tmp) as the scenario named after it (tmp: a fresh temp folder)."""
    SCENARIOS[fn.__name__.removeprefix("_")] = fn
    return fn


def versions(*dists: str) -> dict[str, str]:
    return {d: metadata.version(d) for d in dists}


def deb_version(pkg: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
    return out.stdout.strip()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Recorder:
    """A thread-safe list of log records, each stamped with time.time() when it was logged."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def add(self, rec: dict, t: float | None = None) -> dict:
        with self.lock:
            rec = {"t": time.time() if t is None else t, **rec}
            self.records.append(rec)
            self.changed.notify_all()
            return rec

    def wait_for(self, pred: Callable[[dict], bool], timeout: float = 15.0, start: int = 0) -> dict:
        """The first record from index `start` on that satisfies pred (waits for it)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for rec in self.records[start:]:
                    if pred(rec):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no log record matching {pred} in {timeout} s")
                self.changed.wait(left)

    def __len__(self) -> int:
        with self.lock:
            return len(self.records)


class ServerProcess:
    """A server run as a subprocess whose output lines are recorded (stamped when read)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.lines = Recorder()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd, bufsize=1
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.add({"line": line.rstrip("\n")})

    def wait_line(self, needle: str, timeout: float = 60.0) -> dict:
        try:
            return self.lines.wait_for(lambda r: needle in r["line"], timeout)
        except TimeoutError:
            tail = "\n".join(r["line"] for r in self.lines.records[-30:])
            raise RuntimeError(f"server never said {needle!r}; its last lines:\n{tail}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def server(argv: list[str], ready: str, **kw: Any) -> Iterator[ServerProcess]:
    proc = ServerProcess(argv, **kw)
    try:
        proc.wait_line(ready)
        yield proc
    finally:
        proc.stop()


def write_expected(name: str, out_dir: Path, **body: Any) -> dict:
    """Write NAME.expected.json: the body plus counts per sender and type of `messages`."""
    counts: dict[str, Counter[str]] = {}
    for m in body["messages"]:
        counts.setdefault(m["sender"], Counter())[m["type"]] += 1
    expected = {
        "capture": f"app/{name}.pcap",
        "generator": f"make_app2.py {name}",
        **body,
        "counts": {s: dict(sorted(c.items())) for s, c in sorted(counts.items())},
    }
    path = out_dir / f"{name}.expected.json"
    path.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    return expected


def tshark_handshakes(pcap: Path, port: int) -> list[dict]:
    """The WebSocket handshakes tshark finds (the reference for what neither program logs: the
    subprotocol the server chose): per 101 response, client_port, subprotocol asked and chosen."""
    cmd = ["tshark", "-n", "-r", str(pcap), "-d", f"tcp.port=={port},http", "-Y",
           "http.sec_websocket_key or http.sec_websocket_accept", "-T", "fields", "-e", "tcp.srcport",
           "-e", "tcp.dstport", "-e", "http.response.code", "-e", "http.sec_websocket_protocol"]
    rows = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    asked: dict[int, str | None] = {}
    out = []
    for row in rows:
        src, dst, code, proto = (row.split("\t") + [""] * 4)[:4]
        if not code:
            asked[int(src)] = proto or None
        else:
            out.append({"client_port": int(dst), "server_port": int(src), "http_status": int(code),
                        "subprotocol_requested": asked.get(int(dst)), "subprotocol": proto or None})
    return out


def link_ws_messages(name: str, pcap: Path, port: int, msgs: list[dict]) -> dict:
    """Give each logged message the WebSocket message that carried it (one each in these scenarios:
    checked): `ws_frame_no`, the packet that completed it in tshark's dissection, and `t_capture`, that
    packet's time. Returns how far the log times are from the capture's (log_skew_ms)."""
    frames = tshark_frames(pcap, [port])
    ends: dict[tuple[int, str], list[int]] = {}
    for f in frames:
        if f["opcode"] in (0, 1, 2) and f["fin"]:
            ends.setdefault((f["client_port"], f["sender"]), []).append(f["frame_no"])
    logged: dict[tuple[int, str], list[dict]] = {}
    for m in msgs:
        logged.setdefault((m["client_port"], m["sender"]), []).append(m)
    got = {k: len(v) for k, v in ends.items()}
    want = {k: len(v) for k, v in logged.items()}
    if got != want:
        raise RuntimeError(f"{name}: tshark's data messages per connection and sender {got}, logged {want}")
    cmd = ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch"]
    rows = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout.split()
    times = {int(n): float(t) for n, t in zip(rows[::2], rows[1::2], strict=True)}
    skews = []
    for key, ms in logged.items():
        for m, frame_no in zip(ms, ends[key], strict=True):
            m["ws_frame_no"] = frame_no
            m["t_capture"] = times[frame_no]
            skews.append(abs(m["t"] - m["t_capture"]) * 1000)
    skews.sort()
    return {"max": round(skews[-1], 3), "median": round(skews[len(skews) // 2], 3)}


def request(
    client_port: int, requester: str, req: dict, resp: dict, correlation_id: str, **extra: Any
) -> dict:
    """One request/response pair from the client's log (req and resp are log records)."""
    return {
        "client_port": client_port,
        "requester": requester,
        "request_type": req["type"],
        "response_type": resp["type"],
        "correlation_id": correlation_id,
        "t_send": req["t"],
        "t_recv": resp["t"],
        "latency_ms": round((resp["t"] - req["t"]) * 1000, 3),
        "request_frame_no": req["ws_frame_no"],
        "response_frame_no": resp["ws_frame_no"],
        "latency_capture_ms": round((resp["t_capture"] - req["t_capture"]) * 1000, 3),
        **extra,
    }


# --------------------------------------------------------------------------------------------
# MQTT 3.1.1 and 5: paho-mqtt (transport="websockets") against Debian's mosquitto

MQTT_BIG = bytes(range(256)) * 280  # 71,680 bytes: more than 64 KiB, so a 4-byte remaining length
MQTT_KEEPALIVE = 2  # seconds; the client idles 2.6 s once, so paho sends a PINGREQ
MQTT_ACL = "topic readwrite app2/#\n"  # anonymous clients: app2/# only, so secret/# is refused

_PAHO_LINE = re.compile(r"^(Sending|Received) ([A-Z]+)")
_PAHO_PUBLISH = re.compile(r"\(d(\d), q(\d), r(\d), m(\d+)\), '(?:b')?(.*?)'?'")
_PAHO_MID = re.compile(r"(?:Mid: |\(d\d, m)(\d+)")
_PAHO_LEN = re.compile(r"\((\d+) bytes\)")
_MOSQ_LINE = re.compile(r"^\d+: (Received|Sending|Denied) ([A-Z]+) (?:from|to) (\S+)")


def _paho_record(line: str) -> dict | None:
    """A paho on_log line as a record: dir (sent/received), type, packet fields."""
    m = _PAHO_LINE.match(line)
    if m is None:
        return None
    rec: dict[str, Any] = {"dir": "sent" if m[1] == "Sending" else "received", "type": m[2]}
    if rec["type"] == "PUBLISH":
        p = _PAHO_PUBLISH.search(line)
        if p is None:
            raise RuntimeError(f"paho PUBLISH line not understood: {line}")
        qos = int(p[2])
        rec.update(dup=bool(int(p[1])), qos=qos, retain=bool(int(p[3])), mid=int(p[4]), topic=p[5])
        n = _PAHO_LEN.search(line)
        rec["payload_len"] = int(n[1]) if n else 0
    else:
        mid = _PAHO_MID.search(line)
        if mid is not None:
            rec["mid"] = int(mid[1])
    rec["log"] = line[:200]
    return rec


class PahoLog:
    """The paho client's own log (on_log "Sending X"/"Received X" lines, timed when logged) and what
    its callbacks reported (reason codes, delivered payloads), attached to the packets they belong to."""

    def __init__(self) -> None:
        self.rec = Recorder()

    def on_log(self, client: Any, userdata: Any, level: int, buf: str) -> None:
        rec = _paho_record(buf)
        if rec is not None:
            self.rec.add(rec)

    def last(self, dir_: str, types: tuple[str, ...], pred: Callable[[dict], bool] = lambda r: True) -> dict:
        with self.rec.lock:
            for r in reversed(self.rec.records):
                if r["dir"] == dir_ and r["type"] in types and pred(r):
                    return r
        raise RuntimeError(f"paho logged no {dir_} {types}")

    def annotate(self, rec: dict, **kw: Any) -> None:
        with self.rec.lock:
            rec.update(kw)
            self.rec.changed.notify_all()

    # paho callbacks (API version 2): they run right after paho logged the packet they report
    def on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.annotate(self.last("received", ("CONNACK",)), reason_codes=[rc.value], reason=rc.getName())

    def on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: list, props: Any) -> None:
        rec = self.last("received", ("SUBACK",), lambda r: "mid" not in r)
        self.annotate(rec, mid=mid, reason_codes=[rc.value for rc in rcs])

    def on_unsubscribe(self, client: Any, userdata: Any, mid: int, rcs: list, props: Any) -> None:
        rec = self.last("received", ("UNSUBACK",), lambda r: r.get("mid") == mid)
        self.annotate(rec, reason_codes=[rc.value for rc in rcs])

    def on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with contextlib.suppress(RuntimeError):  # QoS 0: no acknowledgement
            rec = self.last("received", ("PUBACK", "PUBCOMP"), lambda r: r.get("mid") == mid)
            self.annotate(rec, reason_codes=[rc.value], reason=rc.getName(), delivered=True)

    def on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        rec = self.last("received", ("PUBLISH",),
                        lambda r: r["topic"] == msg.topic and r["mid"] == msg.mid and "sha256" not in r)
        extra = {}
        if msg.properties is not None and hasattr(msg.properties, "UserProperty"):
            extra["user_properties"] = [list(p) for p in msg.properties.UserProperty]
        self.annotate(rec, sha256=sha256(msg.payload), handed_to_app=True, **extra)


def _mosquitto_conf(tmp: Path, port: int) -> Path:
    tmp.chmod(0o755)  # run as root, mosquitto reads its ACL file as the user mosquitto
    acl = tmp / "acl"
    acl.write_text(MQTT_ACL)
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings false\nallow_anonymous true\npersistence false\n"
        f"acl_file {acl}\nlog_dest stdout\nlog_type all\nwebsockets_log_level 0\n"
        # mosquitto 2.0.11 refuses to start with only a websockets listener (fixed in 2.0.12),
        # hence a plain MQTT listener beside it that nobody uses
        f"listener {port + 1} {HOST}\nlistener {port} {HOST}\nprotocol websockets\n"
    )
    return conf


def _mqtt_session(name: str, port: int, v5: bool, log: PahoLog) -> dict:
    """The client's part; returns what it knows of the connection."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"{name}-client",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        transport="websockets",
        reconnect_on_failure=False,
    )
    c.ws_set_options(path="/mqtt")
    for cb in ("on_log", "on_connect", "on_subscribe", "on_unsubscribe", "on_publish", "on_message"):
        setattr(c, cb, getattr(log, cb))
    c.will_set("app2/will", b"gone", qos=1)
    kw: dict[str, Any] = {"keepalive": MQTT_KEEPALIVE}
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        props.UserProperty = [("scenario", name)]
        kw.update(clean_start=True, properties=props)
    subs: dict[int, str] = {}
    c.connect(HOST, port, **kw)
    c.loop_start()
    try:
        log.rec.wait_for(lambda r: r["type"] == "CONNACK" and "reason_codes" in r)

        def subscribe(topics: list[tuple[str, int]]) -> None:
            start = len(log.rec)
            if v5:
                _, mid = c.subscribe([(t, SubscribeOptions(qos=q)) for t, q in topics])
            else:
                _, mid = c.subscribe(topics)
            subs[mid] = ",".join(t for t, _ in topics)
            log.rec.wait_for(lambda r: r["type"] == "SUBACK" and r.get("mid") == mid, start=start)

        def unsubscribe(topics: list[str]) -> None:
            start = len(log.rec)
            _, mid = c.unsubscribe(topics)
            subs[mid] = ",".join(topics)
            log.rec.wait_for(lambda r: r["type"] == "UNSUBACK" and "reason_codes" in r and r["mid"] == mid,
                             start=start)

        def publish(topic: str, payload: bytes, qos: int, retain: bool = False, echo: bool = True,
                    props: Any = None) -> None:
            start = len(log.rec)
            info = c.publish(topic, payload, qos=qos, retain=retain, properties=props)
            sent = log.last("sent", ("PUBLISH",), lambda r: r["mid"] == info.mid)
            log.annotate(sent, sha256=sha256(payload))
            if props is not None and hasattr(props, "UserProperty"):
                log.annotate(sent, user_properties=[list(p) for p in props.UserProperty])
            if qos:
                log.rec.wait_for(lambda r: r.get("delivered") and r.get("mid") == info.mid, start=start)
            if echo:  # the broker hands it back to our own subscription
                log.rec.wait_for(lambda r: r["dir"] == "received" and r["type"] == "PUBLISH"
                                 and r["topic"] == topic and r.get("handed_to_app"), start=start)
            time.sleep(0.15)  # lets a QoS 2 delivery's PUBCOMP go out before the next step

        subscribe([("app2/q0", 0)])
        subscribe([("app2/q1", 1), ("app2/q2", 2), ("app2/big", 1)])
        subscribe([("secret/#", 1)])  # granted: mosquitto 2.0 applies the ACL when it delivers
        publish("app2/retained", b"kept for later subscribers", 1, retain=True, echo=False)
        publish("app2/q0", b"zero", 0)
        publish("app2/q1", b"one", 1)
        publish("app2/q2", b"two", 2)
        subscribe([("app2/retained", 1)])  # the broker sends the retained message (retain flag set)
        log.rec.wait_for(lambda r: r["type"] == "PUBLISH" and r["topic"] == "app2/retained"
                         and r["dir"] == "received" and r.get("handed_to_app"))
        time.sleep(0.15)
        if v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = "application/json"
            props.ResponseTopic = "app2/replies"
            props.CorrelationData = b"req-42"
            props.MessageExpiryInterval = 60
            props.UserProperty = [("k", "v")]
            publish("app2/q1", b'{"with": "properties"}', 1, props=props)
            publish("app2/nobody", b"unheard", 1, echo=False)  # PUBACK 0x10 No matching subscribers
        publish("secret/x", b"hush", 1, echo=False)  # 5: PUBACK 0x87; 3.1.1: acknowledged, dropped
        publish("app2/big", MQTT_BIG, 1)
        start = len(log.rec)
        time.sleep(MQTT_KEEPALIVE + 0.6)  # idle: paho pings
        log.rec.wait_for(lambda r: r["type"] == "PINGRESP", start=start)
        unsubscribe(["app2/q0", "app2/q1"])
        if v5:
            unsubscribe(["app2/never"])  # UNSUBACK 0x11 No subscription existed
        time.sleep(0.1)
        c.disconnect()
        log.rec.wait_for(lambda r: r["type"] == "DISCONNECT")
        time.sleep(0.3)
    finally:
        c.loop_stop()
    return {"subscriptions": subs}


def _mqtt_messages(client_port: int, recs: list[dict], subs: dict[int, str]) -> list[dict]:
    out = []
    for r in recs:
        m: dict[str, Any] = {
            "client_port": client_port,
            "sender": "client" if r["dir"] == "sent" else "server",
            "type": r["type"],
            "t": r["t"],
        }
        if r["type"] == "PUBLISH":
            m.update(channel=r["topic"], qos=r["qos"], retain=r["retain"], dup=r["dup"],
                     packet_id=r["mid"] if r["qos"] else None, payload_len=r["payload_len"],
                     sha256=r.get("sha256"))
            if "user_properties" in r:
                m["user_properties"] = r["user_properties"]
        elif "mid" in r:
            m["packet_id"] = r["mid"]
            if r["type"] in ("SUBSCRIBE", "UNSUBSCRIBE"):
                m["channel"] = subs[r["mid"]]
        if "reason_codes" in r:
            m["reason_codes"] = r["reason_codes"]
        out.append(m)
    return out


def _mqtt_requests(client_port: int, msgs: list[dict]) -> list[dict]:
    """Requests and their answers, paired from the client's log by the logged packet ids."""
    opened: dict[str, tuple[dict, str]] = {}
    topics: dict[str, str] = {}  # "<publisher initial>:<packet id>" -> topic, for PUBREL
    done = []
    for m in msgs:
        me, t, pid = m["sender"], m["type"], m.get("packet_id")
        ini = me[0]
        other = "s" if ini == "c" else "c"
        key = None
        if t == "CONNECT":
            opened["connect"] = (m, me)
        elif t == "PINGREQ":
            opened["ping"] = (m, me)
        elif t in ("SUBSCRIBE", "UNSUBSCRIBE") or (t == "PUBLISH" and m["qos"]):
            opened[f"{ini}:{pid}"] = (m, me)
            topics[f"{ini}:{pid}"] = m["channel"]
        elif t == "PUBREL":  # the publisher's second request of a QoS 2 flow
            opened[f"{ini}:{pid}:rel"] = ({**m, "channel": topics.get(f"{ini}:{pid}")}, me)
        elif t == "CONNACK":
            key = "connect"
        elif t == "PINGRESP":
            key = "ping"
        elif t in ("PUBACK", "PUBREC", "SUBACK", "UNSUBACK"):
            key = f"{other}:{pid}"
        elif t == "PUBCOMP":
            key = f"{other}:{pid}:rel"
        if key is None:
            continue
        if key not in opened:
            raise RuntimeError(f"MQTT {t} {pid} answers nothing the client logged")
        req, who = opened.pop(key)
        extra = {"channel": req.get("channel")}
        if "reason_codes" in m:
            extra["reason_codes"] = m["reason_codes"]
        done.append(request(client_port, who, req, m, key, **extra))
    if opened:
        raise RuntimeError(f"MQTT requests left unanswered in the client's log: {sorted(opened)}")
    return done


_MOSQ_CONNECTED = re.compile(r"New client connected from \S+:(\d+) as (\S+)")


def _mosquitto_records(lines: list[dict], client_id: str) -> tuple[int, list[dict]]:
    """mosquitto's log of our client: its port and each packet it received or sent (t: when this
    script read the line; mosquitto's own stamps are whole seconds)."""
    port = 0
    out = []
    for r in lines:
        m = _MOSQ_CONNECTED.search(r["line"])
        if m and m[2] == client_id:  # how mosquitto logs the CONNECT it received
            port = int(m[1])
            out.append({"t": r["t"], "dir": "received", "type": "CONNECT", "log": r["line"][:200]})
        m = _MOSQ_LINE.match(r["line"])
        if m and m[3] == client_id:
            rec = {"t": r["t"], "dir": "sent" if m[1] == "Sending" else "received", "type": m[2],
                   "log": r["line"][:200]}
            if m[1] == "Denied":  # received, refused by the ACL
                rec["denied"] = True
            out.append(rec)
    if not port:
        raise RuntimeError(f"mosquitto never logged {client_id} connecting")
    return port, out


def _mqtt(name: str, port: int, v5: bool, out_dir: Path, tmp: Path) -> dict:
    conf = _mosquitto_conf(tmp, port)
    log = PahoLog()
    pcap = out_dir / f"{name}.pcap"
    with server(["stdbuf", "-oL", "mosquitto", "-c", str(conf)], "running") as broker:  # line-buffered
        with tcpdump(pcap, f"tcp port {port}"):
            facts = _mqtt_session(name, port, v5, log)
        client_port, srv = _mosquitto_records(list(broker.lines.records), f"{name}-client")
    recs = log.rec.records
    for side, ours in (("received", "sent"), ("sent", "received")):
        a = [r["type"] for r in srv if r["dir"] == side]
        b = [r["type"] for r in recs if r["dir"] == ours]
        if a != b:
            raise RuntimeError(f"{name}: mosquitto {side} {a}\nbut paho {ours} {b}")
    hs = tshark_handshakes(pcap, port)
    if [h["client_port"] for h in hs] != [client_port] or hs[0]["subprotocol"] != "mqtt":
        raise RuntimeError(f"{name}: tshark's handshakes {hs}, wanted one from {client_port} choosing mqtt")
    msgs = _mqtt_messages(client_port, recs, facts["subscriptions"])
    skew = link_ws_messages(name, pcap, port, msgs)
    version = "5" if v5 else "3.1.1"
    extra5 = (
        "; MQTT 5 extras: CONNECT properties (session expiry, a user property), a PUBLISH with content "
        "type, response topic, correlation data, expiry and a user property, PUBACK 0x10 No matching "
        "subscribers (the retained PUBLISH too), PUBACK 0x87 Not authorized (secret/x), UNSUBACK 0x11 "
        "No subscription existed"
        if v5
        else "; the denied PUBLISH gets a plain PUBACK (3.1.1 has no reason codes)"
    )
    return write_expected(
        name,
        out_dir,
        description=(
            f"paho-mqtt {metadata.version('paho-mqtt')} (transport websockets, MQTT {version}) against "
            f"Debian's mosquitto {deb_version('mosquitto')} (websockets listener, ACL allowing app2/# "
            "only): CONNECT with a will, keepalive 2 s; SUBSCRIBE QoS 0, then QoS 1/2/1 in one packet, "
            "then secret/# (granted: mosquitto 2.0 applies its ACL on delivery); a retained QoS 1 "
            "PUBLISH; PUBLISH QoS 0, 1, 2 each delivered back (QoS 2 both ways: PUBREC/PUBREL/PUBCOMP); "
            "SUBSCRIBE to the retained topic (delivered with retain set); a PUBLISH to secret/x that "
            f"mosquitto denies; a {len(MQTT_BIG):,}-byte QoS 1 PUBLISH delivered back (mosquitto writes "
            "it in 4 KiB pieces, 100 ms apart); 2.6 s idle so paho sends PINGREQ; UNSUBSCRIBE; "
            "DISCONNECT" + extra5
        ),
        protocol="mqtt",
        mqtt_version=version,
        versions={"paho-mqtt": metadata.version("paho-mqtt"), "mosquitto": deb_version("mosquitto")},
        connections=[{"client_port": client_port, "server_port": port, "subprotocol": "mqtt",
                      "subprotocol_requested": hs[0]["subprotocol_requested"]}],
        log_skew_ms=skew,
        messages=msgs,
        requests=_mqtt_requests(client_port, msgs),
        server_log=[{"client_port": client_port, **r} for r in srv],
        notes=(
            "messages: the client's log (paho on_log), in order; sender client = a packet paho sent, "
            "server = one paho received; t = time.time() when paho logged it; reason_codes from paho's "
            "callbacks; packet_id null for QoS 0; payload sha256 from the payload the client published or "
            "was handed. requests: paired by the logged packet ids; correlation_id as in the issue-19 "
            "conventions; latency_ms = t_recv - t_send of the two log records (both taken by the client). "
            "server_log: mosquitto's log_type all lines of this client, t = when read from its stdout."
        ),
    )


@scenario
def _mqtt311(out_dir: Path, tmp: Path) -> dict:
    return _mqtt("mqtt311", 9351, False, out_dir, tmp)


@scenario
def _mqtt5(out_dir: Path, tmp: Path) -> dict:
    return _mqtt("mqtt5", 9353, True, out_dir, tmp)


# --------------------------------------------------------------------------------------------
# STOMP 1.2: stomp.py's WSStompConnection (websocket-client) against Debian's RabbitMQ with
# rabbitmq_web_stomp

STOMP_PORT = 9361  # web_stomp; RabbitMQ's own listeners get 9362 (STOMP), 9363 (AMQP), 9364 (Erlang
STOMP_SUBPROTOCOLS = "v12.stomp, v11.stomp, v10.stomp"  # distribution), 9365 (epmd)
STOMP_BIG = ("0123456789abcdef" * 1280)  # 20,480 characters
STOMP_HEADERS_KEPT = ("destination", "id", "subscription", "message-id", "receipt", "receipt-id",
                      "content-type", "content-length", "transaction", "ack", "message", "host",
                      "accept-version", "version", "heart-beat", "x-escaped")


def _rabbitmq_env(tmp: Path) -> dict[str, str]:
    conf = tmp / "rabbitmq.conf"
    conf.write_text(
        f"listeners.tcp.default = {STOMP_PORT + 2}\nstomp.listeners.tcp.1 = {HOST}:{STOMP_PORT + 1}\n"
        f"web_stomp.tcp.port = {STOMP_PORT}\nweb_stomp.tcp.ip = {HOST}\n"
    )
    (tmp / "enabled_plugins").write_text("[rabbitmq_web_stomp].\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    env.update(
        HOME=str(tmp),  # the Erlang cookie
        RABBITMQ_BASE=str(tmp),
        RABBITMQ_CONFIG_FILE=str(conf),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(tmp / "enabled_plugins"),
        RABBITMQ_MNESIA_BASE=str(tmp / "mnesia"),
        RABBITMQ_LOG_BASE=str(tmp / "log"),
        RABBITMQ_LOGS="-",
        RABBITMQ_NODENAME="app2@localhost",
        RABBITMQ_DIST_PORT=str(STOMP_PORT + 3),
        ERL_EPMD_PORT=str(STOMP_PORT + 4),
        RABBITMQ_PID_FILE=str(tmp / "pid"),
    )
    return env


_STOMP_ESCAPES = {"\\n": "\n", "\\r": "\r", "\\c": ":", "\\\\": "\\"}


def _stomp_unescape(value: str) -> str:
    """STOMP 1.2 header value escapes undone."""
    return re.sub(r"\\[nrc\\]", lambda m: _STOMP_ESCAPES[m[0]], value)


class StompLog:
    """stomp.py's view: its listener callbacks, each frame it sent (on_send, heart-beats included:
    stomp.py sends them as frames without a command) and each frame it received."""

    def __init__(self) -> None:
        self.rec = Recorder()
        self.conn = 0  # which connection of the scenario (its client port)

    def _add(self, dir_: str, cmd: str | None, headers: dict, body: Any) -> None:
        body_b = body.encode() if isinstance(body, str) else (body or b"")
        if dir_ == "sent" and cmd not in ("CONNECT", "STOMP"):  # on_send sees the escaped values
            headers = {k: _stomp_unescape(str(v)) for k, v in headers.items()}
        self.rec.add({
            "client_port": self.conn,
            "dir": dir_,
            "type": cmd or "HEARTBEAT",
            "headers": {k: str(v)[:200] for k, v in headers.items() if k in STOMP_HEADERS_KEPT},
            "body_len": len(body_b),
            "body_sha256": sha256(body_b) if body_b else None,
        })


def stomp_listener(log: StompLog) -> Any:
    import stomp

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_send(self, frame: Any) -> None:
            log._add("sent", frame.cmd, frame.headers, frame.body)

        def on_connected(self, frame: Any) -> None:
            log._add("received", "CONNECTED", frame.headers, frame.body)

        def on_message(self, frame: Any) -> None:
            log._add("received", "MESSAGE", frame.headers, frame.body)

        def on_receipt(self, frame: Any) -> None:
            log._add("received", "RECEIPT", frame.headers, frame.body)

        def on_error(self, frame: Any) -> None:
            log._add("received", "ERROR", frame.headers, frame.body)

        def on_heartbeat(self) -> None:
            log._add("received", "HEARTBEAT", {}, b"")

    return Listener()


def _stomp_session(log: StompLog) -> int:
    """The client's part: a refused CONNECT, then a full session; returns the session's port."""
    import stomp

    def connection(vhost: str) -> Any:
        c = stomp.WSStompConnection(
            [(HOST, STOMP_PORT)], ws_path="/ws", vhost=vhost, heartbeats=(1000, 1000),
            header={"Sec-WebSocket-Protocol": STOMP_SUBPROTOCOLS}, reconnect_attempts_max=1,
        )
        c.set_listener("log", stomp_listener(log))
        return c

    def wait(dir_: str, type_: str, start: int, **headers: str) -> dict:
        return log.rec.wait_for(
            lambda r: r["dir"] == dir_ and r["type"] == type_
            and all(r["headers"].get(k) == v for k, v in headers.items()),
            start=start,
        )

    log.conn = 1  # the refused one: RabbitMQ has no such virtual host
    bad = connection("no-such-vhost")
    start = len(log.rec)
    with contextlib.suppress(stomp.exception.ConnectFailedException):
        bad.connect("guest", "guest", wait=True)
    wait("received", "ERROR", start)
    time.sleep(0.3)
    with contextlib.suppress(Exception):
        bad.disconnect()

    log.conn = 2
    c = connection("/")
    c.connect("guest", "guest", wait=True)
    port = int(c.transport.socket.sock.getsockname()[1])

    def step(receipt: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        start = len(log.rec)
        fn(*args, receipt=receipt, **kw)
        wait("received", "RECEIPT", start, **{"receipt-id": receipt})
        time.sleep(0.05)

    step("sub-q", c.subscribe, "/queue/app2.work", id="s-q", ack="client-individual")
    step("sub-t", c.subscribe, "/topic/app2.news", id="s-t", ack="auto")
    start = len(log.rec)
    step("send-1", c.send, "/queue/app2.work", "job one", headers={"x-escaped": "a:b\nc\\d"})
    msg = wait("received", "MESSAGE", start, subscription="s-q")
    step("ack-1", c.ack, msg["headers"]["ack"])
    start = len(log.rec)
    c.send("/topic/app2.news", json.dumps({"headline": "no receipt asked"}), content_type="application/json")
    wait("received", "MESSAGE", start, subscription="s-t")
    start = len(log.rec)
    step("send-big", c.send, "/topic/app2.news", STOMP_BIG, content_type="text/plain")
    wait("received", "MESSAGE", start, subscription="s-t")
    c.begin("tx-1")
    c.send("/queue/app2.work", "job in a transaction", transaction="tx-1")
    start = len(log.rec)
    step("commit-1", c.commit, "tx-1")
    msg = wait("received", "MESSAGE", start, subscription="s-q")
    step("nack-1", c.nack, msg["headers"]["ack"], requeue="false")
    time.sleep(2.5)  # idle: heart-beats both ways (1 s each way)
    step("unsub-t", c.unsubscribe, "s-t")
    # RabbitMQ's web-stomp answers DISCONNECT by closing the WebSocket (1000), with no RECEIPT
    c.disconnect(receipt="bye")
    time.sleep(0.3)

    log.conn = 3  # an ERROR in a session: a SEND to a destination RabbitMQ does not know
    c3 = connection("/")
    c3.connect("guest", "guest", wait=True)
    start = len(log.rec)
    c3.send("/bogus/app2", "nowhere", receipt="send-bad")  # ERROR Unknown destination, no receipt-id
    wait("received", "ERROR", start)
    time.sleep(0.3)
    with contextlib.suppress(Exception):
        c3.disconnect(receipt="bye-3")
    time.sleep(0.3)
    return port


def _stomp_messages(recs: list[dict], ports: dict[int, int]) -> list[dict]:
    out = []
    for r in recs:
        h = r["headers"]
        m: dict[str, Any] = {
            "client_port": ports[r["client_port"]],
            "sender": "client" if r["dir"] == "sent" else "server",
            "type": r["type"],
            "t": r["t"],
            "channel": h.get("destination"),
            "headers": h,
            "body_len": r["body_len"],
            "body_sha256": r["body_sha256"],
        }
        out.append(m)
    return out


def _stomp_requests(msgs: list[dict]) -> list[dict]:
    """CONNECT/STOMP -> CONNECTED or ERROR ("connect"); a frame with a receipt header -> the RECEIPT
    (or ERROR) naming it ("receipt:<id>"); requests never answered are kept with nulls."""
    opened: dict[tuple[int, str], dict] = {}
    done: list[dict] = []
    for m in msgs:
        port, h = m["client_port"], m["headers"]
        if m["sender"] == "client":
            if m["type"] in ("CONNECT", "STOMP"):
                opened[(port, "connect")] = m
            elif "receipt" in h:
                opened[(port, f"receipt:{h['receipt']}")] = m
            continue
        if m["type"] in ("CONNECTED", "ERROR") and (port, "connect") in opened:
            key = "connect"
        elif m["type"] in ("RECEIPT", "ERROR") and "receipt-id" in h:
            key = f"receipt:{h['receipt-id']}"
        else:
            continue
        req = opened.pop((port, key))
        done.append(request(port, "client", req, m, key, channel=req["channel"],
                            status="error" if m["type"] == "ERROR" else "ok",
                            error_message=h.get("message")))
    for (port, key), req in opened.items():
        done.append({"client_port": port, "requester": "client", "request_type": req["type"],
                     "response_type": None, "correlation_id": key, "t_send": req["t"], "t_recv": None,
                     "latency_ms": None, "request_frame_no": req["ws_frame_no"], "response_frame_no": None,
                     "latency_capture_ms": None, "channel": req["channel"], "status": None})
    return sorted(done, key=lambda r: r["t_send"])


@scenario
def _stomp(out_dir: Path, tmp: Path) -> dict:
    name = "stomp"
    pcap = out_dir / f"{name}.pcap"
    log = StompLog()
    env = _rabbitmq_env(tmp)
    try:
        with (
            server(["/usr/lib/rabbitmq/bin/rabbitmq-server"], "Server startup complete", env=env, cwd=tmp),
            tcpdump(pcap, f"tcp port {STOMP_PORT}"),
        ):
            port = _stomp_session(log)
    finally:  # the Erlang port mapper the broker started on our port
        subprocess.run(["epmd", "-port", str(STOMP_PORT + 4), "-kill"], capture_output=True, check=False)
    hs = tshark_handshakes(pcap, STOMP_PORT)
    if len(hs) != 3 or hs[1]["client_port"] != port or any(h["subprotocol"] != "v12.stomp" for h in hs):
        raise RuntimeError(f"stomp: tshark's handshakes {hs}, wanted 3 choosing v12.stomp, 2nd from {port}")
    ports = {i + 1: h["client_port"] for i, h in enumerate(hs)}
    msgs = _stomp_messages(log.rec.records, ports)
    skew = link_ws_messages(name, pcap, STOMP_PORT, msgs)
    return write_expected(
        name,
        out_dir,
        description=(
            f"stomp.py {metadata.version('stomp.py')} WSStompConnection (websocket-client "
            f"{metadata.version('websocket-client')}, asking for {STOMP_SUBPROTOCOLS}) against Debian's "
            f"RabbitMQ {deb_version('rabbitmq-server')} with rabbitmq_web_stomp, two connections: the first "
            "CONNECTs (as STOMP) to a virtual host that does not exist and gets ERROR 'Bad CONNECT'; the "
            "second, with heart-beats 1000,1000: SUBSCRIBE a queue (client-individual acks) and a topic, "
            "SEND with receipts (a header with escaped characters, a 20,480-byte body), MESSAGE "
            "deliveries, ACK, a SEND without receipt (JSON), a transaction (BEGIN, SEND, COMMIT with "
            "receipt), NACK, 2.5 s idle with heart-beats (bare EOLs) both ways, UNSUBSCRIBE, DISCONNECT "
            "with receipt, which RabbitMQ never answers (it closes the WebSocket 1000 instead); the third "
            "SENDs to an unknown destination with a receipt and gets ERROR 'Unknown destination' without "
            "receipt-id (so that receipt stays unanswered too), then DISCONNECTs"
        ),
        protocol="stomp",
        versions={"stomp.py": metadata.version("stomp.py"),
                  "websocket-client": metadata.version("websocket-client"),
                  "rabbitmq-server": deb_version("rabbitmq-server")},
        connections=[{"client_port": h["client_port"], "server_port": STOMP_PORT,
                      "subprotocol": h["subprotocol"], "subprotocol_requested": h["subprotocol_requested"]}
                     for h in hs],
        log_skew_ms=skew,
        messages=msgs,
        requests=_stomp_requests(msgs),
        notes=(
            "messages: stomp.py's log, in order: frames it sent (its on_send listener, called just before "
            "the send; heart-beats are frames without a command there, type HEARTBEAT) and frames it "
            "received (on_connected, on_message, on_receipt, on_error, on_heartbeat), t = time.time() in "
            "the listener; headers (a few kept) with STOMP 1.2 escapes undone (stomp.py logs sent frames "
            "escaped, received ones unescaped); body_len in bytes (UTF-8). requests: paired by receipt / "
            "receipt-id; the unanswered ones have nulls. RabbitMQ "
            "logs no frames, so there is no server log; tshark gives the subprotocol the server chose."
        ),
    )


# --------------------------------------------------------------------------------------------
# Jupyter: jupyter_server with an ipykernel, jupyter-kernel-client's KernelWebSocketClient

JUPYTER_TOKEN = "app2-capture-token"
JUPYTER_CELLS = (  # (seconds the cell sleeps, code)
    (0.05, "import time; time.sleep(0.05); 6 * 7"),
    (0.2, "time.sleep(0.2); print('slept 0.2 s')"),
    (0.5, "time.sleep(0.5); 'half a second'"),
)
JUPYTER_ERROR_CELL = "1 / 0"


class JupyterLog:
    """The kernel client's view: each message it sent (the session's send, timed just before it) and
    each message it received (timed when it was decoded and queued for its channel)."""

    def __init__(self) -> None:
        self.rec = Recorder()

    def add(self, dir_: str, channel: str, msg: dict, t: float | None = None) -> None:
        header, parent, content = msg.get("header") or {}, msg.get("parent_header") or {}, msg.get("content")
        content = content if isinstance(content, dict) else {}
        rec: dict[str, Any] = {
            "dir": dir_,
            "channel": channel,
            "type": header.get("msg_type"),
            "msg_id": header.get("msg_id"),
            "parent_msg_id": parent.get("msg_id"),
            "buffers": len(msg.get("buffers") or []),
        }
        for key in ("status", "execution_state", "ename", "execution_count", "name"):
            if isinstance(content.get(key), (str, int)):
                rec[key] = content[key]
        self.rec.add(rec, t)


def jupyter_client(url: str, v1: bool, log: JupyterLog) -> Any:
    """jupyter-kernel-client's KernelWebSocketClient, logged. Its V1 receive path raises
    KeyError('channel') in a debug log line (1.0.2: the decoded v1 message has no "channel" key), so
    _on_message is the library's with that key set; the framing is the library's own."""
    import queue

    from jupyter_kernel_client.wsclient import JupyterSubprotocol, KernelWebSocketClient
    from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1

    class LoggedQueue(queue.Queue):  # type: ignore[type-arg]
        def __init__(self, channel: str) -> None:
            super().__init__()
            self.channel = channel

        def put_nowait(self, item: Any) -> None:
            log.add("received", self.channel, item)
            super().put_nowait(item)

    class Client(KernelWebSocketClient):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(url, token=JUPYTER_TOKEN,
                             subprotocol=JupyterSubprotocol.V1 if v1 else JupyterSubprotocol.DEFAULT)
            for ch in ("shell", "iopub", "stdin", "hb", "control"):
                setattr(self, f"_{ch}_msg_queue", LoggedQueue(ch))
            send = self.session.send

            def logged_send(stream: Any, channel: str, msg: Any, *a: Any, **kw: Any) -> Any:
                t = time.time()
                out = send(stream, channel, msg, *a, **kw)
                log.add("sent", channel, out, t)
                return out

            self.session.send = logged_send

        def _on_message(self, s: Any, message: bytes) -> None:
            if not v1:
                super()._on_message(s, message)
                return
            channel, msg_list = deserialize_msg_from_ws_v1(message)
            msg = self.session.deserialize(msg_list)
            msg["channel"] = channel
            getattr(self, f"_{channel}_msg_queue").put_nowait(msg)
            self._message_received.set()

    return Client()


def _jupyter_rest(port: int, method: str, path: str, body: dict | None = None) -> Any:
    import urllib.request

    req = urllib.request.Request(
        f"http://{HOST}:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {JUPYTER_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        data = resp.read()
    return json.loads(data) if data else None


def _jupyter_session(port: int, kernel_id: str, v1: bool, log: JupyterLog) -> dict[str, float]:
    """The client's part; returns the sleep of each execute_request by msg_id."""
    c = jupyter_client(f"ws://{HOST}:{port}/api/kernels/{kernel_id}/channels", v1, log)
    sleeps: dict[str, float] = {}

    def settle(msg_id: str, reply_channel: str = "shell") -> None:
        log.rec.wait_for(lambda r: r["dir"] == "received" and r["parent_msg_id"] == msg_id
                         and r["channel"] == reply_channel and r["type"].endswith("_reply"), timeout=30)
        log.rec.wait_for(lambda r: r["channel"] == "iopub" and r["parent_msg_id"] == msg_id
                         and r.get("execution_state") == "idle", timeout=30)
        time.sleep(0.1)

    c.start_channels()
    try:
        settle(c.kernel_info())
        for sleep, code in JUPYTER_CELLS:
            msg_id = c.execute(code)
            sleeps[msg_id] = sleep
            settle(msg_id)
        settle(c.execute(JUPYTER_ERROR_CELL))
        settle(c.is_complete("for i in range(3):"))
        msg = c.session.msg("kernel_info_request")
        c.control_channel.send(msg)
        settle(msg["header"]["msg_id"], "control")
    finally:
        c.stop_channels()
        time.sleep(0.3)
    return sleeps


def _jupyter_requests(client_port: int, msgs: list[dict], sleeps: dict[str, float]) -> list[dict]:
    """Each *_request the client sent and the *_reply whose parent is it (correlation: its msg_id)."""
    replies = {m["parent_msg_id"]: m for m in msgs
               if m["sender"] == "server" and m["type"].endswith("_reply")}
    out = []
    for m in msgs:
        if m["sender"] == "client" and m["type"].endswith("_request"):
            resp = replies[m["msg_id"]]
            out.append(request(client_port, "client", m, resp, m["msg_id"], channel=m["channel"],
                               status=resp.get("status"), sleep_s=sleeps.get(m["msg_id"])))
    return out


def _jupyter(name: str, port: int, v1: bool, out_dir: Path, tmp: Path) -> dict:
    pcap = out_dir / f"{name}.pcap"
    log = JupyterLog()
    argv = [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}", f"--ServerApp.ip={HOST}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={JUPYTER_TOKEN}", "--no-browser",
            "--allow-root", f"--ServerApp.root_dir={tmp}"]
    with server(argv, "Control-C"):
        for _ in range(100):  # the message comes just before the server listens
            try:
                kernel = _jupyter_rest(port, "POST", "/api/kernels", {"name": "python3"})
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{name}: jupyter_server never answered on {port}")
        with tcpdump(pcap, f"tcp port {port}"):
            sleeps = _jupyter_session(port, kernel["id"], v1, log)
        _jupyter_rest(port, "DELETE", f"/api/kernels/{kernel['id']}")
    hs = tshark_handshakes(pcap, port)
    want = "v1.kernel.websocket.jupyter.org" if v1 else None
    if len(hs) != 1 or hs[0]["subprotocol"] != want:
        raise RuntimeError(f"{name}: tshark's handshakes {hs}, wanted one choosing {want}")
    client_port = hs[0]["client_port"]
    msgs = [
        {"client_port": client_port, "sender": "client" if r["dir"] == "sent" else "server",
         **{k: v for k, v in r.items() if k != "dir"}}
        for r in log.rec.records
    ]
    skew = link_ws_messages(name, pcap, port, msgs)
    framing = (
        "the v1.kernel.websocket.jupyter.org subprotocol (binary messages: offsets table, channel, "
        "header, parent header, metadata, content)" if v1 else
        "no subprotocol: the legacy JSON protocol (one text message per Jupyter message, with a "
        "channel key)"
    )
    return write_expected(
        name,
        out_dir,
        description=(
            f"jupyter_server {metadata.version('jupyter_server')} with an ipykernel "
            f"{metadata.version('ipykernel')} kernel started over REST (before the recording); "
            f"jupyter-kernel-client {metadata.version('jupyter-kernel-client')}'s KernelWebSocketClient "
            f"(websocket-client) on the kernel's channels WebSocket with {framing}: kernel_info_request, "
            f"three execute_requests sleeping {', '.join(str(s) for s, _ in JUPYTER_CELLS)} s (a result, a "
            "print, a result), one raising ZeroDivisionError (execute_reply status error, an iopub error), "
            "an is_complete_request, a kernel_info_request on the control channel; iopub status busy/idle "
            "around each; the client waits for each reply and idle before the next request"
        ),
        protocol="jupyter",
        versions=versions("jupyter_server", "ipykernel", "jupyter_client", "jupyter-kernel-client",
                          "websocket-client"),
        connections=[{"client_port": client_port, "server_port": port, "subprotocol": hs[0]["subprotocol"],
                      "subprotocol_requested": hs[0]["subprotocol_requested"]}],
        log_skew_ms=skew,
        messages=msgs,
        requests=_jupyter_requests(client_port, msgs, sleeps),
        notes=(
            "messages: the kernel client's log in order: sender client = a message it sent (t just "
            "before the send), server = one it received (t when decoded); type = header.msg_type, "
            "parent_msg_id = parent_header.msg_id, status / execution_state / ename / execution_count / "
            "name copied from the content when present. requests: each *_request and the *_reply whose "
            "parent is it, correlation_id = the request's msg_id, latency_ms between the two log times, "
            "sleep_s = how long the cell slept. jupyter_server logs no messages: no server log. "
            "jupyter-kernel-client 1.0.2 fails on every v1 message it receives (KeyError 'channel' in a "
            "debug log line), so the scenario's client subclass sets that key; the framing is the "
            "library's."
        ),
    )


@scenario
def _jupyter_v1(out_dir: Path, tmp: Path) -> dict:
    return _jupyter("jupyter_v1", 9371, True, out_dir, tmp)


@scenario
def _jupyter_json(out_dir: Path, tmp: Path) -> dict:
    return _jupyter("jupyter_json", 9372, False, out_dir, tmp)


# --------------------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(SCENARIOS))
        return
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(SCENARIOS):
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"app2-{name}-") as tmp:
            expected = SCENARIOS[name](args.out, Path(tmp))
        size = (args.out / f"{name}.pcap").stat().st_size
        print(f"{name}: {len(expected['messages'])} messages, {len(expected['requests'])} requests, "
              f"{size:,} bytes, {time.monotonic() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
