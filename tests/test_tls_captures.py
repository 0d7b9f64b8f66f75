"""TlsSession on the real wss:// captures of captures/ (python websockets, node ws, Chromium; TLS 1.3
and 1.2 suites, HRR, KeyUpdate, resumption, keys injected in pcapng, a wrong key log), their TCP
payloads reassembled by analyzer.packets/streams: the plaintext of every connection, byte for byte,
is what tshark decrypts with the same keys (`-z follow,tls,raw`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analyzer.capture import CaptureReader
from analyzer.events import StreamData, StreamEvent, StreamGap, StreamOpened
from analyzer.packets import PacketDecoder
from analyzer.streams import Reassembler
from analyzer.tls import KeyLog, PlainGap, ResumptionCache, TlsInfo, TlsSession

CAPTURES = Path(__file__).resolve().parent.parent / "captures"

#: (capture, key log or None for the keys inside the pcapng, the key log tshark is given)
CASES = [
    ("wss_tls13.pcap", "wss_tls13.keylog", "wss_tls13.keylog"),
    ("wss_tls12.pcap", "wss_tls12.keylog", "wss_tls12.keylog"),
    ("wss_hrr.pcap", "wss_hrr.keylog", "wss_hrr.keylog"),
    ("wss_keyupdate.pcap", "wss_keyupdate.keylog", "wss_keyupdate.keylog"),
    ("wss_node.pcap", "wss_node.keylog", "wss_node.keylog"),
    ("wss_chromium.pcap", "wss_chromium.keylog", "wss_chromium.keylog"),
    ("wss_injected.pcapng", None, None),
    ("wss_tls12_resumed.pcap", "wss_tls12_resumed.keylog", "wss_tls12_resumed.keylog"),
    # only the full handshakes' lines: the resumed sessions' master secrets come from the cache
    ("wss_tls12_resumed.pcap", "wss_tls12_resumed.first-only.keylog", "wss_tls12_resumed.keylog"),
]


class Conn:
    def __init__(self, session: TlsSession) -> None:
        self.session = session
        self.plain = [bytearray(), bytearray()]
        self.problems: list[tuple[str, str]] = []


def decrypt(capture: str, keylog: str | None, drop: frozenset[int] = frozenset()) -> list[Conn]:
    """Each connection's plaintext and problems (`drop`: capture records left out, as if lost)."""
    log = KeyLog()
    if keylog is not None:
        log.add_file(CAPTURES / keylog)
    reader = CaptureReader(CAPTURES / capture, on_secrets=log.add_text)
    decoder, reassembler, cache = PacketDecoder(), Reassembler(), ResumptionCache()
    conns: dict[int, Conn] = {}

    def handle(events: list[StreamEvent]) -> None:
        for ev in events:
            if isinstance(ev, StreamOpened):
                conns[ev.conn_id] = Conn(TlsSession(log, 0, cache))
                continue
            if not isinstance(ev, (StreamData, StreamGap)):
                continue
            conn = conns[ev.conn_id]
            s = conn.session
            out = (s.feed(ev.direction, ev.data, ev.record_no, ev.ts_ns) if isinstance(ev, StreamData)
                   else s.gap(ev.direction, ev.size, ev.record_no, ev.ts_ns))
            for item in out:
                if isinstance(item, PlainGap):
                    continue
                if len(item) == 2:
                    conn.problems.append((item[1].kind.value, item[1].detail))  # type: ignore[union-attr]
                else:
                    conn.plain[item[0]] += item[1]  # type: ignore[operator]

    for rec in reader:
        if rec.record_no in drop:
            continue
        seg = decoder.decode(rec)
        if seg is not None:
            handle(reassembler.feed(seg))
    handle(reassembler.finish())
    for conn in conns.values():
        conn.problems += [(p.kind.value, p.detail) for _, p in conn.session.finish(0, 0)]  # type: ignore[misc]
    return [conns[k] for k in sorted(conns)]


def tshark_plain(capture: str, keylog: str | None, streams: int) -> list[tuple[bytes, bytes]]:
    """(client, server) decrypted bytes of each TCP stream, by tshark's "follow,tls,raw"."""
    args = ["tshark", "-r", str(CAPTURES / capture), "-q"]
    if keylog is not None:
        args += ["-o", f"tls.keylog_file:{CAPTURES / keylog}"]
    for i in range(streams):
        args += ["-z", f"follow,tls,raw,{i}"]
    text = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    out = []
    for block in text.split("Follow: tls,raw")[1:]:
        sides = [bytearray(), bytearray()]
        for line in block.splitlines()[4:]:
            if line.startswith("====="):
                break
            sides[0 if line.startswith("\t") else 1] += bytes.fromhex(line.strip())
        if sides[1].startswith(b"GET ") or sides[0].startswith(b"HTTP/"):
            sides.reverse()             # (which node tshark indents varies: the client sends the GET)
        out.append((bytes(sides[0]), bytes(sides[1])))
    return out


def _present(capture: str, keylog: str | None) -> bool:
    return (CAPTURES / capture).exists() and (keylog is None or (CAPTURES / keylog).exists())


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is the reference")
@pytest.mark.parametrize(("capture", "keylog", "reference"), CASES)
def test_capture_plaintext_agrees_with_tshark(capture: str, keylog: str | None,
                                              reference: str | None) -> None:
    assert _present(capture, keylog), f"captures/{capture} (or its key log) is missing"
    conns = decrypt(capture, keylog)
    assert conns
    ours = [(bytes(c.plain[0]), bytes(c.plain[1])) for c in conns]
    assert sorted(ours) == sorted(tshark_plain(capture, reference, len(conns)))   # (streams numbered apart)
    upgraded = 0
    for conn in conns:
        info: TlsInfo = conn.session.info
        assert conn.problems == [] and info.decrypted and info.not_decrypted is None
        assert conn.plain[0].startswith(b"GET ") and conn.plain[1].startswith(b"HTTP/1.1 ")
        upgraded += conn.plain[1].startswith(b"HTTP/1.1 101 ")
        assert info.version in ("TLS 1.2", "TLS 1.3") and info.cipher and info.sni
    assert upgraded >= 1
    if "resumed" in capture:
        assert [c.session.info.resumed for c in conns].count(True) >= 1


def test_wrong_key_gives_problems_and_no_plaintext() -> None:
    assert _present("wss_wrong_key.pcap", "wss_wrong_key.keylog")
    conns = decrypt("wss_wrong_key.pcap", "wss_wrong_key.keylog")
    assert conns
    for conn in conns:
        assert conn.plain == [bytearray(), bytearray()]
        assert {kind for kind, _ in conn.problems} == {"tls-decrypt-failed"}
        assert conn.session.info.not_decrypted == "decryption failed (wrong key?)"


def test_without_keys_every_connection_says_why() -> None:
    conns = decrypt("wss_tls13.pcap", None)
    assert conns
    for conn in conns:
        assert conn.plain == [bytearray(), bytearray()]
        assert [kind for kind, _ in conn.problems] == ["tls-key-missing"]
        assert conn.session.info.not_decrypted == "no key for the client random"
        assert conn.session.info.records > 0


def _full_segments(capture: str) -> list[tuple[int, int]]:
    """(record number, sender 0/1) of the full-size (1,448-byte) TCP segments of a one-connection
    capture: the pieces of its large records."""
    decoder, out, client_port = PacketDecoder(), [], None
    for rec in CaptureReader(CAPTURES / capture):
        seg = decoder.decode(rec)
        if seg is None:
            continue
        if client_port is None:
            client_port = seg.sport                      # the SYN's sender
        if len(seg.payload) == 1448:
            out.append((rec.record_no, 0 if seg.sport == client_port else 1))
    return out


@pytest.mark.parametrize(("case", "pattern"), [
    # the second full packet of a client record (its header was read): exactly that record is lost
    ("client-middle", r"a gap of 1448 bytes inside a record of the client: 1 record lost"),
    # the first full packet of a server record (its header is lost): found again by the search
    ("server-head", r"the server resynchronised after \d+ bytes, 1 records lost"),
])
def test_lost_packets_in_a_real_capture(case: str, pattern: str) -> None:
    """wss_keyupdate.pcap with a TCP segment left out: the records after the gap decrypt again, and
    the plaintext is the whole capture's with one piece cut out."""
    segments = _full_segments("wss_keyupdate.pcap")
    side = 0 if case.startswith("client") else 1
    mine = [no for no, sender in segments if sender == side]
    drop = mine[1] if case == "client-middle" else mine[0]
    whole, = decrypt("wss_keyupdate.pcap", "wss_keyupdate.keylog")
    cut, = decrypt("wss_keyupdate.pcap", "wss_keyupdate.keylog", frozenset({drop}))
    (kind, detail), = cut.problems
    assert kind == "tls-gap" and re.fullmatch(pattern, detail), detail
    assert cut.plain[1 - side] == whole.plain[1 - side]
    full, got = bytes(whole.plain[side]), bytes(cut.plain[side])
    same = next(i for i in range(len(got)) if got[i] != full[i])
    assert same > 0 and full.endswith(got[same:]) and len(got) < len(full)
