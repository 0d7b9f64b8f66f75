"""Community ID v1 on connections: the spec's test vectors, a by-hand reading of the spec on
real captures (IPv4 and IPv6), tshark where installed, and the list columns beside it."""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import ipaddress
import struct
import subprocess
from pathlib import Path

import pytest

import analyzer
from analyzer.community_id import community_id, community_ids
from tests.formats_sample import EXTENSIONS, build

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
_spec = importlib.util.spec_from_file_location("capture_tshark_frames", CAPTURES / "tshark_frames.py")
tshark_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tshark_mod)

# TCP rows of corelight/community-id-spec baseline/baseline_deflt.json and baseline_seed1.json
SPEC_VECTORS = [
    # (seed, saddr, daddr, sport, dport, community id)
    (0, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (0, "66.35.250.204", "128.232.110.120", 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (0, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
    (0, "2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", 25, 63943,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
    (1, "128.232.110.120", "66.35.250.204", 34855, 80, "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    (1, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25,
     "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
]


def spec_by_hand(saddr: str, daddr: str, sport: int, dport: int, seed: int = 0) -> str:
    """The spec's recipe for TCP, written out: SHA-1 of seed, ordered endpoints, proto 6, pad."""
    a, b = ipaddress.ip_address(saddr).packed, ipaddress.ip_address(daddr).packed
    if (a, sport) > (b, dport):
        a, b, sport, dport = b, a, dport, sport
    data = struct.pack("!H", seed) + a + b + struct.pack("!BBHH", 6, 0, sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


@pytest.mark.parametrize(("seed", "saddr", "daddr", "sport", "dport", "expected"), SPEC_VECTORS)
def test_spec_vectors(seed: int, saddr: str, daddr: str, sport: int, dport: int, expected: str) -> None:
    assert community_id(saddr, sport, daddr, dport, seed=seed) == expected
    assert spec_by_hand(saddr, daddr, sport, dport, seed) == expected


def test_unusable_endpoints_get_none() -> None:
    assert community_ids(["not-an-ip", None, "10.0.0.1"], [1, 2, 70000],
                         ["10.0.0.2", "10.0.0.2", "10.0.0.2"], [80, 80, 80]) == [None, None, None]


@pytest.mark.parametrize("name", ["ws_deflate.pcap", "ipv6.pcap", "interleaved_9123.pcap", "demo.pcapng"])
def test_real_captures_follow_the_spec(name: str) -> None:
    c = analyzer.analyze(CAPTURES / name, progress=False).connections
    assert len(c) > 0
    for row in c.itertuples():
        assert row.community_id == spec_by_hand(row.client, row.server, row.client_port, row.server_port)
    if name == "ipv6.pcap":
        assert set(c["ip_version"]) == {6}


@functools.cache
def tshark_has_community_id() -> bool:
    """tshark has the Community ID protocol (`communityid`, off by default, in 3.x and 4.x)."""
    if not tshark_mod.tshark_available():
        return False
    out = subprocess.run(["tshark", "-G", "fields"], capture_output=True, text=True, timeout=120).stdout
    return any(line.split("\t")[2:3] == ["communityid"] for line in out.splitlines())


@pytest.mark.tshark
@pytest.mark.skipif(not tshark_has_community_id(), reason="tshark is not installed or has no Community ID")
@pytest.mark.parametrize("name", ["ws_deflate.pcap", "ipv6.pcap", "interleaved_9123.pcap"])
def test_agrees_with_tshark(name: str) -> None:
    out = subprocess.run(["tshark", "-n", "-r", str(CAPTURES / name), "--enable-protocol", "communityid",
                          "-Y", "tcp", "-T", "fields", "-e", "communityid"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    theirs = {line.strip() for line in out.splitlines() if line.strip()}
    ours = set(analyzer.analyze(CAPTURES / name, progress=False).connections["community_id"])
    assert ours and ours == theirs       # every TCP flow of these captures carries WebSocket


def test_list_columns(tmp_path: Path) -> None:
    c = analyzer.analyze(build(tmp_path), progress=False).connections
    ok, refused = c.iloc[0], c.iloc[1]
    assert ok["subprotocols_offered"] == "chat.v2, chat.v1"          # the joined string stays
    assert ok["subprotocols_offered_list"] == ["chat.v2", "chat.v1"]
    assert ok["extensions_offered"] == EXTENSIONS
    # the comma inside the quoted parameter value does not split the extension
    assert ok["extensions_offered_list"] == ["permessage-foo; a=1", 'x-ext; p="1,2"']
    assert ok["extensions_list"] is None                            # the server accepted none
    assert refused["subprotocols_offered_list"] is None
    deflate = analyzer.analyze(CAPTURES / "ws_deflate.pcap", progress=False).connections.iloc[0]
    assert deflate["extensions_list"] == [
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"]
    assert deflate["extensions_offered_list"] == ["permessage-deflate; client_max_window_bits"]


def test_request_ts(tmp_path: Path) -> None:
    c = analyzer.analyze(build(tmp_path), progress=False).connections
    # packet times of the sample: the request is the 4th packet of each conversation (1 ms apart)
    assert c["request_ts"].iloc[0].value == 1_700_000_000_003_000_000
    assert c["request_ts"].iloc[1].value == 1_700_000_001_003_000_000
    mid = analyzer.analyze(CAPTURES / "midstream.pcap", ports=[9090], progress=False).connections
    assert len(mid) == 1 and mid["request_ts"].isna().all()
