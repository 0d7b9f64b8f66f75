"""Capture records → TCP segments: link layers, IPv4/IPv6, IP fragment reassembly, TCP header.

This module owns everything between a record's bytes and a `Segment`: the link-layer header
(Ethernet with 802.1Q/802.1ad tags, Linux SLL and SLL2, BSD NULL and OpenBSD LOOP, raw IP), the
IPv4 header and options, the IPv6 extension-header chain, reassembly of fragmented datagrams, the
snap-length truncation flag, and the TCP header. It knows nothing of flows (that is streams.py).

The common link types go through a `struct` fast path that makes one `Segment` per TCP packet and
nothing else. Any other link type is handed once per packet to scapy's dissector for it (imported
lazily, only when such a link type shows up), and only to find where the IP header starts.

Rules:
1. Ordinary non-TCP traffic (ARP, UDP, ICMP, …) is dropped silently: `decode` returns None.
2. Defects become `Problem`s in `self.problems` (the caller drains the list): MALFORMED_PACKET for
   impossible headers in a packet that was captured whole, PACKET_TRUNCATED (one per packet) when
   the snap length cut the IP datagram, IP_FRAGMENT_UNREASSEMBLED for fragments that never
   completed, UNKNOWN_LINKTYPE once per link type nobody can dissect. The caller's `admit` decides
   before a problem (and its detail text) is built whether it is listed or only counted.
3. The IP length fields decide where the payload ends, so Ethernet padding and trailers (FCS)
   never become payload.
4. A datagram whose IP total length is beyond the captured bytes is decoded as far as it goes
   and flagged `truncated` (whether or not caplen < wirelen says so: some tools rewrite wirelen).
5. Memory for fragments is bounded: at most MAX_FRAG_DATAGRAMS datagrams in flight, each at most
   MAX_FRAG_PIECES pieces and MAX_DATAGRAM_BYTES bytes (overlapping copies counted too, up to
   twice that), MAX_FRAG_BYTES held in all, dropped FRAG_TIMEOUT_RECORDS records after their first
   fragment. Call `finish()` at the end of a capture to report what is left.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from analyzer.events import PacketRecord, Problem, Segment
from analyzer.protocol import ProblemKind
from analyzer.scapy_quiet import quiet_scapy

__all__ = [
    "FRAG_TIMEOUT_RECORDS",
    "MAX_DATAGRAM_BYTES",
    "MAX_FRAG_BYTES",
    "MAX_FRAG_DATAGRAMS",
    "MAX_FRAG_PIECES",
    "PacketDecoder",
]

MAX_FRAG_DATAGRAMS = 1024          # datagrams being reassembled at once
MAX_FRAG_PIECES = 512              # fragments of one datagram
MAX_DATAGRAM_BYTES = 65535 + 8     # IPv4: 16-bit total length; IPv6: 13-bit offset × 8 + last piece
MAX_FRAG_BYTES = 16 << 20          # fragment bytes held for all datagrams together
FRAG_TIMEOUT_RECORDS = 20_000      # records after its first fragment before a datagram is given up

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
_RAW_LINKTYPES = frozenset((101, 12, 14, 228, 229))   # RAW (and the DLT_RAW values 12/14), IPV4, IPV6

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))   # 802.1Q, 802.1ad, and pre-standard QinQ

# BSD NULL / OpenBSD LOOP: the address family, in the capturing host's byte order (NULL) or network
# order (LOOP); AF_INET is 2 everywhere, AF_INET6 is 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS).
_NULL_AF: dict[int, int] = {}
for _af, _ver in ((2, 4), (24, 6), (28, 6), (30, 6), (10, 6)):   # 10: Linux AF_INET6 (seen in the wild)
    _NULL_AF[_af] = _ver
    _NULL_AF[int.from_bytes(_af.to_bytes(4, "little"), "big")] = _ver

_IPPROTO_TCP = 6
_IPV6_EXT_GENERIC = frozenset((0, 43, 60, 135, 139, 140, 253, 254))  # (next, len*8+8) headers
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_MAX_IPV6_EXT_HEADERS = 16

_U16 = struct.Struct("!H")
_U32_LE = struct.Struct("<I")
_IP4 = struct.Struct("!BxHHHxB2x4s4s")            # ver/ihl, total length, id, flags/frag, proto, src, dst
_IP6 = struct.Struct("!4xHB1x16s16s")             # payload length, next header, src, dst
_IP6_FRAG = struct.Struct("!BxHI")                # next header, offset/flags, identification
_TCP = struct.Struct("!HHIIBB")                   # sport, dport, seq, ack, data offset, flags
_ETH_IP4_TCP = struct.Struct("!12xH" "BxH2xHxB2x4s4s" "HHIIBB")   # the three above in one, no IP options

_new_segment = tuple.__new__                      # Segment(...) without the Python-level __new__
# the problem kinds as the `admit` callback gets them
_MALFORMED = ProblemKind.MALFORMED_PACKET.value
_TRUNCATED = ProblemKind.PACKET_TRUNCATED.value
_UNREASSEMBLED = ProblemKind.IP_FRAGMENT_UNREASSEMBLED.value
_UNKNOWN_LINKTYPE = ProblemKind.UNKNOWN_LINKTYPE.value
_MISSING = object()


class _Datagram:
    """Fragments of one IP datagram in flight."""

    __slots__ = ("first_record_no", "first_ts", "pieces", "size", "total")

    def __init__(self, record_no: int, ts_ns: int) -> None:
        self.first_record_no = record_no
        self.first_ts = ts_ns
        self.pieces: list[tuple[int, bytes]] = []
        self.size = 0
        self.total: int | None = None


class PacketDecoder:
    """Turn `PacketRecord`s into TCP `Segment`s (sans-IO: one record in, a Segment or None out).

    Problems found while decoding are appended to `problems`; the caller drains the list.
    """

    def __init__(self, keep: Callable[[int, int], bool] | None = None,
                 admit: Callable[[str, int | None, int | None], bool] | None = None) -> None:
        """`keep(sport, dport)`, when given, drops the TCP segments it says no to before a Segment
        is built (processes sharing a capture each keep their own connections); defects of
        every packet are still reported.

        `admit(kind, record_no, ts_ns)`, when given, is asked before a problem is built (e.g.
        `ProblemLimiter.admit`): a problem it says no to is neither built nor put in `problems`
        (it counts it), so a flood of defective records past a kind's cap costs no detail text."""
        self._keep = keep
        self._admit = admit
        # the time of the last segment `keep` dropped (None once the caller has used it): time
        # passes for this process's connections too (idle timeouts), whoever owns the packet
        self.dropped_ts: int | None = None
        self.problems: list[Problem] = []
        self._frags: dict[tuple[Any, ...], _Datagram] = {}
        self._frag_deadline = 0
        self._frag_bytes = 0               # bytes held in self._frags (all pieces, overlaps included)
        self._slow_layers: dict[int, Any] = {}
        self._ip_classes: tuple[type, ...] | None = None

    # --- the fast path ------------------------------------------------------------------------

    def decode(self, rec: PacketRecord) -> Segment | None:
        """Decode one record. Returns the TCP segment it carries, or None (non-TCP, a fragment
        still waiting for the rest of its datagram, or a defect reported in `problems`)."""
        if self._frags and rec.record_no > self._frag_deadline:
            self._expire(rec.record_no)
        data = rec.data
        lt = rec.linktype
        if lt == LINKTYPE_ETHERNET:
            if len(data) >= 54:
                # The commonest packet of all, Ethernet + IPv4 without options + TCP, unfragmented
                # and captured whole, in one unpack; anything else takes the layer-by-layer path.
                (et, vihl, tlen, frag, proto, src, dst, sport, dport, seq, ack, doff,
                 flags) = _ETH_IP4_TCP.unpack_from(data)
                if et == _ETH_IPV4 and vihl == 0x45:
                    if proto == _IPPROTO_TCP and not frag & 0x3FFF and 40 <= tlen <= len(data) - 14:
                        p = 34 + ((doff >> 4) << 2)
                        end = 14 + tlen
                        if doff >= 0x50 and p <= end:
                            if self._keep is not None and not self._keep(sport, dport):
                                self.dropped_ts = rec.ts_ns
                                return None
                            return _new_segment(Segment, (rec.record_no, rec.ts_ns, 4, src, dst, sport,
                                                          dport, seq, ack, flags, data[p:end], False))
                        return self._tcp(rec, data, 34, end, 4, src, dst, False)   # a bad data offset
                    elif proto != _IPPROTO_TCP:
                        return None      # UDP, ICMP…: Rule 1, without the layer-by-layer path
            if len(data) < 14:
                self._short(rec, "Ethernet header", 14)
                return None
            et = data[12] << 8 | data[13]
            off = 14
        elif lt == LINKTYPE_LINUX_SLL:
            if len(data) < 16:
                self._short(rec, "Linux SLL header", 16)
                return None
            et = _U16.unpack_from(data, 14)[0]
            off = 16
        elif lt == LINKTYPE_LINUX_SLL2:
            if len(data) < 20:
                self._short(rec, "Linux SLL2 header", 20)
                return None
            et = _U16.unpack_from(data)[0]
            off = 20
        elif lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if len(data) < 4:
                self._short(rec, "loopback header", 4)
                return None
            ver = _NULL_AF.get(_U32_LE.unpack_from(data)[0])
            if ver == 4:
                return self._ipv4(rec, data, 4)
            if ver == 6:
                return self._ipv6(rec, data, 4)
            return None
        elif lt in _RAW_LINKTYPES:
            if not data:
                self._short(rec, "IP header", 1)
                return None
            ver = data[0] >> 4
            if ver == 4:
                return self._ipv4(rec, data, 0)
            if ver == 6:
                return self._ipv6(rec, data, 0)
            self._malformed(rec, "raw IP link: expected=IP version 4 or 6, found={}", ver)
            return None
        else:
            return self._slow(rec)
        while et in _VLAN_TPIDS:
            if len(data) < off + 4:
                self._short(rec, "VLAN tag", off + 4)
                return None
            et = _U16.unpack_from(data, off + 2)[0]
            off += 4
        if et == _ETH_IPV4:
            return self._ipv4(rec, data, off)
        if et == _ETH_IPV6:
            return self._ipv6(rec, data, off)
        return None

    def _ipv4(self, rec: PacketRecord, data: bytes, off: int) -> Segment | None:
        n = len(data)
        if n - off < 20:
            self._short(rec, "IPv4 header", off + 20)
            return None
        vihl, tlen, ident, frag, proto, src, dst = _IP4.unpack_from(data, off)
        if vihl >> 4 != 4:
            self._malformed(rec, "IPv4: expected=version 4, found={}", vihl >> 4)
            return None
        if proto != _IPPROTO_TCP:
            return None
        ihl = (vihl & 15) << 2
        if ihl < 20:
            self._malformed(rec, "IPv4: expected=header length >= 20, found={}", ihl)
            return None
        if tlen == 0:                    # TSO/GSO capture: the stack left the length to the NIC
            end = n
            truncated = rec.caplen < rec.wirelen
        elif tlen < ihl:
            self._malformed(rec, "IPv4: expected=total length >= header length {}, found={}",
                            ihl, tlen)
            return None
        else:
            end = off + tlen
            truncated = end > n
            if truncated:
                end = n
        t = off + ihl
        if t > end:
            if truncated:
                self._truncated(rec, "IPv4 header options cut by the snap length")
                return None
            self._malformed(rec, "IPv4: expected=header length {} within the packet, found={}",
                            ihl, end - off)
            return None
        if frag & 0x3FFF:                # more-fragments set or a non-zero offset
            if truncated:
                self._truncated(rec, "IPv4 fragment cut by the snap length; datagram not reassembled")
                return None
            whole = self._reassemble(rec, (src, dst, ident, proto), (frag & 0x1FFF) << 3,
                                     bool(frag & 0x2000), data[t:end])
            if whole is None:
                return None
            return self._tcp(rec, whole, 0, len(whole), 4, src, dst, False)
        return self._tcp(rec, data, t, end, 4, src, dst, truncated)

    def _ipv6(self, rec: PacketRecord, data: bytes, off: int) -> Segment | None:
        n = len(data)
        if n - off < 40:
            self._short(rec, "IPv6 header", off + 40)
            return None
        if data[off] >> 4 != 6:
            self._malformed(rec, "IPv6: expected=version 6, found={}", data[off] >> 4)
            return None
        plen, nh, src, dst = _IP6.unpack_from(data, off)
        t = off + 40
        if plen == 0:                    # jumbogram or TSO capture: the record decides
            end = n
            truncated = rec.caplen < rec.wirelen
        else:
            end = t + plen
            truncated = end > n
            if truncated:
                end = n
        hops = 0
        while nh != _IPPROTO_TCP:
            if nh in _IPV6_EXT_GENERIC or nh == _IPV6_AH:
                if end - t < 8:
                    break                # reported below as a cut / malformed header
                hlen = (data[t + 1] + 2) << 2 if nh == _IPV6_AH else (data[t + 1] + 1) << 3
                nh = data[t]
                t += hlen
            elif nh == _IPV6_FRAGMENT:
                if end - t < 8:
                    break
                nh, offflags, ident = _IP6_FRAG.unpack_from(data, t)
                t += 8
                if offflags & 0xFFF9:    # a real fragment (not an atomic one): reassemble
                    if truncated:
                        self._truncated(rec, "IPv6 fragment cut by the snap length; "
                                             "datagram not reassembled")
                        return None
                    whole = self._reassemble(rec, (src, dst, ident, -1), offflags & 0xFFF8,
                                             bool(offflags & 1), data[t:end])
                    if whole is None:
                        return None
                    data, t, end = whole, 0, len(whole)
            else:
                return None              # UDP, ICMPv6, ESP, no next header…: not TCP
            hops += 1
            if hops > _MAX_IPV6_EXT_HEADERS:
                self._malformed(rec, "IPv6: more than {} extension headers", _MAX_IPV6_EXT_HEADERS)
                return None
            if t > end:
                break
        if nh != _IPPROTO_TCP or t > end:
            if truncated:
                self._truncated(rec, "IPv6 extension headers cut by the snap length")
                return None
            self._malformed(rec, "IPv6: extension header runs past the end of the packet")
            return None
        return self._tcp(rec, data, t, end, 6, src, dst, truncated)

    def _tcp(self, rec: PacketRecord, data: bytes, t: int, end: int, ver: int, src: bytes, dst: bytes,
             truncated: bool) -> Segment | None:
        if end - t < 20:
            if truncated:
                self._truncated(rec, "TCP header cut by the snap length")
                return None
            self._malformed(rec, "TCP: expected=header of 20 bytes, found={}", end - t)
            return None
        sport, dport, seq, ack, doff, flags = _TCP.unpack_from(data, t)
        doff = (doff >> 4) << 2
        if doff < 20:
            self._malformed(rec, "TCP: expected=data offset >= 20, found={}", doff)
            return None
        p = t + doff
        if p > end:
            if not truncated:
                self._malformed(rec, "TCP: expected=header of {} bytes, found={}", doff, end - t)
                return None
            p = end
        if truncated:
            self._truncated(rec, "TCP payload cut by the snap length (caplen={}, wirelen={})",
                            rec.caplen, rec.wirelen)
        if self._keep is not None and not self._keep(sport, dport):
            self.dropped_ts = rec.ts_ns
            return None
        return _new_segment(Segment, (rec.record_no, rec.ts_ns, ver, src, dst, sport, dport, seq, ack,
                                      flags, data[p:end], truncated))

    # --- defects ------------------------------------------------------------------------------

    # A defect's detail is a template and its arguments, formatted only when `admit` lets the
    # problem be listed: past a kind's cap a record costs one call and a counter, no string.

    def _malformed(self, rec: PacketRecord, detail: str, *args: Any) -> None:
        if self._admit is None or self._admit(_MALFORMED, rec.record_no, rec.ts_ns):
            self._add(ProblemKind.MALFORMED_PACKET, rec.record_no, rec.ts_ns, detail, args)

    def _truncated(self, rec: PacketRecord, detail: str, *args: Any) -> None:
        if self._admit is None or self._admit(_TRUNCATED, rec.record_no, rec.ts_ns):
            self._add(ProblemKind.PACKET_TRUNCATED, rec.record_no, rec.ts_ns, detail, args)

    def _report(self, kind: ProblemKind, key: str, record_no: int | None, ts_ns: int | None, detail: str,
                args: tuple[Any, ...] = ()) -> None:
        """Append the problem if `admit` lets it be listed (key: the kind as a str)."""
        if self._admit is None or self._admit(key, record_no, ts_ns):
            self._add(kind, record_no, ts_ns, detail, args)

    def _add(self, kind: ProblemKind, record_no: int | None, ts_ns: int | None, detail: str,
             args: tuple[Any, ...]) -> None:
        self.problems.append(Problem(kind, detail.format(*args) if args else detail, record_no, ts_ns))

    def _short(self, rec: PacketRecord, what: str, need: int) -> None:
        """The record ends before a header does: a snap-length cut or a malformed record."""
        if rec.caplen < rec.wirelen:
            self._truncated(rec, "{} cut by the snap length (caplen={})", what, rec.caplen)
        else:
            self._malformed(rec, "{}: expected={} bytes, found={}", what, need, len(rec.data))

    # --- fragments ----------------------------------------------------------------------------

    def _reassemble(self, rec: PacketRecord, key: tuple[Any, ...], offset: int, more: bool,
                    piece: bytes) -> bytes | None:
        """Add one fragment; return the whole datagram payload once every byte is there."""
        frags = self._frags
        entry = frags.get(key)
        if entry is None:
            if len(frags) >= MAX_FRAG_DATAGRAMS:
                self._drop(next(iter(frags)), "too many datagrams in flight")
            entry = frags[key] = _Datagram(rec.record_no, rec.ts_ns)
            if len(frags) == 1:
                self._frag_deadline = rec.record_no + FRAG_TIMEOUT_RECORDS
        if (offset + len(piece) > MAX_DATAGRAM_BYTES or len(entry.pieces) >= MAX_FRAG_PIECES
                or entry.size + len(piece) > 2 * MAX_DATAGRAM_BYTES):
            self._drop(key, "datagram over the size or fragment-count limit")
            return None
        while self._frag_bytes + len(piece) > MAX_FRAG_BYTES:
            oldest = next(iter(frags))
            if oldest == key:
                self._drop(key, f"fragments over the memory cap of {MAX_FRAG_BYTES} bytes")
                return None
            self._drop(oldest, f"fragments over the memory cap of {MAX_FRAG_BYTES} bytes")
        entry.pieces.append((offset, piece))
        entry.size += len(piece)
        self._frag_bytes += len(piece)
        if not more:
            entry.total = offset + len(piece)
        total = entry.total
        if total is None or entry.size < total:
            return None
        covered = 0
        for start, chunk in sorted(entry.pieces, key=itemgetter(0)):
            if start > covered:
                return None              # a hole: wait for the missing fragment
            covered = max(covered, start + len(chunk))
        if covered < total:
            return None
        buf = bytearray(total)
        for start, chunk in reversed(entry.pieces):    # the first copy of overlapping bytes wins
            buf[start:start + len(chunk)] = chunk[:max(0, total - start)]
        del frags[key]
        self._frag_bytes -= entry.size
        self._reset_deadline()
        return bytes(buf)

    def _drop(self, key: tuple[Any, ...], why: str) -> None:
        entry = self._frags.pop(key)
        self._frag_bytes -= entry.size
        self._report_unreassembled(key, entry, why)

    def _reset_deadline(self) -> None:
        if self._frags:
            self._frag_deadline = next(iter(self._frags.values())).first_record_no + FRAG_TIMEOUT_RECORDS

    def _expire(self, now: int) -> None:
        frags = self._frags
        for key in list(frags):
            entry = frags[key]
            if now - entry.first_record_no <= FRAG_TIMEOUT_RECORDS:
                break                    # insertion order is age order
            self._drop(key, f"no missing fragment within {FRAG_TIMEOUT_RECORDS} records")
        self._reset_deadline()

    def _report_unreassembled(self, key: tuple[Any, ...], entry: _Datagram, why: str) -> None:
        src, dst, ident, proto = key
        self._report(ProblemKind.IP_FRAGMENT_UNREASSEMBLED, _UNREASSEMBLED, entry.first_record_no,
                     entry.first_ts,
                     "{} datagram id={} {} > {}: expected={}, found={} fragments, {} bytes ({})",
                     ("IPv6" if proto == -1 else "IPv4", ident, _Addr(src), _Addr(dst),
                      "a last fragment" if entry.total is None else f"{entry.total} bytes",
                      len(entry.pieces), entry.size, why))

    def finish(self) -> None:
        """End of capture: report every datagram still waiting for fragments (into `problems`)."""
        frags = self._frags
        for key, entry in list(frags.items()):
            self._report_unreassembled(key, entry, "capture ended")
        frags.clear()
        self._frag_bytes = 0

    # --- rare link types: scapy's dissectors ----------------------------------------------------

    def _slow(self, rec: PacketRecord) -> Segment | None:
        lt = rec.linktype
        layer_cls = self._slow_layers.get(lt, _MISSING)
        if layer_cls is _MISSING:
            layer_cls = self._slow_layers[lt] = self._lookup_linktype(rec)
        if layer_cls is None:
            return None
        assert self._ip_classes is not None
        data = rec.data
        try:
            with quiet_scapy():    # and log warnings to stderr
                pkt = layer_cls(data)
        except Exception as exc:   # scapy dissectors may raise anything on garbage
            self._malformed(rec, "link type {}: scapy could not dissect the record ({})", lt, exc)
            return None
        layer = pkt
        while layer is not None and layer.__class__.__name__ != "NoPayload":
            if isinstance(layer, self._ip_classes):
                original = getattr(layer, "original", None)
                if not original:
                    return None
                off = len(data) - len(original)
                if off < 0 or data[off:] != original:
                    return None
                ver = data[off] >> 4
                if ver == 4:
                    return self._ipv4(rec, data, off)
                if ver == 6:
                    return self._ipv6(rec, data, off)
                return None
            layer = layer.payload
        return None

    def _lookup_linktype(self, rec: PacketRecord) -> Any:
        """Find scapy's layer for a link type (importing scapy's layers the first time: ~0.5 s)."""
        lt = rec.linktype
        try:
            with quiet_scapy():
                import scapy.layers.all  # noqa: F401  (registers every layer in conf.l2types)
            from scapy.config import conf
            from scapy.layers.inet import IP
            from scapy.layers.inet6 import IPv6
        except Exception as exc:   # a broken optional scapy layer must not stop the analysis
            self._report(ProblemKind.UNKNOWN_LINKTYPE, _UNKNOWN_LINKTYPE, rec.record_no, rec.ts_ns,
                         "link type {}: scapy's dissectors are unavailable ({})", (lt, exc))
            return None
        self._ip_classes = (IP, IPv6)
        layer_cls = conf.l2types.num2layer.get(lt)
        if layer_cls is None:
            self._report(ProblemKind.UNKNOWN_LINKTYPE, _UNKNOWN_LINKTYPE, rec.record_no, rec.ts_ns,
                         "link type {0}: no decoder (expected=Ethernet, Linux SLL/SLL2, NULL/LOOP, raw IP "
                         "or a link type scapy knows, found={0}); its records are skipped", (lt,))
        return layer_cls


class _Addr:
    """An IP address in a detail template, formatted (ipaddress) only when the detail is."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __format__(self, spec: str) -> str:
        import ipaddress

        try:
            return str(ipaddress.ip_address(self.raw))
        except ValueError:
            return self.raw.hex()
