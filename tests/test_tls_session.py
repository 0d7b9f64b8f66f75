"""session.py: TlsSession on the RFC 8448 §3 trace byte for byte and on conversations built with
analyzer.tls.protection.RecordEncryptor (tls_helpers.tls12/tls13): every suite family, HRR,
KeyUpdate, 0-RTT, resumption, missing/wrong keys, unsupported suites, gaps, bad lengths, alerts."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.events import Problem
from analyzer.protocol import ProblemKind
from analyzer.tls import KeyLog, PlainGap, ResumptionCache, TlsSession
from tests import tls_helpers as T

GET = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\n"
ANSWER = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"


class Run:
    """What a session gave for a flow: plaintext per direction, chunks, gaps and problems."""

    def __init__(self, session: TlsSession, out: list[object]) -> None:
        self.session = session
        self.info = session.info
        self.chunks = [o for o in out if not isinstance(o, PlainGap) and len(o) == 4]  # type: ignore[arg-type]
        self.gaps = [o for o in out if isinstance(o, PlainGap)]
        self.problems: list[tuple[int, Problem]] = [o for o in out if not isinstance(o, PlainGap)
                                                    and len(o) == 2]  # type: ignore[misc, arg-type]
        self.plain = [b"".join(c[1] for c in self.chunks if c[0] == d) for d in (0, 1)]  # type: ignore[index]

    def kinds(self) -> list[str]:
        return [p.kind.value for _, p in self.problems]


def keylog(text: str) -> KeyLog:
    log = KeyLog()
    log.add_text(text)
    return log


def run(flow: list[tuple[int, bytes]] | tuple[tuple[int, bytes], ...], text: str = "", *,
        resumption: ResumptionCache | None = None, split: str | int | None = None,
        session: TlsSession | None = None) -> Run:
    s = session or TlsSession(keylog(text), 0, resumption)
    out: list[object] = []
    for n, (d, data) in enumerate(flow, 1):
        if split == "bytes":
            pieces = [data[i:i + 1] for i in range(len(data))]
        elif isinstance(split, int):
            rng = random.Random(split * 1000 + n)
            cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1))) if len(data) > 1 else []
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        else:
            pieces = [data]
        for piece in pieces:
            out += s.feed(d, piece, n, 1000 * n)
    out += s.finish(len(flow) + 1, 0)
    return Run(s, out)


# --- RFC 8448 §3 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("split", [None, "bytes", 1, 2, 3])
def test_rfc8448_simple_1rtt(split: str | int | None) -> None:
    r = run(T.R8448_FLOW, T.r8448_keylog_text(), split=split)
    assert r.plain == [T.R8448_APP_PAYLOAD, T.R8448_APP_PAYLOAD]
    assert r.problems == []                               # close_notify after the data: normal
    # each plaintext carries the record number of the feed that completed its record
    assert [(c[0], c[2], c[3]) for c in r.chunks] == [(0, 6, 6000), (1, 7, 7000)]  # type: ignore[index]
    info = r.info
    assert (info.version, info.cipher, info.sni, info.alpn, info.alpn_offered) == (
        "TLS 1.3", "TLS_AES_128_GCM_SHA256", "server", None, None)
    assert info.decrypted and info.not_decrypted is None and not info.resumed
    assert info.records == 9


def test_rfc8448_all_at_once() -> None:
    s = TlsSession(keylog(T.r8448_keylog_text()), 0)
    client = b"".join(d for dr, d in T.R8448_FLOW if dr == 0)
    server = b"".join(d for dr, d in T.R8448_FLOW if dr == 1)
    out = s.feed(0, T.R8448_CH_REC, 1, 1) + s.feed(1, server, 2, 2)
    out += s.feed(0, client[len(T.R8448_CH_REC):], 3, 3)
    assert out == [(1, T.R8448_APP_PAYLOAD, 2, 2), (0, T.R8448_APP_PAYLOAD, 3, 3)]


def test_rfc8448_without_keys() -> None:
    r = run(T.R8448_FLOW)
    assert r.chunks == [] and r.kinds() == ["tls-key-missing"]
    assert "SERVER_HANDSHAKE_TRAFFIC_SECRET" in r.problems[0][1].detail
    assert T.R8448_CLIENT_RANDOM.hex() in r.problems[0][1].detail
    assert r.problems[0][1].record_no == 3                # the first encrypted record
    assert not r.info.decrypted and r.info.not_decrypted == "no key for the client random"
    assert r.info.version == "TLS 1.3" and r.info.records == 9


def test_rfc8448_wrong_server_key() -> None:
    text = T.r8448_keylog_text().replace(T.R8448_S_AP.hex(), bytes(32).hex())
    r = run(T.R8448_FLOW, text)
    assert r.plain == [T.R8448_APP_PAYLOAD, b""]          # nothing unauthenticated from the server
    (direction, problem), = r.problems
    assert direction == 1 and problem.kind is ProblemKind.TLS_DECRYPT_FAILED
    assert problem.detail.startswith("record 3 of the server (TLS sequence number 0) did not decrypt")
    assert r.info.not_decrypted == "decryption failed (wrong key?)"


def test_rfc8448_client_dir_1() -> None:
    """The same trace with the directions swapped (the connection's client is direction 1)."""
    flow = [(1 - d, data) for d, data in T.R8448_FLOW]
    s = TlsSession(keylog(T.r8448_keylog_text()), 1)
    r = run(flow, session=s)
    assert r.plain == [T.R8448_APP_PAYLOAD, T.R8448_APP_PAYLOAD] and r.problems == []


# --- TLS 1.3 built ------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [0x1301, 0x1302, 0x1303, 0x1304, 0x1305])
def test_tls13_each_aead(code: int) -> None:
    c = T.tls13(code, alpn=b"http/1.1")
    c.app(0, GET)
    c.app(1, ANSWER)
    c.app(0, b"\x81\x05hello")
    r = run(c.flow, c.keylog, split=code)
    assert r.plain == [GET + b"\x81\x05hello", ANSWER] and r.problems == []
    assert r.info.alpn == "http/1.1" and r.info.alpn_offered == "h2,http/1.1"
    assert r.info.cipher is not None and r.info.cipher.startswith("TLS_") and r.info.version == "TLS 1.3"


def test_tls13_psk_resumption() -> None:
    c = T.tls13(psk=True)
    c.app(0, GET)
    r = run(c.flow, c.keylog)
    assert r.plain == [GET, b""] and r.info.resumed
    assert not run(T.tls13().flow, c.keylog).info.resumed


def test_tls13_hello_retry_request() -> None:
    c = T.tls13(hrr=True)
    c.app(0, GET)
    c.app(1, ANSWER)
    r = run(c.flow, c.keylog)
    assert r.plain == [GET, ANSWER] and r.problems == []


def test_tls13_key_update() -> None:
    from analyzer.tls.keys import tls13_keys, tls13_next_secret
    from analyzer.tls.protection import RecordEncryptor
    from analyzer.tls.suites import SUITES

    suite = SUITES[0x1302]
    c = T.tls13(0x1302)
    c.app(0, GET)
    c.send(0, 22, T.key_update(request=True))
    nxt = tls13_next_secret(suite, c.secrets["CLIENT_TRAFFIC_SECRET_0"])  # type: ignore[attr-defined]
    c.enc[0] = RecordEncryptor(suite, tls13_keys(suite, nxt), version=0x0304)
    c.app(0, b"after update")
    c.app(1, ANSWER)
    r = run(c.flow, c.keylog, split="bytes")
    assert r.plain == [GET + b"after update", ANSWER] and r.problems == []


def test_tls13_padding_and_records_in_one_feed() -> None:
    c = T.tls13()
    for i in range(20):
        c.send(1, 23, b"m%d;" % i, padding=i)
    s = TlsSession(keylog(c.keylog), 0)
    out = []
    for d, data in c.flow[:-20]:
        out += s.feed(d, data, 1, 1)
    out += s.feed(1, b"".join(data for _, data in c.flow[-20:]), 2, 2)
    assert out == [(1, b"".join(b"m%d;" % i for i in range(20)), 2, 2)]   # one chunk for the feed


def test_tls13_early_data() -> None:
    c = T.tls13(early=GET)
    c.app(1, ANSWER)
    r = run(c.flow, c.keylog)
    assert r.plain == [GET, ANSWER] and r.problems == []
    c = T.tls13(early=GET, early_in_log=False)
    c.app(0, b"later")
    c.app(1, ANSWER)
    r = run(c.flow, c.keylog)
    assert r.plain == [b"later", ANSWER]
    assert r.kinds() == ["tls-key-missing"] and "CLIENT_EARLY_TRAFFIC_SECRET" in r.problems[0][1].detail


def test_tls13_early_data_rejected() -> None:
    """The server's EncryptedExtensions has no early_data: the client goes on under its handshake
    keys without EndOfEarlyData, and sends again what the server did not take (RFC 8446 §4.2.10):
    the rejected 0-RTT record is decrypted but not passed on, so the stream holds the data once."""
    c = T.tls13(early=GET, early_rejected=True)
    c.app(0, GET)
    c.app(1, ANSWER)
    r = run(c.flow, c.keylog, split="bytes")
    assert r.plain == [GET, ANSWER] and r.problems == []


def test_tls13_missing_application_secret() -> None:
    c = T.tls13()
    c.app(0, GET)
    c.app(1, ANSWER)
    text = "".join(line for line in c.keylog.splitlines(True) if not line.startswith("SERVER_TRAFFIC"))
    r = run(c.flow, text)
    assert r.plain == [GET, b""]
    assert r.kinds() == ["tls-key-missing"] and "SERVER_TRAFFIC_SECRET_0" in r.problems[0][1].detail


# --- TLS 1.2 built ------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "etm"), [
    (0xC02F, False),     # ECDHE-RSA AES-128-GCM
    (0xC030, False),     # ECDHE-RSA AES-256-GCM (SHA-384 PRF)
    (0xCCA8, False),     # ECDHE-RSA ChaCha20-Poly1305
    (0xC013, True),      # ECDHE-RSA AES-128-CBC-SHA, encrypt-then-MAC
    (0xC013, False),     # the same, MAC-then-encrypt
    (0xC028, False),     # ECDHE-RSA AES-256-CBC-SHA384
    (0xC0AC, False),     # ECDHE-ECDSA AES-128-CCM
    (0xC0AE, False),     # ECDHE-ECDSA AES-128-CCM-8
])
def test_tls12_suites(code: int, etm: bool) -> None:
    c = T.tls12(code, etm=etm)
    c.app(0, GET)
    c.app(1, ANSWER)
    c.app(1, b"\x81\x02hi")
    c.send(0, 21, T.alert(1, 0))                          # close_notify: no problem
    r = run(c.flow, c.keylog, split=code)
    assert r.plain == [GET, ANSWER + b"\x81\x02hi"] and r.problems == []
    assert r.info.version == "TLS 1.2" and r.info.decrypted and not r.info.resumed


@pytest.mark.parametrize("version", [0x0301, 0x0302])
def test_tls10_tls11_cbc(version: int) -> None:
    c = T.tls12(0xC013, version=version)                  # ECDHE-RSA AES-128-CBC-SHA (TLS 1.0: chained IV)
    c.app(0, GET)
    c.app(0, b"second")
    c.app(1, ANSWER)
    r = run(c.flow, c.keylog, split="bytes")
    assert r.plain == [GET + b"second", ANSWER] and r.problems == []
    assert r.info.version == ("TLS 1.0" if version == 0x0301 else "TLS 1.1")


def test_tls12_big_certificate_is_skipped() -> None:
    c = T.tls12()
    big = T.certificate(300 * 1024)
    # the server's first flight: ServerHello + a 300 KiB Certificate over many records, then the rest
    sh_record = c.flow[1][1]
    body = sh_record[5:]
    flight = body[:body.index(b"\x0b\x00\x02\xbc")] + big + T.handshake(14, b"")
    records = b"".join(T.record(22, flight[i:i + 16384]) for i in range(0, len(flight), 16384))
    c.flow[1] = (1, records)
    c.app(0, GET)
    r = run(c.flow, c.keylog)
    assert r.plain == [GET, b""] and r.problems == []


def test_tls12_resumption_by_session_id_and_ticket() -> None:
    cache = ResumptionCache()
    sid = b"\x77" * 32
    full = T.tls12(session_id=sid, ticket=b"", new_ticket=b"TICKET-1")
    full.app(0, GET)
    assert run(full.flow, full.keylog, resumption=cache).plain[0] == GET
    assert len(cache) == 2
    # by session id: the key log has no line for the new client random
    again = T.tls12(session_id=sid, resume=True, client_random=b"\xc3" * 32, key_log=False)
    again.app(0, b"resumed by id")
    r = run(again.flow, "", resumption=cache)
    assert r.plain == [b"resumed by id", b""] and r.problems == [] and r.info.resumed
    # by ticket (the server answers with an empty session id)
    by_ticket = T.tls12(ticket=b"TICKET-1", resume=True, client_random=b"\xc4" * 32, key_log=False)
    by_ticket.app(1, b"resumed by ticket")
    r = run(by_ticket.flow, "", resumption=cache)
    assert r.plain == [b"", b"resumed by ticket"] and r.info.resumed
    # without the cache: the master secret is missing
    r = run(by_ticket.flow, "")
    assert r.chunks == [] and r.kinds() == ["tls-key-missing"] and "CLIENT_RANDOM" in r.problems[0][1].detail


def test_tls12_renegotiation() -> None:
    c = T.tls12()
    c.app(0, GET)
    c.send(1, 22, T.handshake(0, b""))                    # HelloRequest
    c.send(0, 22, T.client_hello(b"\x99" * 32, versions=None))
    c.send(0, 20, b"\x01")
    c.send(0, 23, b"after renegotiation")                 # (would be under the new keys)
    r = run(c.flow, c.keylog)
    assert r.plain == [GET, b""]
    assert r.kinds() == ["tls-renegotiation"] and "renegotiation" in r.problems[0][1].detail
    assert r.info.not_decrypted == "renegotiation"


# --- what cannot be decrypted -------------------------------------------------------------------

def test_unsupported_suite() -> None:
    c = T.Conversation()
    c.plain(0, T.record(22, T.client_hello(c.client_random, versions=None)))
    sh = T.server_hello(c.server_random, suite=0x0005, version=None)
    c.plain(1, T.record(22, sh + T.handshake(14, b"")))
    c.plain(0, T.CCS + T.record(22, b"\x00" * 40))
    c.plain(1, T.CCS + T.record(22, b"\x00" * 40) + T.record(23, b"\x00" * 100))
    r = run(c.flow, T.keylog_line("CLIENT_RANDOM", c.client_random, b"\x01" * 48))
    assert r.chunks == [] and r.kinds() == ["tls-unsupported-cipher"]
    assert "TLS_RSA_WITH_RC4_128_SHA" in r.problems[0][1].detail
    assert r.info.not_decrypted == "unsupported cipher suite TLS_RSA_WITH_RC4_128_SHA"
    assert r.info.cipher == "TLS_RSA_WITH_RC4_128_SHA"


def test_mid_stream() -> None:
    flow = [(0, T.record(23, b"\x11" * 40)), (1, T.record(23, b"\x22" * 90)), (0, T.record(23, b"\x33" * 40))]
    r = run(flow, T.r8448_keylog_text())
    assert r.chunks == [] and r.kinds() == ["tls-key-missing"]
    assert "no TLS handshake seen" in r.problems[0][1].detail
    assert r.info.not_decrypted == "no handshake seen" and r.info.records == 3


def test_malformed_client_hello() -> None:
    hello = T.client_hello()
    flow = [(0, T.record(22, T.handshake(1, hello[4:60]))), (1, T.record(22, T.server_hello())),
            (1, T.record(23, b"\x01" * 40)), (0, T.record(23, b"\x02" * 40))]
    r = run(flow, T.r8448_keylog_text())
    assert r.chunks == [] and r.kinds() == ["tls-malformed"]
    assert r.problems[0][1].detail.startswith("ClientHello: expected=")
    assert r.info.not_decrypted == "malformed ClientHello" and r.info.records == 4


def test_record_too_long_gives_up_that_direction() -> None:
    c = T.tls13()
    c.app(1, ANSWER)
    c.plain(0, b"\x17\x03\x03\x48\x01" + b"\x00" * 10)    # 18,433 > 2^14 + 2048
    c.app(0, GET)
    r = run(c.flow, c.keylog)
    assert r.plain == [b"", ANSWER]
    assert r.kinds() == ["tls-malformed"] and "found=18433" in r.problems[0][1].detail
    more = r.session.feed(0, T.R8448_C_APP_REC, 99, 99)
    assert more == []                                       # that direction is given up, silently


def test_fatal_alert_during_handshake() -> None:
    c = T.Conversation()
    c.plain(0, T.record(22, T.client_hello(c.client_random)))
    c.plain(1, T.record(21, T.alert(2, 40)))
    r = run(c.flow)
    (d, problem), = r.problems
    assert d == 1 and problem.kind is ProblemKind.TLS_ALERT
    assert problem.detail == "fatal alert handshake_failure (40) from the server during the handshake"
    assert r.info.not_decrypted == "no application data"


def test_fatal_alert_after_data_encrypted() -> None:
    c = T.tls13()
    c.app(0, GET)
    c.send(1, 21, T.alert(2, 80))
    r = run(c.flow, c.keylog)
    assert r.plain == [GET, b""]
    assert [(d, p.detail) for d, p in r.problems] == [(1, "fatal alert internal_error (80) from the server")]


def test_finish_inside_a_record() -> None:
    c = T.tls13()
    c.app(0, GET)
    flow = [*c.flow[:-1], (0, c.flow[-1][1][:-3])]
    r = run(flow, c.keylog)
    assert r.kinds() == ["tls-record-cut"] and "ends inside a record" in r.problems[0][1].detail


# --- gaps -----------------------------------------------------------------------------------------

def _app_stream(n: int = 40) -> tuple[T.Conversation, int, list[bytes]]:
    c = T.tls13(0x1303)
    handshake_items = len(c.flow)
    messages = [b"message %03d " % i + b"x" * (i * 7 % 50) for i in range(n)]
    for m in messages:
        c.app(1, m)
    return c, handshake_items, messages


def _feed_with_gap(c: T.Conversation, start: int, cut_from: int, cut_to: int,
                   text: str) -> tuple[Run, list[object]]:
    s = TlsSession(keylog(text), 0)
    out: list[object] = []
    for d, data in c.flow[:start]:
        out += s.feed(d, data, 1, 1)
    stream = b"".join(data for _, data in c.flow[start:])
    out += s.feed(1, stream[:cut_from], 2, 2)
    out += s.gap(1, cut_to - cut_from, 3, 3)
    for i in range(cut_to, len(stream), 100):
        out += s.feed(1, stream[i:i + 100], 4, 4)
    out += s.finish(5, 5)
    return Run(s, out), out


def test_gap_across_records_resynchronises() -> None:
    c, start, messages = _app_stream()
    sizes = [len(data) for _, data in c.flow[start:]]
    cut_from = sum(sizes[:10]) + 7                          # inside record 10 ...
    cut_to = sum(sizes[:14]) + 3                            # ... to inside record 14
    r, out = _feed_with_gap(c, start, cut_from, cut_to, c.keylog)
    assert r.gaps == [PlainGap(1, 3, 3)]
    assert r.plain[1] == b"".join(messages[:10]) + b"".join(messages[15:])
    (_, problem), = r.problems
    lost = cut_to - sum(sizes[:10]) + (sum(sizes[:15]) - cut_to)
    assert problem.kind is ProblemKind.TLS_GAP
    assert problem.detail == f"the server resynchronised after {lost} bytes, 5 records lost"
    # the PlainGap comes before any plaintext after the gap
    assert out.index(PlainGap(1, 3, 3)) < next(i for i, o in enumerate(out) if isinstance(o, tuple)
                                                and len(o) == 4 and o[2] == 4)


def test_two_gaps_before_resynchronising() -> None:
    c, start, messages = _app_stream()
    sizes = [len(data) for _, data in c.flow[start:]]
    stream = b"".join(data for _, data in c.flow[start:])
    s = TlsSession(keylog(c.keylog), 0)
    out: list[object] = []
    for d, data in c.flow[:start]:
        out += s.feed(d, data, 1, 1)
    a, b = sum(sizes[:10]) + 7, sum(sizes[:12]) + 5          # lost: 10.. up to 12 ...
    out += s.feed(1, stream[:a], 2, 2) + s.gap(1, b - a, 3, 3)
    out += s.feed(1, stream[b:b + 20], 4, 4)                  # 20 bytes inside record 12
    cut = sum(sizes[:16]) + 1                                 # ... and 12..15 again after a second gap
    out += s.gap(1, cut - b - 20, 5, 5) + s.feed(1, stream[cut:], 6, 6)
    r = Run(s, out)
    assert r.plain[1] == b"".join(messages[:10]) + b"".join(messages[17:])
    assert [p.detail for _, p in r.problems] == [
        f"the server resynchronised after {sum(sizes[10:17])} bytes, 7 records lost"]


def test_gap_inside_one_record() -> None:
    c, start, messages = _app_stream()
    sizes = [len(data) for _, data in c.flow[start:]]
    cut_from = sum(sizes[:5]) + 10
    r, _ = _feed_with_gap(c, start, cut_from, cut_from + 8, c.keylog)
    assert r.plain[1] == b"".join(messages[:5]) + b"".join(messages[6:])
    assert [p.detail for _, p in r.problems] == [
        "a gap of 8 bytes inside a record of the server: 1 record lost"]


def test_gap_without_keys_resyncs_framing() -> None:
    c, start, _ = _app_stream()
    sizes = [len(data) for _, data in c.flow[start:]]
    r, _ = _feed_with_gap(c, start, sum(sizes[:3]) + 1, sum(sizes[:6]) + 2, "")
    assert r.chunks == [] and "tls-gap" in r.kinds()
    assert r.info.records == start + 40 - 4 and r.info.not_decrypted == "no key for the client random"


def test_gap_then_garbage_cannot_resynchronise() -> None:
    c, start, _ = _app_stream(5)
    s = TlsSession(keylog(c.keylog), 0)
    for d, data in c.flow[:start]:
        s.feed(d, data, 1, 1)
    out = s.gap(1, 1000, 2, 2)
    for i in range(80):
        out += s.feed(1, bytes([i]) * 1024, 3, 3)
    problems = [p for o in out if isinstance(o, tuple) and len(o) == 2 for p in [o[1]]]
    assert [p.detail for p in problems] == [  # type: ignore[union-attr]
        "could not resynchronise the server after a gap: its later records are not read"]
    assert s.feed(1, c.wire(1)[-200:], 4, 4) == []


def test_gap_during_handshake_stops_decryption() -> None:
    c = T.tls13()
    c.app(1, ANSWER)
    s = TlsSession(keylog(c.keylog), 0)
    out: list[object] = []
    out += s.feed(0, c.flow[0][1], 1, 1)
    out += s.feed(1, c.flow[1][1] + c.flow[2][1], 2, 2)
    flight = c.flow[3][1]
    out += s.feed(1, flight[:50], 3, 3)
    out += s.gap(1, len(flight) - 50, 4, 4)
    for d, data in c.flow[4:]:
        out += s.feed(d, data, 5, 5)
    r = Run(s, out)
    assert r.plain[1] == b"" and "tls-gap" in r.kinds()
    assert r.info.not_decrypted == "gap in the TLS stream"


# --- never raises ---------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=200), st.integers(-1, 3)), max_size=12),
       st.booleans())
def test_garbage_never_raises(items: list[tuple[int, bytes, int]], prefix: bool) -> None:
    s = TlsSession(keylog(T.r8448_keylog_text()), 0)
    if prefix:
        s.feed(0, T.R8448_CH_REC, 1, 1)
        s.feed(1, T.R8448_SH_REC, 1, 1)
    for d, data, gap in items:
        out = s.gap(d, gap * 50, 2, 2) if gap >= 0 and not data else s.feed(d, data, 2, 2)
        for o in out:
            assert isinstance(o, (tuple, PlainGap))
    s.finish(3, 3)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 8), st.integers(0, 700), st.integers(0, 255))
def test_flipped_byte_never_passes_unauthenticated_bytes(item: int, offset: int, xor: int) -> None:
    flow = list(T.R8448_FLOW)
    d, data = flow[item]
    if xor and offset < len(data):
        data = data[:offset] + bytes([data[offset] ^ xor]) + data[offset + 1:]
    flow[item] = (d, data)
    r = run(flow, T.r8448_keylog_text())
    for plain in r.plain:
        assert plain in (b"", T.R8448_APP_PAYLOAD)


# --- memory ---------------------------------------------------------------------------------------

def test_memory_stays_bounded_per_direction() -> None:
    c = T.Conversation()
    s = TlsSession(keylog(""), 0)
    s.feed(0, T.record(22, T.client_hello(c.client_random, versions=None)), 1, 1)
    s.feed(1, T.record(22, T.server_hello(c.server_random, suite=0xC02F, version=None)), 2, 2)
    # a Certificate that says 16 MiB, carried by 1,000 full records
    body = T.handshake(11, b"")[:1] + ((16 << 20) - 1).to_bytes(3, "big") + b"\x00" * 16380
    side = s._sides[1]
    for i in range(1000):
        s.feed(1, T.record(22, body if i == 0 else b"\x00" * 16384), 3, 3)
        assert len(side.hs._buf) <= 16384 and side.reader.buffered == 0
    # one record's header then a trickle: only that record is held
    s.feed(1, b"\x16\x03\x03\x48\x00", 4, 4)
    for _ in range(100):
        s.feed(1, b"\x00" * 100, 4, 4)
    assert side.reader.buffered == 5 + 10000
    # after a gap, at most the search window is held before the direction is given up
    s.gap(1, 20000, 5, 5)                                  # (past the end of the record being read)
    out = []
    for _ in range(200):
        out += s.feed(1, b"\x00" * 1000, 6, 6)
        assert side.resync is None or len(side.resync.buf) <= 1002
    assert [o[1].kind for o in out if len(o) == 2] == [ProblemKind.TLS_GAP]  # type: ignore[union-attr, misc]
    assert s.info.records == 1002


_CBC = T.tls12(0xC013)
_CBC.app(0, GET)
_CBC.app(1, ANSWER)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(_CBC.flow) - 1), st.integers(0, 400), st.integers(1, 255))
def test_tls12_cbc_flipped_byte_never_passes_unauthenticated_bytes(item: int, offset: int, xor: int) -> None:
    flow = list(_CBC.flow)
    d, data = flow[item]
    if offset < len(data):
        data = data[:offset] + bytes([data[offset] ^ xor]) + data[offset + 1:]
    flow[item] = (d, data)
    r = run(flow, _CBC.keylog)
    assert r.plain[0] in (b"", GET) and r.plain[1] in (b"", ANSWER)


def _mutable_conversations() -> list[T.Conversation]:
    out = []
    for c in (T.tls13(0x1301, early=b"E"), T.tls13(hrr=True), T.tls12(0xC013, etm=True),
              T.tls12(resume=True, session_id=b"s" * 32), T.tls13(0x1302)):
        c.app(0, b"GET x")
        c.app(1, b"HTTP/1.1 101")
        out.append(c)
    return out


_MUTABLE = _mutable_conversations()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_MUTABLE) - 1), st.integers(0, 1), st.integers(0, 4),
       st.randoms(use_true_random=False))
def test_mutated_conversations(which: int, client_dir: int, op: int, rng: random.Random) -> None:
    """Dropped, swapped, flipped or misdirected records and gaps anywhere: the epochs move only
    along their table (IllegalEpoch would escape), and only authenticated plaintext comes out."""
    c = _MUTABLE[which]
    flow = list(c.flow)
    i, j = rng.randrange(len(flow)), rng.randrange(len(flow))
    d, data = flow[i]
    if op == 0:
        del flow[i]
    elif op == 1:
        flow[i], flow[j] = flow[j], flow[i]
    elif op == 2 and data:
        k = rng.randrange(len(data))
        flow[i] = (d, data[:k] + bytes([data[k] ^ rng.randrange(1, 256)]) + data[k + 1:])
    elif op == 3:
        flow[i] = (1 - d, data)
    s = TlsSession(keylog(c.keylog), client_dir)
    allowed = (b"EGET x", b"HTTP/1.1 101")
    for d, data in flow:
        if rng.random() < 0.1:
            s.gap(d, rng.choice((-1, 0, 5, 100, 3000)), 1, 1)
        cut = rng.randrange(len(data) + 1)
        for o in s.feed(d, data[:cut], 1, 1) + s.feed(d, data[cut:], 1, 1):
            if len(o) == 4:
                assert any(o[1] in a for a in allowed), o  # type: ignore[misc]
    s.finish(2, 2)
