"""TLS in the pipeline: where keys come from (--keylog / keylog=, $SSLKEYLOGFILE, pcapng Decryption
Secrets Blocks), TLS recognised on the connection layer before anything reads its bytes as HTTP or
as frames, and every TLS connection listed (nothing encrypted is hidden)."""

from __future__ import annotations

import struct
from pathlib import Path

import pandas as pd
import pytest

import analyzer
from analyzer import cli
from analyzer.capture import CaptureReader
from tests.helpers.pcapgen_link import ng_block, ng_epb, ng_idb, ng_shb

CLIENT_RANDOM = bytes(range(32))
KEYLOG_LINE = b"CLIENT_RANDOM " + CLIENT_RANDOM.hex().encode() + b" " + b"ab" * 48 + b"\n"


def _dsb(secrets_type: int, data: bytes) -> bytes:
    return ng_block(0x0000000A, struct.pack("<II", secrets_type, len(data)) + data)


def _ether_ipv4_tcp() -> bytes:
    from tests.pcapgen import tcp_ipv4_packet
    return b"\x00" * 12 + b"\x08\x00" + tcp_ipv4_packet("10.0.0.1", "10.0.0.2", 40000, 443, 1, 0, 0x02, b"")


# --- where keys come from ----------------------------------------------------------------------

def test_pcapng_decryption_secrets_blocks_are_handed_over_as_read(tmp_path: Path) -> None:
    """A TLS key log block is handed to on_secrets; other secret types (WireGuard "WGKL") are not;
    the packets around them are read as before."""
    path = tmp_path / "dsb.pcapng"
    path.write_bytes(ng_shb() + ng_idb(1) + _dsb(0x544C534B, KEYLOG_LINE) + ng_epb(0, 1, _ether_ipv4_tcp())
                     + _dsb(0x57474B4C, b"wireguard key") + ng_epb(0, 2, _ether_ipv4_tcp()))
    got: list[bytes] = []
    with CaptureReader(path, on_secrets=got.append) as reader:
        records = list(reader)
    assert len(records) == 2 and got == [KEYLOG_LINE]


def test_a_decryption_secrets_block_that_lies_about_its_length_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "dsb-lie.pcapng"
    body = struct.pack("<II", 0x544C534B, 10_000) + KEYLOG_LINE       # says 10,000 bytes, has 113
    path.write_bytes(ng_shb() + ng_idb(1) + ng_block(0x0000000A, body) + ng_epb(0, 1, _ether_ipv4_tcp()))
    got: list[bytes] = []
    with CaptureReader(path, on_secrets=got.append) as reader:
        assert len(list(reader)) == 1
    assert got == []


def test_a_key_log_that_cannot_be_read_is_one_clear_error(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.keylog"
    with pytest.raises(analyzer.KeyLogError):
        analyzer.analyze("captures/demo.pcapng", keylog=missing)
    assert cli.main(["summary", "captures/demo.pcapng", "--keylog", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.keylog" in err[0] and "Traceback" not in err[0]


def test_sslkeylogfile_is_read_when_set(tmp_path: Path, monkeypatch) -> None:
    from analyzer.api import keylog_files
    keys = tmp_path / "env.keylog"
    keys.write_bytes(KEYLOG_LINE)
    given = tmp_path / "given.keylog"
    given.write_bytes(KEYLOG_LINE)
    monkeypatch.setenv("SSLKEYLOGFILE", str(keys))
    assert keylog_files(given) == (str(given), str(keys))
    monkeypatch.chdir(tmp_path)
    assert keylog_files(["given.keylog", str(given)]) == (str(given), str(keys))   # absolute, once
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "not-written-yet.keylog"))
    assert keylog_files(None) == ()         # a browser may name a file it has not written: no error


# --- TLS on the connection layer, on bytes built in the test ----------------------------------------

MASK = b"\x11\x22\x33\x44"


def _wss(segment: int | None = None, *, drop_server_record: int | None = None,
         keylog: bool = True, server_port: int = 9443):
    """A TLS 1.3 conversation carrying a WebSocket upgrade and frames, as TCP packets (each
    direction's bytes in `segment`-byte segments when given). Returns (packets, keylog text, wire
    records of the server's application data)."""
    from tests import tls_helpers
    from tests.pcapgen import Conversation, close_payload, frame, upgrade_request, upgrade_response

    tls = tls_helpers.tls13(key_log=keylog)
    tls.app(0, upgrade_request())
    tls.app(1, upgrade_response())
    for i in range(6):
        tls.app(0, frame(1, f"hello {i}".encode(), mask=MASK))
        tls.app(1, frame(1, f"HELLO {i}".encode()))
    tls.app(0, frame(8, close_payload(1000), mask=MASK))
    tls.app(1, frame(8, close_payload(1000)))
    tcp = Conversation(client_port=50443, server_port=server_port)
    tcp.handshake()
    server_records = 0
    for direction, data in tls.flow:
        if direction == 1 and data[0] == 23:
            server_records += 1
            if server_records == drop_server_record:
                tcp.seq[1] += len(data)         # the capture lost this record's segment
                continue
        step = segment or len(data)
        for i in range(0, len(data), step):
            tcp.send(direction, data[i:i + step])
    tcp.fin(0)
    tcp.fin(1)
    return tcp.packets, tls.keylog


def _analyze(tmp_path: Path, packets, keylog: str | None, **kw):
    from tests.pcapgen import write_pcap
    cap = tmp_path / "wss.pcap"
    write_pcap(cap, packets)
    keys = None
    if keylog is not None:
        keys = tmp_path / "keys.log"
        keys.write_text(keylog)
    return analyzer.analyze(cap, keylog=keys, **kw)


@pytest.mark.parametrize("segment", [None, 1, 7])
def test_websocket_inside_tls_is_decoded_whatever_the_segmenting(tmp_path: Path, segment) -> None:
    packets, keylog = _wss(segment)
    a = _analyze(tmp_path, packets, keylog)
    c = a.connections.iloc[0]
    assert (c.transport, c.tls_version, c.tls_cipher, c.alpn) == ("tls", "TLS 1.3", "TLS_AES_128_GCM_SHA256",
                                                                 "http/1.1")
    assert bool(c.websocket) and bool(c.decrypted) and c.close_status == "clean" and c.http_status == 101
    assert list(a.messages.preview) == [f"{w} {i}" for i in range(6) for w in ("hello", "HELLO")]
    assert a.problems.empty


def test_without_keys_the_tls_connection_is_listed_with_why(tmp_path: Path, capsys) -> None:
    packets, _ = _wss()
    a = _analyze(tmp_path, packets, None)
    assert a.frames.empty and len(a.connections) == 1
    c = a.connections.iloc[0]
    assert (c.transport, bool(c.websocket), bool(c.decrypted)) == ("tls", False, False)
    assert c.not_decrypted == "no key for the client random" and pd.isna(c.close_status)
    assert list(a.problems.kind) == ["tls-key-missing"]
    s = a.summary()
    assert s["websocket_connections"] == 0 and s["tls"]["not_decrypted"] == 1
    assert "--keylog" in str(s)
    from tests.pcapgen import write_pcap
    write_pcap(tmp_path / "nokeys.pcap", packets)
    assert cli.main(["frames", str(tmp_path / "nokeys.pcap"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "1 of 1 TLS connections not decrypted" in err and "--keylog" in err


def test_tls_on_a_decode_as_port_is_tls_not_junk_frames(tmp_path: Path) -> None:
    """ports= (decode as WebSocket) on a TLS port: the records are recognised as TLS first."""
    packets, keylog = _wss(server_port=9000)
    a = _analyze(tmp_path, packets, None, ports=[9000])
    assert a.frames.empty and list(a.connections.transport) == ["tls"]
    assert set(a.problems.kind) == {"tls-key-missing"}
    a = _analyze(tmp_path, packets, keylog, ports=[9000])
    assert len(a.messages) == 12 and a.problems.empty


def test_a_record_lost_in_a_tcp_gap_is_resynchronised(tmp_path: Path) -> None:
    """The server's 6th application data record (its flight, its ticket, the 101, HELLO 0, 1, then
    HELLO 2) is missing from the capture: TLS picks up at the next record, the WebSocket layer
    resynchronises on the next frame; nothing else is lost."""
    packets, keylog = _wss(drop_server_record=6)
    a = _analyze(tmp_path, packets, keylog)
    texts = list(a.messages.preview)
    assert "HELLO 2" not in texts and "HELLO 3" in texts and len(texts) == 11
    assert list(a.problems.kind) == ["tcp-gap", "tls-gap", "frames-lost-after-gap"]
    assert "1 record" in a.problems.detail.iloc[1]


# --- the real captures (captures/wss_*: real libraries, their key logs) ------------------------------

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


def test_real_wss_captures_without_keys_list_every_tls_connection(capsys) -> None:
    a = analyzer.analyze(CAPTURES / "wss_tls13.pcap")
    c = a.connections
    assert len(c) == 4 and set(c.transport) == {"tls"} and not c.websocket.any()
    assert list(c.tls_cipher) == ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                  "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256"]
    assert set(c.sni) == {"localhost"} and set(c.not_decrypted) == {"no key for the client random"}
    assert a.frames.empty


@pytest.mark.parametrize("jobs", [1, 2])
def test_real_wss_capture_decrypted_with_its_key_log(jobs) -> None:
    a = analyzer.analyze(CAPTURES / "wss_tls13.pcap", keylog=CAPTURES / "wss_tls13.keylog", jobs=jobs)
    c = a.connections
    assert c.decrypted.all() and c.websocket.all() and set(c.close_status) == {"clean"}
    assert c.not_decrypted.isna().all() and a.problems.empty and len(a.frames) == 50


def test_keys_embedded_in_the_pcapng_need_no_key_log() -> None:
    a = analyzer.analyze(CAPTURES / "wss_injected.pcapng")
    assert a.connections.decrypted.all() and len(a.frames) > 0 and a.problems.empty


def test_a_wrong_key_log_gives_problem_rows_and_no_frames() -> None:
    a = analyzer.analyze(CAPTURES / "wss_wrong_key.pcap", keylog=CAPTURES / "wss_wrong_key.keylog")
    assert a.frames.empty and a.messages.empty
    assert set(a.problems.kind) == {"tls-decrypt-failed"}
    assert a.connections.not_decrypted.iloc[0].startswith("decryption failed")


def test_a_resumed_tls12_session_is_decrypted_from_the_capture_itself() -> None:
    """The key log holds the first connection's master secret only; the second resumes its
    session (abbreviated handshake): its keys come from the session the capture saw."""
    a = analyzer.analyze(CAPTURES / "wss_tls12_resumed.pcap",
                         keylog=CAPTURES / "wss_tls12_resumed.first-only.keylog")
    assert a.connections.decrypted.all() and a.problems.empty
