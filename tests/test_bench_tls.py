"""The benchmark's TLS mode (issue 15's speed figure): benchmarks/tls_material.py's certificate and
contexts on a real in-memory handshake, run.py's key log and decode-as plumbing, tls_pair.py's
arithmetic, and (root, tcpdump, tshark) a small `make_capture.py --tls` recording that tshark decrypts."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from analyzer.tls import KeyLog
from benchmarks import make_capture, tls_pair
from benchmarks import run as bench
from benchmarks.tls_material import TLS12_CIPHERS, TlsSetup, make_certificate

TLS13_LABELS = ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("cert"))


def handshake(setup: TlsSetup, keylog: Path, server_name: str = "localhost",
              ) -> tuple[ssl.SSLObject, bytes]:
    """Client and server of `setup` through memory BIOs; returns the client end and the client's
    first flight as it went on the wire (the ClientHello record)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = setup.client_context(keylog).wrap_bio(c_in, c_out, server_hostname=server_name)
    server = setup.server_context().wrap_bio(s_in, s_out, server_side=True)
    first_flight = b""
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            sent = c_out.read()
            first_flight = first_flight or sent
            s_in.write(sent)
            c_in.write(s_out.read())
        if all(done.values()):
            client.write(b"hello")          # application data: the server's tickets reach the client
            s_in.write(c_out.read())
            assert server.read(5) == b"hello"
            return client, first_flight
    raise AssertionError("the handshake did not finish")


def client_random(first_flight: bytes) -> bytes:
    """The ClientHello's random: record header (5), handshake type and length (4), version (2)."""
    assert first_flight[0] == 0x16 and first_flight[5] == 0x01, first_flight[:6].hex()
    return first_flight[11:43]


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_the_contexts_pin_the_version_and_log_this_connections_secrets(
        version: str, certificate: tuple[Path, Path], tmp_path: Path) -> None:
    keylog_path = tmp_path / "keys.log"
    client, first_flight = handshake(TlsSetup(version, *certificate), keylog_path)
    keylog = KeyLog()
    keylog.add_file(keylog_path)
    random = client_random(first_flight)
    assert keylog.bad_lines == 0 and len(keylog) == 1
    if version == "1.3":
        assert client.version() == "TLSv1.3"
        assert all(keylog.secret(label, random) for label in TLS13_LABELS)
        assert keylog.master_secret(random) is None
    else:
        assert client.version() == "TLSv1.2"
        assert client.cipher()[0] in TLS12_CIPHERS.split(":")
        secret = keylog.master_secret(random)
        assert secret is not None and len(secret) == 48


def test_the_client_verifies_the_certificate(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(TlsSetup("1.3", *certificate), tmp_path / "keys.log", server_name="example.org")


def test_only_the_two_versions_are_offered(certificate: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match=r"1\.1"):
        TlsSetup("1.1", *certificate)


# run.py: what reaches the analyzer and tshark


def write_sidecar(capture: Path, meta: dict) -> None:
    capture.write_bytes(b"")
    capture.with_name(capture.name + ".json").write_text(json.dumps(meta))


def test_decode_as_follows_the_sidecar(tmp_path: Path) -> None:
    old, plain, tls = tmp_path / "old.pcap", tmp_path / "plain.pcap", tmp_path / "tls.pcap"
    write_sidecar(old, {"ws_port": 18080, "aiohttp_port": 18081})
    write_sidecar(plain, {"ws_port": 1, "aiohttp_port": 2, "tshark_decode_as": ["tcp.port==1,http"]})
    write_sidecar(tls, {"ws_port": 3, "tshark_decode_as": ["tcp.port==3,tls"], "tls": {"keylog": "tls.keys"}})
    assert bench.decode_as(bench.sidecar(old), [9]) == ["tcp.port==18080,http", "tcp.port==18081,http",
                                                       "tcp.port==9,http"]
    assert bench.decode_as(bench.sidecar(plain), []) == ["tcp.port==1,http"]
    assert bench.decode_as(bench.sidecar(tls), []) == ["tcp.port==3,tls"]
    assert bench.keylogs_for(plain, None) == []
    assert bench.keylogs_for(tls, None) == [tmp_path / "tls.keys"]
    given = Path("relative.keys")
    assert bench.keylogs_for(tls, [given]) == [given.resolve()]


def test_the_key_logs_reach_the_analyzer_and_tshark(tmp_path: Path) -> None:
    tls = tmp_path / "tls.pcap"
    write_sidecar(tls, {"tshark_decode_as": ["tcp.port==3,tls"], "tls": {"keylog": "tls.keys"}})
    args = argparse.Namespace(keylog=None, jobs=1)
    assert bench.analyzer_kwargs(tls, args) == {"keylog": [str(tmp_path / "tls.keys")], "jobs": 1}
    cmd = bench.tshark_cmd(tls, ["tcp.port==3,tls"], tmp_path / "tls.keys")
    at = cmd.index("-o", 4)
    assert cmd[at:at + 2] == ["-o", f"tls.keylog_file:{tmp_path / 'tls.keys'}"]
    assert cmd[cmd.index("-d"):cmd.index("-d") + 2] == ["-d", "tcp.port==3,tls"]
    assert "tls.keylog_file" not in " ".join(bench.tshark_cmd(tls, [], None))
    a, b = tmp_path / "a.keys", tmp_path / "b.keys"
    a.write_bytes(b"CLIENT_RANDOM aa bb")                    # no final newline: still one line each
    b.write_bytes(b"CLIENT_RANDOM cc dd\n")
    assert bench.one_keylog([a], tmp_path) == a
    assert bench.one_keylog([], tmp_path) is None
    joined = bench.one_keylog([a, b], tmp_path)
    assert joined is not None
    assert joined.read_bytes().split() == [b"CLIENT_RANDOM", b"aa", b"bb", b"CLIENT_RANDOM", b"cc", b"dd"]


# tls_pair.py: the arithmetic of the goal


def test_spread_and_ratio() -> None:
    assert tls_pair.Spread.of([3.0, 1.0, 2.0]) == tls_pair.Spread(1.0, 2.0, 3.0)
    assert tls_pair.Spread.of([4.0, 1.0]).median == 2.5
    with pytest.raises(ValueError):
        tls_pair.Spread.of([])
    # TLS took 1.6x as long but found 1.2x fewer frames... per frame: 1.6 * 900 / 1000 = 1.44
    r = tls_pair.Ratio.of(plain=10.0, tls=16.0, plain_frames=1000, tls_frames=900)
    assert r.whole == pytest.approx(1.6)
    assert r.per_frame == pytest.approx(1.6 * 1000 / 900)
    assert not r.met
    assert tls_pair.Ratio.of(10.0, 14.0, 1000, 1000).met
    assert "NOT MET" in str(r)
    with pytest.raises(ValueError):
        tls_pair.Ratio.of(10.0, 14.0, 1000, 0)


def test_the_plan_alternates_which_capture_runs_first() -> None:
    assert tls_pair.plan(2, ["jobs=1", "jobs=default"]) == [
        ("jobs=1", "plain"), ("jobs=1", "tls"), ("jobs=default", "plain"), ("jobs=default", "tls"),
        ("jobs=1", "tls"), ("jobs=1", "plain"), ("jobs=default", "tls"), ("jobs=default", "plain")]
    assert tls_pair.parse_jobs("default") is None
    assert tls_pair.parse_jobs("2") == 2
    for bad in ("0", "two"):
        with pytest.raises(argparse.ArgumentTypeError):
            tls_pair.parse_jobs(bad)


# a real recording


def tshark_frames(capture: Path, meta: dict, keylog: Path | None) -> int:
    cmd = bench.tshark_cmd(capture, bench.decode_as(meta, []), keylog)
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return sum(line.split(b"\t")[1].count(b",") + 1 for line in out.splitlines() if b"\t" in line)


@pytest.mark.tshark
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("tcpdump") or not shutil.which("tshark"),
                    reason="recording on lo needs root and tcpdump; the check needs tshark")
def test_a_tls_recording_decrypts_with_its_key_log(tmp_path: Path) -> None:
    out = tmp_path / "wss.pcap"
    assert make_capture.main(["--packets", "1000", "--tls", "--out", str(out), "--max-seconds", "60"]) == 0
    meta = json.loads(out.with_name("wss.pcap.json").read_text())
    keylog = out.with_name("wss.pcap.keylog")
    assert meta["tls"]["version"] == "1.3" and meta["tls"]["keylog"] == keylog.name
    assert sorted(tmp_path.iterdir()) == sorted([out, keylog, out.with_name("wss.pcap.json")])
    keys = KeyLog()
    keys.add_file(keylog)
    clients = meta["senders"]["clients"]
    assert keys.bad_lines == 0 and len(keys) == clients["connections"] == meta["tls"]["keylog_lines"] / 5
    sent = clients["client_messages"] + meta["senders"]["server"]["server_messages"]
    assert tshark_frames(out, meta, None) == 0           # encrypted: nothing without the key log
    assert tshark_frames(out, meta, keylog) >= sent
