"""packets.py: records → TCP segments, on frames built byte by byte (and with scapy's layers)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback
from scapy.layers.ppp import PPP

import analyzer.packets as packets
from analyzer.capture import CaptureReader
from analyzer.events import PacketRecord, Segment
from analyzer.packets import PacketDecoder
from analyzer.protocol import ProblemKind

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
import pcapgen_link as g

V4_SRC, V4_DST = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7])
V6_SRC = bytes.fromhex("20010db8000000000000000000000001")
V6_DST = bytes.fromhex("20010db8000000000000000000000002")
# Explicit MACs: a bare Ether() would make scapy resolve the destination (ARP/ND, with timeouts).
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def Eth(**kw: object) -> Ether:
    return Ether(**MACS, **kw)


LOOPBACK_LARGE = Path(__file__).parent / "data" / "loopback_large.pcap"


def rec(data: bytes, linktype: int = 1, *, no: int = 1, wirelen: int | None = None,
        ts: int = 5) -> PacketRecord:
    return PacketRecord(no, ts, linktype, len(data), len(data) if wirelen is None else wirelen, data)


def tcp4(payload: bytes = b"hello", **kw: object) -> bytes:
    return g.ipv4(g.tcp(payload, sport=51000, dport=8080, seq=0xFFFFFFF0, ack=77, flags=0x18), V4_SRC, V4_DST,
                  **kw)  # type: ignore[arg-type]


def tcp6(payload: bytes = b"hello", nh_chain: bytes = b"", nh: int = 6) -> bytes:
    return g.ipv6(nh_chain + g.tcp(payload, sport=51000, dport=8080, seq=1, ack=2, flags=0x10),
                  V6_SRC, V6_DST, nh=nh)


def decode_one(r: PacketRecord) -> tuple[Segment | None, list]:
    d = PacketDecoder()
    seg = d.decode(r)
    return seg, d.problems


def check_v4(seg: Segment | None, payload: bytes = b"hello", no: int = 1) -> None:
    assert seg is not None
    assert type(seg) is Segment
    assert seg == Segment(no, 5, 4, V4_SRC, V4_DST, 51000, 8080, 0xFFFFFFF0, 77, 0x18, payload, False)


# --- link layers -----------------------------------------------------------------------------

@pytest.mark.parametrize("frame,linktype", [
    (g.ether(tcp4()), 1),
    (g.ether(tcp4(), vlans=[(0x8100, 42)]), 1),
    (g.ether(tcp4(), vlans=[(0x88A8, 100), (0x8100, 42)]), 1),           # 802.1ad QinQ
    (g.ether(tcp4(), vlans=[(0x9100, 7), (0x8100, 8), (0x8100, 9)]), 1),  # three tags
    (g.sll(tcp4()), 113),
    (g.sll(tcp4(), pkttype=4), 113),
    (g.sll2(tcp4()), 276),
    (g.null_hdr(tcp4(), 2, "<"), 0),
    (g.null_hdr(tcp4(), 2, ">"), 0),
    (g.null_hdr(tcp4(), 2, ">"), 108),
    (tcp4(), 101), (tcp4(), 12), (tcp4(), 14), (tcp4(), 228),
])
def test_link_layers_ipv4(frame: bytes, linktype: int) -> None:
    seg, problems = decode_one(rec(frame, linktype))
    check_v4(seg)
    assert problems == []


@pytest.mark.parametrize("frame,linktype", [
    (g.ether(tcp6(), 0x86DD), 1),
    (g.ether(tcp6(), 0x86DD, vlans=[(0x88A8, 1), (0x8100, 2)]), 1),
    (g.sll(tcp6(), 0x86DD), 113),
    (g.sll2(tcp6(), 0x86DD), 276),
    (g.null_hdr(tcp6(), 24, "<"), 0), (g.null_hdr(tcp6(), 28, "<"), 0), (g.null_hdr(tcp6(), 30, "<"), 0),
    (g.null_hdr(tcp6(), 24, ">"), 0), (g.null_hdr(tcp6(), 28, ">"), 0), (g.null_hdr(tcp6(), 30, ">"), 0),
    (g.null_hdr(tcp6(), 24, ">"), 108),
    (tcp6(), 101), (tcp6(), 229),
])
def test_link_layers_ipv6(frame: bytes, linktype: int) -> None:
    seg, problems = decode_one(rec(frame, linktype))
    assert problems == []
    assert seg == Segment(1, 5, 6, V6_SRC, V6_DST, 51000, 8080, 1, 2, 0x10, b"hello", False)


def test_scapy_built_frames_agree() -> None:
    """The same segment written by scapy's own layers decodes to the same fields."""
    ip = IP(src="192.0.2.1", dst="198.51.100.7") / TCP(sport=51000, dport=8080, seq=0xFFFFFFF0, ack=77,
                                                           flags="PA") / b"hello"
    frames = [
        (Eth() / ip, 1),
        (Eth() / Dot1Q(vlan=5) / ip, 1),
        (Eth(type=0x88A8) / Dot1AD(vlan=100) / Dot1Q(vlan=5) / ip, 1),
        (CookedLinux(proto=0x0800) / ip, 113),
        (CookedLinuxV2(proto=0x0800) / ip, 276),
        (Loopback(type=2) / ip, 0),
    ]
    for pkt, linktype in frames:
        seg, problems = decode_one(rec(bytes(pkt), linktype))
        check_v4(seg)
        assert problems == [], pkt.summary()


def test_non_tcp_is_dropped_silently() -> None:
    d = PacketDecoder()
    others = [
        rec(bytes(Eth() / ARP()), 1),
        rec(bytes(Eth() / IP() / UDP() / b"dns"), 1),
        rec(g.ether(b"\x00" * 46, 0x88CC), 1),                     # LLDP
        rec(g.ether(b"\xaa\xaa\x03" + b"\x00" * 43, 0x002E), 1),     # 802.3 length field + LLC
        rec(bytes(IPv6(nh=59)), 101),                                 # no next header
        rec(g.null_hdr(tcp4(), 7, "<"), 0),                           # unknown address family
    ]
    assert [d.decode(r) for r in others] == [None] * len(others)
    assert d.problems == []


def test_slow_path_uses_scapy_dissector_for_other_linktypes() -> None:
    d = PacketDecoder()
    ppp = bytes(PPP() / IP(src="192.0.2.1", dst="198.51.100.7")
                / TCP(sport=51000, dport=8080, seq=0xFFFFFFF0, ack=77, flags="PA") / b"hello")
    seg = d.decode(rec(ppp, 9))
    check_v4(seg)
    assert d.problems == []


def test_unknown_linktype_reported_once_per_linktype() -> None:
    d = PacketDecoder()
    for i in range(5):
        assert d.decode(rec(tcp4(), 147, no=i + 1)) is None
    assert d.decode(rec(tcp4(), 148, no=6)) is None
    assert [(p.kind, p.record_no) for p in d.problems] == [
        (ProblemKind.UNKNOWN_LINKTYPE, 1), (ProblemKind.UNKNOWN_LINKTYPE, 6)]
    assert "147" in d.problems[0].detail
    check_v4(d.decode(rec(g.ether(tcp4()), 1, no=7)), no=7)      # the fast path still works afterwards


# --- IP layer --------------------------------------------------------------------------------

def test_ethernet_padding_is_not_payload() -> None:
    frame = g.ether(tcp4(b"hi"))
    assert len(frame) == 56
    padded = frame + b"\x00" * 4                      # the 60-byte minimum frame
    seg, problems = decode_one(rec(padded))
    check_v4(seg, b"hi")
    assert problems == []
    # an empty ACK padded with non-zero junk, plus a 4-byte FCS trailer
    seg, problems = decode_one(rec(g.ether(tcp4(b"")) + b"\xde\xad\xbe\xef\x01\x02" + b"FCS!"))
    check_v4(seg, b"")
    assert problems == []


def test_ipv4_options_are_skipped() -> None:
    seg, problems = decode_one(rec(g.ether(tcp4(options=b"\x94\x04\x00\x00" + b"\x01" * 8))))
    check_v4(seg)
    assert problems == []


def test_tcp_options_are_skipped() -> None:
    frame = g.ether(g.ipv4(g.tcp(b"data", options=b"\x02\x04\x05\xb4\x01\x03\x03\x07"), V4_SRC, V4_DST))
    seg, _ = decode_one(rec(frame))
    assert seg is not None and seg.payload == b"data"


def test_ipv6_extension_headers_are_skipped() -> None:
    inner = TCP(sport=51000, dport=8080, seq=1, ack=2, flags="A") / b"hello"
    base = IPv6(src="2001:db8::1", dst="2001:db8::2")
    chains = [
        base / IPv6ExtHdrHopByHop() / inner,
        base / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(addresses=["2001:db8::9"])
        / IPv6ExtHdrDestOpt() / inner,
        base / IPv6ExtHdrFragment(offset=0, m=0, id=9) / inner,          # atomic fragment
    ]
    for pkt in chains:
        seg, problems = decode_one(rec(bytes(Eth() / pkt), 1))
        assert problems == [], pkt.summary()
        assert seg == Segment(1, 5, 6, V6_SRC, V6_DST, 51000, 8080, 1, 2, 0x10, b"hello", False)
    # AH (51) is sized in 4-byte words, not 8
    ah = bytes([6, 4]) + b"\x00" * 22                                   # (4 + 2) * 4 = 24 bytes
    seg, problems = decode_one(rec(tcp6(nh_chain=ah, nh=51), 101))
    assert problems == [] and seg is not None and seg.payload == b"hello"


def test_ipv4_fragments_reassembled_in_and_out_of_order() -> None:
    payload = bytes(range(256)) * 12
    pkt = IP(src="192.0.2.1", dst="198.51.100.7", id=4242) / TCP(sport=51000, dport=8080, seq=9, ack=8,
                                                                  flags="PA") / payload
    frags = [bytes(Eth() / f) + b"\x00" * 6 for f in fragment(pkt, fragsize=1000)]   # padded, too
    assert len(frags) == 4
    for order in ([0, 1, 2, 3], [3, 1, 0, 2], [2, 3, 0, 1]):
        d = PacketDecoder()
        results = [d.decode(rec(frags[i], no=n + 1)) for n, i in enumerate(order)]
        assert results[:-1] == [None, None, None]
        seg = results[-1]
        assert seg is not None
        assert (seg.record_no, seg.src, seg.dst, seg.sport, seg.dport, seg.seq) == (
            4, V4_SRC, V4_DST, 51000, 8080, 9)
        assert seg.payload == payload
        assert d.problems == []
        d.finish()
        assert d.problems == []


def test_interleaved_fragments_of_two_datagrams_and_duplicates() -> None:
    d = PacketDecoder()
    pa = IP(src="192.0.2.1", dst="198.51.100.7", id=1) / TCP(sport=1, dport=2) / (b"A" * 3000)
    pb = IP(src="192.0.2.1", dst="198.51.100.7", id=2) / TCP(sport=3, dport=4) / (b"B" * 3000)
    fa, fb = fragment(pa, 1480), fragment(pb, 1480)
    seq = [fa[0], fb[1], fa[0], fb[0], fa[2], fb[2], fa[1]]
    out = [d.decode(rec(bytes(f), 101, no=i + 1)) for i, f in enumerate(seq)]
    done = [s for s in out if s is not None]
    assert [(s.sport, s.payload) for s in done] == [(3, b"B" * 3000), (1, b"A" * 3000)]
    assert d.problems == []


def test_ipv6_fragments_reassembled() -> None:
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=77) / TCP(
        sport=51000, dport=8080, seq=1, ack=2, flags="A") / (b"z" * 4000)
    frags = fragment6(pkt, 1280)
    assert len(frags) >= 3
    d = PacketDecoder()
    out = [d.decode(rec(bytes(f), 229, no=i + 1)) for i, f in enumerate(reversed(frags))]
    assert out[:-1] == [None] * (len(frags) - 1)
    assert out[-1] is not None and out[-1].payload == b"z" * 4000 and out[-1].ip_version == 6
    assert d.problems == []


def test_unreassembled_fragment_reported_at_finish() -> None:
    pkt = IP(src="192.0.2.1", dst="198.51.100.7", id=99) / TCP(sport=1, dport=2) / (b"x" * 3000)
    frags = fragment(pkt, 1000)
    d = PacketDecoder()
    assert d.decode(rec(bytes(frags[0]), 101, no=3, ts=33)) is None
    assert d.decode(rec(bytes(frags[2]), 101, no=4)) is None
    assert d.problems == []
    d.finish()
    assert [(p.kind, p.record_no, p.ts_ns) for p in d.problems] == [
        (ProblemKind.IP_FRAGMENT_UNREASSEMBLED, 3, 33)]
    assert "id=99" in d.problems[0].detail and "192.0.2.1" in d.problems[0].detail
    d.problems.clear()
    d.finish()
    assert d.problems == []


def test_unreassembled_fragment_times_out_by_record_count() -> None:
    frags = fragment(IP(src="192.0.2.1", dst="198.51.100.7", id=5) / TCP() / (b"x" * 2000), 1000)
    d = PacketDecoder()
    assert d.decode(rec(bytes(frags[0]), 101, no=10)) is None
    no = 10 + packets.FRAG_TIMEOUT_RECORDS
    check_v4(d.decode(rec(tcp4(), 101, no=no)), no=no)
    assert d.problems == []
    check_v4(d.decode(rec(tcp4(), 101, no=no + 1)), no=no + 1)
    assert [(p.kind, p.record_no) for p in d.problems] == [(ProblemKind.IP_FRAGMENT_UNREASSEMBLED, 10)]
    # the late fragment starts a new datagram, it does not complete the dropped one
    assert d.decode(rec(bytes(frags[1]), 101, no=12 + packets.FRAG_TIMEOUT_RECORDS)) is None


def test_fragment_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packets, "MAX_FRAG_DATAGRAMS", 8)
    d = PacketDecoder()
    for i in range(20):
        first = fragment(IP(src="192.0.2.1", dst="198.51.100.7", id=i) / TCP() / (b"x" * 2000), 1000)[0]
        assert d.decode(rec(bytes(first), 101, no=i + 1)) is None
    assert len(d._frags) == 8
    assert [p.record_no for p in d.problems] == list(range(1, 13))      # the oldest were evicted
    assert {p.kind for p in d.problems} == {ProblemKind.IP_FRAGMENT_UNREASSEMBLED}
    # a fragment claiming to reach past 64 KiB is refused, not buffered
    d.problems.clear()
    big = g.ipv4(b"y" * 16, V4_SRC, V4_DST, ident=500, flags_frag=0x2000 | 8190)
    assert d.decode(rec(big, 101, no=50)) is None
    assert [p.kind for p in d.problems] == [ProblemKind.IP_FRAGMENT_UNREASSEMBLED]


# --- truncation and malformed headers ------------------------------------------------------

def test_snaplen_truncated_packet_flagged() -> None:
    whole = g.ether(tcp4(b"A" * 1000))
    cut = whole[:200]
    seg, problems = decode_one(rec(cut, wirelen=len(whole), no=7))
    assert seg is not None
    assert seg.truncated is True
    assert seg.payload == b"A" * (200 - 54)
    assert [(p.kind, p.record_no) for p in problems] == [(ProblemKind.PACKET_TRUNCATED, 7)]


def test_ip_length_beyond_captured_bytes_is_truncated() -> None:
    whole = g.ether(tcp4(b"B" * 500))
    seg, problems = decode_one(rec(whole[:300]))            # caplen == wirelen, yet IP says 520 bytes
    assert seg is not None and seg.truncated and seg.payload == b"B" * (300 - 54)
    assert [p.kind for p in problems] == [ProblemKind.PACKET_TRUNCATED]


def test_snaplen_cut_only_the_trailer_is_not_truncated() -> None:
    frame = g.ether(tcp4(b"ok")) + b"\x00" * 4
    seg, problems = decode_one(rec(frame, wirelen=len(frame) + 4))      # FCS not captured
    check_v4(seg, b"ok")
    assert problems == []


@pytest.mark.parametrize("cut", [10, 14 + 12, 14 + 20 + 10])
def test_headers_cut_by_snaplen(cut: int) -> None:
    whole = g.ether(tcp4(b"C" * 100))
    seg, problems = decode_one(rec(whole[:cut], wirelen=len(whole), no=3))
    assert seg is None
    assert [(p.kind, p.record_no) for p in problems] == [(ProblemKind.PACKET_TRUNCATED, 3)]


def test_tcp_options_cut_by_snaplen_still_gives_segment() -> None:
    frame = g.ether(g.ipv4(g.tcp(b"D" * 50, options=b"\x01" * 20), V4_SRC, V4_DST))
    seg, problems = decode_one(rec(frame[:14 + 20 + 30], wirelen=len(frame)))
    assert seg is not None and seg.truncated and seg.payload == b""
    assert [p.kind for p in problems] == [ProblemKind.PACKET_TRUNCATED]


@pytest.mark.parametrize("frame,linktype,what", [
    (g.ether(tcp4(ihl=4)), 1, "header length"),
    (g.ether(tcp4(total_len=10)), 1, "total length"),
    (g.ether(g.ipv4(g.tcp(b"x", doff=4), V4_SRC, V4_DST)), 1, "data offset"),
    (g.ether(g.ipv4(g.tcp(b"", doff=15), V4_SRC, V4_DST)), 1, "TCP"),                # doff past IP end
    (g.ether(g.ipv4(b"\x00" * 12, V4_SRC, V4_DST)), 1, "TCP"),                     # 12-byte TCP header
    (g.ether(b"\x65" + tcp4()[1:]), 1, "version"),
    (b"\x75" + tcp4()[1:], 101, "version"),
    (g.ether(tcp4())[:20], 1, "IPv4 header"),
    (g.ether(tcp6(nh_chain=b"\x06\x05" + b"\x00" * 6, nh=0), 0x86DD), 1, "extension header"),
    (b"\x00\x00", 0, "loopback"),
])
def test_malformed_headers(frame: bytes, linktype: int, what: str) -> None:
    seg, problems = decode_one(rec(frame, linktype, no=9))
    assert seg is None
    assert [(p.kind, p.record_no) for p in problems] == [(ProblemKind.MALFORMED_PACKET, 9)]
    assert what in problems[0].detail


def test_tso_zero_ip_length_uses_the_record() -> None:
    frame = g.ether(tcp4(b"E" * 3000, total_len=0))
    seg, problems = decode_one(rec(frame))
    assert seg is not None and seg.payload == b"E" * 3000 and not seg.truncated
    assert problems == []


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=120), linktype=st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276]),
       cut=st.booleans())
def test_garbage_never_raises(data: bytes, linktype: int, cut: bool) -> None:
    d = PacketDecoder()
    r = PacketRecord(1, 0, linktype, len(data), len(data) + (10 if cut else 0), data)
    seg = d.decode(r)
    assert seg is None or (type(seg) is Segment and len(seg.payload) <= len(data))
    assert len(d.problems) <= 1
    d.finish()


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), sport=st.integers(0, 65535), dport=st.integers(0, 65535),
       seq=st.integers(0, 2**32 - 1), flags=st.integers(0, 255), pad=st.integers(0, 40),
       v6=st.booleans())
def test_fields_round_trip(payload: bytes, sport: int, dport: int, seq: int, flags: int, pad: int,
                           v6: bool) -> None:
    t = g.tcp(payload, sport=sport, dport=dport, seq=seq, ack=seq ^ 0xFFFF, flags=flags)
    ip = g.ipv6(t, V6_SRC, V6_DST) if v6 else g.ipv4(t, V4_SRC, V4_DST)
    frame = g.ether(ip, 0x86DD if v6 else 0x0800) + b"\x00" * pad
    seg, problems = decode_one(rec(frame))
    assert problems == []
    assert seg is not None
    assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.payload) == (
        sport, dport, seq, seq ^ 0xFFFF, flags, payload)
    assert (seg.src, seg.dst) == ((V6_SRC, V6_DST) if v6 else (V4_SRC, V4_DST))


# --- a real capture --------------------------------------------------------------------------

def test_real_loopback_capture_decodes_whole() -> None:
    d = PacketDecoder()
    segs = []
    with CaptureReader(LOOPBACK_LARGE) as r:
        for x in r:
            s = d.decode(x)
            assert s is not None
            segs.append(s)
    d.finish()
    assert d.problems == [] and r.problems == []
    big = [s for s in segs if len(s.payload) > 65_000]
    assert big and all(not s.truncated for s in big)
    assert max(len(s.payload) for s in segs) == 65_535 - 20 - 32          # IP and TCP (timestamps) headers
    # all payload bytes of both directions: the 204,800-byte messages went each way twice
    server_port = segs[0].dport
    sent = sum(len(s.payload) for s in segs if s.dport == server_port)
    back = sum(len(s.payload) for s in segs if s.sport == server_port)
    assert sent > 2 * 204_800 and back > 2 * 204_800
    assert {s.src for s in segs} == {bytes([127, 0, 0, 1])}
    assert segs[0].flags == 0x02                                        # SYN first
    assert [s.record_no for s in segs] == list(range(1, len(segs) + 1))


_ETH_HEADER = bytes.fromhex("020000000002" "020000000001" "0800")
_ETH_VLAN_HEADER = bytes.fromhex("020000000002" "020000000001" "8100" "0064" "0800")   # VLAN 100


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=80),
       edits=st.lists(st.tuples(st.integers(min_value=0, max_value=60), st.integers(0, 255)), max_size=4),
       cut=st.integers(min_value=0, max_value=40), trailer=st.binary(max_size=6))
def test_ethernet_ipv4_tcp_fast_path_agrees_with_the_layered_path(payload, edits, cut, trailer) -> None:
    """decode() reads Ethernet + IPv4 + TCP in one unpack when it can. The same IP bytes behind a
    VLAN tag take the layer-by-layer path: segments and problems must be the same, for
    headers with random bytes changed (version, IHL, length, fragment bits, protocol, data
    offset…), records cut short and trailers after the datagram."""
    ip = bytearray(tcp4(payload))
    for offset, value in edits:
        if offset < len(ip):
            ip[offset] = value
    ip = bytes(ip[:len(ip) - cut] if cut < len(ip) else ip) + trailer
    fast_seg, fast_problems = decode_one(rec(_ETH_HEADER + ip))
    slow_seg, slow_problems = decode_one(rec(_ETH_VLAN_HEADER + ip))
    assert fast_seg == slow_seg

    def problems(found: list) -> list:   # record lengths and offsets differ by the 4-byte tag
        return [(p.kind, re.sub(r"\d+", "N", p.detail)) for p in found]

    assert problems(fast_problems) == problems(slow_problems)


def test_ethernet_ipv4_tcp_fast_path_is_taken() -> None:
    """The agreement above is between two paths: a clean packet must take the fast one."""
    calls = []
    decoder = PacketDecoder()
    decoder._ipv4 = lambda *args: calls.append(args)   # the layered path would call this
    seg = decoder.decode(rec(_ETH_HEADER + tcp4(b"fast")))
    assert seg is not None and seg.payload == b"fast" and not calls


@pytest.mark.parametrize("delta", [-30, -1, 0, 1, 2])
@pytest.mark.parametrize("trailer", [b"", b"\x00" * 4])
def test_ethernet_ipv4_tcp_fast_path_total_length_edges(delta, trailer) -> None:
    """IPv4 total lengths around the captured size: shorter (padding follows), exact, longer
    (the snap length cut the datagram: flagged truncated, as on the layered path)."""
    ip = bytearray(tcp4(b"0123456789" * 5))
    ip[2:4] = (len(ip) + delta).to_bytes(2, "big")
    fast_seg, fast_problems = decode_one(rec(_ETH_HEADER + bytes(ip) + trailer))
    slow_seg, slow_problems = decode_one(rec(_ETH_VLAN_HEADER + bytes(ip) + trailer))
    assert fast_seg == slow_seg
    assert [p.kind for p in fast_problems] == [p.kind for p in slow_problems]
    assert fast_seg is not None and fast_seg.truncated == (len(ip) + delta > len(ip) + len(trailer))


def test_admit_is_asked_before_a_fragment_problem_is_built() -> None:
    """A refused problem is counted by the caller's admit, never built (issue 13 item 2)."""
    asked: list[tuple[str, int | None, int | None]] = []

    def admit(kind: str, record_no: int | None, ts_ns: int | None) -> bool:
        asked.append((kind, record_no, ts_ns))
        return record_no == 3

    pkt = IP(src="192.0.2.1", dst="198.51.100.7", id=99) / TCP(sport=1, dport=2) / (b"x" * 3000)
    d = PacketDecoder(admit=admit)
    assert d.decode(rec(bytes(fragment(pkt, 1000)[0]), 101, no=3, ts=33)) is None
    pkt.id = 100
    assert d.decode(rec(bytes(fragment(pkt, 1000)[0]), 101, no=4, ts=44)) is None
    d.finish()
    assert asked == [("ip-fragment-unreassembled", 3, 33), ("ip-fragment-unreassembled", 4, 44)]
    assert [(p.record_no, "id=99" in p.detail) for p in d.problems] == [(3, True)]
