"""The recorded capture corpus against the analyzer: every captures/*.expected.json, written by
captures/make_captures.py from what the sending programs logged, must be what analyzer.analyze() finds.

Connections are matched by client port and, for WebSockets over HTTP/2 (RFC 8441: several on one TCP
connection), h2_stream_id; messages are compared per connection and sender, in order (type, size,
sha256 of the whole payload); frames (where tshark could list them) row by row.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pytest

from tests.capture_corpus import CAPTURES, EXPECTED, analyze_kwargs, keylog_paths, load_expected

FRAME_KEYS = ("frame_no", "sender", "opcode", "fin", "rsv1", "masked", "payload_len", "close_code")


@functools.cache  # one analysis per capture for all three tests (the corpus is ~4 MB)
def analysis(name: str):
    """analyzer.analyze(capture, payloads=True, **analyze_options), key logs found in captures/."""
    import analyzer

    exp = load_expected(CAPTURES / name)
    return analyzer.analyze(str(CAPTURES / exp["capture"]), payloads=True, **analyze_kwargs(exp))


def _isna(v) -> bool:
    try:
        import pandas as pd

        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def norm(v):
    """Turn a DataFrame cell into a plain Python value comparable with JSON (None, bool, int, str)."""
    if _isna(v):
        return None
    if hasattr(v, "item"):  # numpy / pandas scalars
        v = v.item()
    return v


def same(expected, actual, key: str = "") -> bool:
    actual = norm(actual)
    if key == "compression" and isinstance(expected, bool):
        # the expected files say whether compression was negotiated; the analyzer may name it
        # ("permessage-deflate") instead of a bool: any non-null, non-False value means yes
        return (actual is not None and actual is not False and actual != "") == expected
    if key.startswith("close_reason") and expected == "":
        # a close frame with a code and no reason text: "" and null are the same fact
        return actual in (None, "")
    if expected is None:
        return actual is None
    if isinstance(expected, bool):
        return actual is not None and bool(actual) == expected
    if isinstance(expected, int):
        return actual is not None and not isinstance(actual, str) and int(actual) == expected
    return actual == expected


def conn_key(row) -> tuple[int, int | None]:
    """A connection's key in the expected files: (client_port, h2_stream_id), the stream None when the
    connection is not a WebSocket over HTTP/2."""
    sid = norm(row.get("h2_stream_id"))
    return int(norm(row["client_port"])), None if sid is None else int(sid)


def key_of_conn(a) -> dict:
    """conn_id -> (client_port, h2_stream_id), from the analysis' connections table."""
    return {norm(r["conn_id"]): conn_key(r) for r in a.connections.to_dict("records")}


def port_of_conn(a) -> dict:
    """conn_id -> client_port, from the analysis' connections table."""
    return {cid: key[0] for cid, key in key_of_conn(a).items()}


def ids(paths: list[Path]) -> list[str]:
    return [p.name.split(".")[0] for p in paths]


def test_corpus_is_present() -> None:
    """The corpus exists and every expected file names a capture that is there."""
    assert len(EXPECTED) >= 20
    for p in EXPECTED:
        exp = load_expected(p)
        assert (CAPTURES / exp["capture"]).is_file(), exp["capture"]
        assert exp["connections"], p.name
        if exp["tshark_dissects"]:
            assert exp["frames"], p.name
        else:  # frames only from another reference, which says what it is (wss_tls_gap)
            assert exp["tshark_notes"], p.name
            assert ("frames" in exp) == ("frames_source" in exp), p.name
        for keylog in keylog_paths(exp):
            assert keylog.is_file(), keylog
        if exp.get("h2"):  # every WebSocket stream says so, and is keyed by its stream id
            ws = [c for c in exp["connections"] if "http_status" in c]
            assert ws and all(c["transport"] in ("h2", "h2c") and c["h2_stream_id"] for c in ws), p.name
            # a TLS connection without a WebSocket stream (Chromium's spare one) is a TLS row
            assert all(c["transport"] == "tls" for c in exp["connections"] if c not in ws), p.name
            keys = [conn_key(c) for c in exp["connections"]]
            assert len(keys) == len(set(keys)), p.name
            assert {(d["client_port"], d["h2_stream_id"]) for d in exp["h2_data"]} == {
                conn_key(c) for c in ws if c["handshake_ok"]
            }, p.name
        elif exp.get("tls"):
            assert all(c["transport"] == "tls" for c in exp["connections"]), p.name


def test_corpus_is_small() -> None:
    total = sum(f.stat().st_size for f in CAPTURES.iterdir() if f.is_file())
    assert total < 20 * 1024 * 1024


@pytest.mark.parametrize("exp_path", EXPECTED, ids=ids(EXPECTED))
def test_connections(exp_path: Path) -> None:
    exp = load_expected(exp_path)
    a = analysis(exp_path.name)
    rows = {conn_key(r): r for r in a.connections.to_dict("records")}
    assert len(rows) == len(a.connections), "one row per (client port, HTTP/2 stream)"
    want_keys = sorted((conn_key(c) for c in exp["connections"]), key=str)
    assert sorted(rows, key=str) == want_keys, "connections found (by client port and HTTP/2 stream)"
    bad = []
    for conn in exp["connections"]:
        row = rows[conn_key(conn)]
        for key, want in conn.items():
            if key not in row:
                bad.append(f"{conn['client_port']}: column {key} missing")
            elif not same(want, row[key], key):
                bad.append(f"{conn['client_port']}: {key} expected {want!r}, analyzer {norm(row[key])!r}")
    assert not bad, "\n".join(bad)


def _payload_sha(v) -> str | None:
    v = norm(v)
    if v is None:
        return None
    if isinstance(v, str):
        v = v.encode("utf-8")
    return hashlib.sha256(bytes(v)).hexdigest()


@pytest.mark.parametrize("exp_path", EXPECTED, ids=ids(EXPECTED))
def test_messages(exp_path: Path) -> None:
    exp = load_expected(exp_path)
    a = analysis(exp_path.name)
    keys = key_of_conn(a)
    got: dict[tuple, list[tuple]] = {}
    for r in a.messages.to_dict("records"):
        key = (*keys[norm(r["conn_id"])], r["sender"])
        got.setdefault(key, []).append((r["type"], int(norm(r["size"])), _payload_sha(r["payload"])))
    want: dict[tuple, list[tuple]] = {}
    for m in exp["messages"]:
        key = (m["client_port"], m.get("h2_stream_id"), m["sender"])
        want.setdefault(key, []).append((m["type"], m["size"], m["sha256"]))
    assert sorted(got, key=str) == sorted(want, key=str), "connections/senders with messages"
    for key, msgs in want.items():
        assert got[key] == msgs, f"messages of client port {key[0]} (HTTP/2 stream {key[1]}), {key[2]}"


H2 = [p for p in EXPECTED if load_expected(p).get("h2")]


@pytest.mark.parametrize("exp_path", H2, ids=ids(H2))
def test_h2_streams(exp_path: Path) -> None:
    """WebSockets over HTTP/2: the streams of one TCP connection share its tcp_id, and each stream's
    WebSocket frames (headers and payloads) add up, per direction, to the HTTP/2 DATA bytes tshark
    counted on that stream (h2_data): no byte of a stream is lost, doubled or given to another."""
    exp = load_expected(exp_path)
    a = analysis(exp_path.name)
    rows = a.connections.to_dict("records")
    tcp_ids: dict[int, set] = {}
    for r in rows:
        tcp_ids.setdefault(conn_key(r)[0], set()).add(norm(r["tcp_id"]))
    assert all(len(v) == 1 for v in tcp_ids.values()), f"tcp_id per client port: {tcp_ids}"
    keys = key_of_conn(a)
    got: dict[tuple, int] = {}
    for r in a.frames.to_dict("records"):
        key = (*keys[norm(r["conn_id"])], r["sender"])
        got[key] = got.get(key, 0) + int(norm(r["header_len"])) + int(norm(r["payload_len"]))
    for d in exp["h2_data"]:
        for sender in ("client", "server"):
            key = (d["client_port"], d["h2_stream_id"], sender)
            assert got.get(key, 0) == d[f"{sender}_bytes"], f"WebSocket bytes of {key}"


FRAMED = [p for p in EXPECTED if "frames" in load_expected(p)]


@pytest.mark.parametrize("exp_path", FRAMED, ids=ids(FRAMED))
def test_frames(exp_path: Path) -> None:
    exp = load_expected(exp_path)
    a = analysis(exp_path.name)
    ports = port_of_conn(a)
    got = [
        (ports[norm(r["conn_id"])], *(norm(r[k]) for k in FRAME_KEYS)) for r in a.frames.to_dict("records")
    ]
    got = [
        (p, fn, s, int(op), bool(fin), bool(rsv1), bool(m), int(n), None if c is None else int(c))
        for p, fn, s, op, fin, rsv1, m, n, c in got
    ]
    want = [(f["client_port"], *(f[k] for k in FRAME_KEYS)) for f in exp["frames"]]
    assert len(got) == len(want), "number of frames"
    if "frames_source" in exp:
        # frames from a reference made without the gap (wss_tls_gap): the bytes after a gap may be
        # attributed to a later packet (the one that made them deliverable, or that let the decoder
        # resynchronise), never to an earlier one; the frames are the same per connection and sender,
        # in order
        by_sender = functools.partial(sorted, key=lambda f: (f[0], f[2]))  # stable: order kept
        for g, w in zip(by_sender(got), by_sender(want), strict=True):
            assert g[1] >= w[1], f"frame {w} attributed to the earlier packet {g[1]}"
            assert (g[0], *g[2:]) == (w[0], *w[2:]), f"frame (client_port, {', '.join(FRAME_KEYS)})"
        return
    for g, w in zip(got, want, strict=True):
        assert g == w, f"frame (client_port, {', '.join(FRAME_KEYS)})"


PROBLEMS = [p for p in EXPECTED if load_expected(p).get("problems")]


@pytest.mark.parametrize("exp_path", PROBLEMS, ids=ids(PROBLEMS))
def test_problems(exp_path: Path) -> None:
    """Each (client port, kind) an expected file lists is among the analyzer's problem rows."""
    exp = load_expected(exp_path)
    a = analysis(exp_path.name)
    ports = port_of_conn(a)
    got = {
        (ports.get(norm(cid)), kind)
        for cid, kind in zip(a.problems["conn_id"], a.problems["kind"], strict=True)
    }
    want = {(p["client_port"], p["kind"]) for p in exp["problems"]}
    assert want <= got, f"missing problems {sorted(want - got, key=str)}; analyzer: {sorted(got, key=str)}"


# the TLS captures that need a key log, one per capture (two expected files share wss_tls12_resumed.pcap)
KEYED = list({load_expected(p)["capture"]: p for p in EXPECTED if keylog_paths(load_expected(p))}.values())


@pytest.mark.parametrize("exp_path", KEYED, ids=ids(KEYED))
def test_tls_without_keys(exp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a key log nothing is decrypted and nothing is hidden: every TLS connection is a row with
    the facts sent in the clear (version, suite, SNI; ALPN too before TLS 1.3) and why it was not
    decrypted, and no frame or message is made up from encrypted bytes."""
    import analyzer

    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    exp = load_expected(exp_path)
    kwargs = {k: v for k, v in analyze_kwargs(exp).items() if k != "keylog"}
    a = analyzer.analyze(str(CAPTURES / exp["capture"]), **kwargs)
    assert a.frames.empty and a.messages.empty
    rows = {int(norm(r["client_port"])): r for r in a.connections.to_dict("records")}
    assert len(rows) == len(a.connections), "one row per TCP connection"
    # one row per TCP connection: the WebSocket streams of an HTTP/2 connection cannot be seen
    by_port = {c["client_port"]: c for c in exp["connections"]}
    assert sorted(rows) == sorted(by_port)
    bad = []
    for conn in by_port.values():
        row = rows[conn["client_port"]]
        clear = ["server_port", "transport", "tls_version", "tls_cipher", "sni"]
        if conn["tls_version"] != "TLS 1.3":
            clear.append("alpn")
        for key in clear:
            # HTTP/2 is known only from the decrypted bytes (TLS 1.3 encrypts the chosen ALPN)
            want = "tls" if key == "transport" and conn[key] == "h2" else conn[key]
            if not same(want, row[key], key):
                bad.append(f"{conn['client_port']}: {key} expected {want!r}, analyzer {norm(row[key])!r}")
        decrypted, why = norm(row["decrypted"]), norm(row["not_decrypted"])
        if decrypted is not False or not why:
            bad.append(f"{conn['client_port']}: decrypted {decrypted!r}, why not {why!r}")
    assert not bad, "\n".join(bad)
