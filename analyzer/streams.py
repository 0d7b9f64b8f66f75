"""TCP reassembly: Segment events in, ordered bytes per direction plus gap/FIN/RST events out.

This module owns the flow table and everything TCP-level. scapy's TCPSession zero-fills holes
silently; we must report them, so the reassembler is our own (sans-IO: `feed()` a Segment, get
StreamEvents back; `finish()` at the end of the capture).

Rules (one place, h11-style):
  Rule 1: a flow is keyed by its 4-tuple (the address length tells IPv4 from IPv6). conn_ids are
          1, 2, 3… in order of first appearance. Direction 0 is the client: the SYN sender; with
          no SYN seen, the side that did not send a SYN-ACK, else the higher (ephemeral) port,
          else the first packet's sender. StreamOpened comes first.
  Rule 2: sequence numbers are turned into unbounded relative offsets at the door (mod 2**32
          arithmetic, unwrapped around the next expected byte), so nothing else sees wraparound.
          SYN and FIN each consume one sequence number; SYN payload (TFO) is data.
  Rule 3: each direction's bytes are delivered once, in order. Retransmissions (full and partial)
          are dropped; overlaps keep the FIRST copy (TCP_OVERLAP_CONFLICT when the copies differ);
          out-of-order data waits in a bounded buffer. Data that becomes deliverable is attributed
          to the packet whose arrival made it deliverable (Wireshark's convention).
  Rule 4: a hole is given up on (StreamGap + TCP_GAP, then the data after it) when the peer ACKs
          past it, when the buffer caps are hit (+ TCP_BUFFER_LIMIT), on RST, on release (idle,
          eviction, finish). A FIN past a hole does not declare it by itself: the hole is still
          fillable by a retransmission, and the peer's ACK of the FIN declares it one packet later.
  Rule 5: StreamEnd(rst=False) when a direction's FIN is reached in sequence; on RST the sender's
          direction gets StreamEnd(rst=True). Both FINs reached → StreamClosed("closed"); RST →
          StreamClosed("reset"); the flow is released and its tuple remembered for a while, so
          stray retransmissions do not open bogus connections. A SYN with a new ISN starts a new
          connection (port reuse), closing a still-open predecessor (reason "idle": its end was
          not seen).
  Rule 6: flows idle longer than idle_timeout_ns (capture time) are released ("idle", with a
          FLOW_IDLE_RELEASED problem when they carried data), checked from the least recently
          active end of an LRU list every so often; at max_flows the least recently active flow
          is released with a FLOW_LIMIT problem. Idleness is judged against an idle clock that
          follows the packets' timestamps but believes a jump forward (more than two check
          intervals) only once _JUMP_CONFIRMATIONS checks in a row saw it: one packet stamped
          hours ahead does not end every open flow.
  Rule 7: a half-open flow (no payload byte seen yet in either direction: a SYN flood, a port
          scan) costs memory and holds nothing: at most max_half_open of them are kept, and one
          idle for half_open_timeout_ns is released. Releasing one loses nothing: if its data
          comes later, the flow is picked up mid-stream from its first byte. The count is kept
          in `half_open_released` (no problem row: nothing was lost).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterator
from typing import cast

from analyzer.events import (
    Problem,
    Segment,
    StreamClosed,
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
    StreamOpened,
    StreamProblem,
)
from analyzer.protocol import ProblemKind

__all__ = ["Reassembler"]

# RFC 9293, Section 3.1: the control bits of the TCP header's flags byte.
FIN = 0x01
SYN = 0x02
RST = 0x04
ACK = 0x10
_CONTROL = FIN | SYN | RST

_MOD = 1 << 32
_MASK = _MOD - 1
_HALF = 1 << 31

#: A directional key: (source address, source port, destination address, destination port).
_Key = tuple[bytes, int, bytes, int]

#: How long (capture time) a closed tuple is remembered to swallow stray retransmissions.
_RECENT_TTL_NS = 300 * 10**9
#: How many closed tuples (directional keys, two per flow) are remembered at most.
_RECENT_MAX = 1 << 16
#: Out-of-order chunks allowed per this many bytes of buffer cap (bounds per-chunk overhead).
_BYTES_PER_CHUNK = 256

#: Checks in a row that must see a jump of the capture clock before the idle clock follows it.
_JUMP_CONFIRMATIONS = 4

#: An ACK further than this past the next expected byte is not believed (bogus, or a wrong base).
_ACK_SANITY = 1 << 30

_new_event = tuple.__new__        # StreamData(...) without the NamedTuple __new__ (hot path)
_NO_EVENTS = cast("list[StreamEvent]", ())   # shared, immutable: callers only iterate


class _Half:
    """One direction of a flow: its sequence space, its out-of-order buffer, its FIN."""

    __slots__ = ("ack_out", "acked", "base_abs", "bias", "chunks", "dir", "ended", "fin_off", "flow",
                 "isn", "nbytes", "nxt", "nxt_abs", "peer", "starts", "syn_seen")

    def __init__(self, flow: _Flow, direction: int) -> None:
        self.flow = flow
        self.dir = direction
        self.peer: _Half = self
        self.nxt = 0                 # relative offset of the next byte to deliver
        self.nxt_abs = -1            # the same as a TCP sequence number; -1: not known yet
        self.base_abs = -1           # sequence number of relative offset 0
        self.bias = 0                # 1 when the ISN is known: relative seqs are shown as Wireshark does
        self.syn_seen = False
        self.isn = -1
        self.starts: list[int] = []  # out-of-order chunks: sorted, disjoint, all > nxt
        self.chunks: list[bytes] = []
        self.nbytes = 0              # bytes held in chunks
        self.fin_off: int | None = None
        self.ended = False
        self.acked = 0               # highest offset the peer acknowledged
        self.ack_out = -1            # last ACK field this side sent (to skip repeated ACKs cheaply)

    def set_base(self, seq: int, syn_seen: bool, bias: int) -> None:
        self.base_abs = self.nxt_abs = seq & _MASK
        self.bias = bias
        if syn_seen:
            self.syn_seen = True
            self.isn = (seq - 1) & _MASK

    def rel(self, seq: int) -> int:
        """Unbounded relative offset of sequence number `seq`, unwrapped around the next byte."""
        d = (seq - self.nxt_abs) & _MASK
        if d >= _HALF:
            d -= _MOD
        return self.nxt + d


class _Flow:
    __slots__ = ("bare", "buffering", "conn_id", "halves", "keys", "last_rec", "last_ts")

    def __init__(self, conn_id: int, keys: tuple[_Key, _Key], rec: int, ts: int) -> None:
        self.conn_id = conn_id
        self.keys = keys             # directional keys of direction 0 and 1
        self.halves = (_Half(self, 0), _Half(self, 1))
        self.halves[0].peer = self.halves[1]
        self.halves[1].peer = self.halves[0]
        self.last_rec = rec
        self.last_ts = ts
        self.buffering = False       # registered in Reassembler._buffering
        self.bare = True             # no payload seen yet (registered in Reassembler._bare)


class Reassembler:
    """Turns TCP segments into per-direction byte streams with explicit gaps.

    Args:
        max_buffered_per_flow: cap on out-of-order bytes held for one flow (both directions).
        max_buffered_total: cap on out-of-order bytes held for all flows together.
        idle_timeout_ns: a flow with no packet for this long (capture time) is released.
        max_flows: at this many open flows, the least recently active one is released.
        max_half_open: at most this many flows that carried no payload yet are kept (Rule 7).
        half_open_timeout_ns: a flow with no payload and no packet for this long is released.

    Counters: `flows_evicted` (released at max_flows), `half_open_released` (Rule 7),
    `bytes_given_up` (holes declared because a buffer cap was hit).
    """

    def __init__(self, *, max_buffered_per_flow: int = 8 << 20, max_buffered_total: int = 64 << 20,
                 idle_timeout_ns: int = 3600 * 10**9, max_flows: int = 100_000,
                 max_half_open: int = 20_000, half_open_timeout_ns: int = 120 * 10**9) -> None:
        self.max_buffered_per_flow = max_buffered_per_flow
        self.max_buffered_total = max_buffered_total
        self.idle_timeout_ns = idle_timeout_ns
        self.max_flows = max(1, max_flows)
        self.max_half_open = max(1, max_half_open)
        self.half_open_timeout_ns = half_open_timeout_ns
        self.flows_evicted = 0
        self.half_open_released = 0
        self.bytes_given_up = 0
        self._max_chunks_flow = max(16, max_buffered_per_flow // _BYTES_PER_CHUNK)
        self._max_chunks_total = max(64, max_buffered_total // _BYTES_PER_CHUNK)
        self._table: dict[_Key, _Half] = {}                   # directional 4-tuple → sender's half
        self._lru: OrderedDict[int, _Flow] = OrderedDict()     # conn_id → flow, least recent first
        self._recent: OrderedDict[_Key, tuple[int, int]] = OrderedDict()  # key → (closed ts, isn)
        self._buffering: OrderedDict[_Flow, None] = OrderedDict()  # flows holding out-of-order data,
        #                                                        oldest first
        self._bare: OrderedDict[int, _Flow] = OrderedDict()    # flows with no payload yet, LRU
        self._total_bytes = 0
        self._total_chunks = 0
        self._next_id = 1
        self._check_every = max(1, min(idle_timeout_ns // 16, half_open_timeout_ns // 2, 60 * 10**9))
        self._next_check = -(1 << 62)
        self._clock: int | None = None                         # the idle clock (Rule 6)
        self._jumps = 0                                        # checks in a row that saw a jump
        self._jump_low = 0                                     # the earliest time they saw

    # --- public ------------------------------------------------------------------------------

    @property
    def flows_open(self) -> int:
        return len(self._lru)

    @property
    def bytes_buffered(self) -> int:
        """Out-of-order payload bytes held, all flows together."""
        return self._total_bytes

    def new_id(self) -> int:
        """The next connection id (the connection layer takes ids here for the several WebSockets
        an HTTP/2 connection carries, so that ids stay dense and in order of appearance)."""
        conn_id = self._next_id
        self._next_id += 1
        return conn_id

    def feed(self, seg: Segment) -> list[StreamEvent]:
        """Process one segment (in capture record order) and return what it made happen."""
        record_no, ts, _ver, src, dst, sport, dport, seq, ack, flags, payload, _cut = seg
        out: list[StreamEvent] | None = None
        if ts >= self._next_check:
            out = self._expire(ts)
        h = self._table.get((src, sport, dst, dport))
        if h is not None:
            flow = h.flow
            flow.last_ts = ts
            flow.last_rec = record_no
            self._lru.move_to_end(flow.conn_id)
            if flow.bare:
                if payload:
                    flow.bare = False
                    del self._bare[flow.conn_id]
                else:
                    self._bare.move_to_end(flow.conn_id)
            fast = not flags & _CONTROL
            if fast and flags & ACK and ack != h.ack_out:
                # An ACK at or behind the peer's next byte tells nothing new (no hole can be
                # behind it); one ahead of it may declare a gap: that takes the slow path.
                p = h.peer
                if p.nxt_abs >= 0 and 0 < ((ack - p.nxt_abs) & _MASK) < _HALF:
                    fast = False
                else:
                    h.ack_out = ack
            if fast:
                if not payload:                           # duplicate pure ACK / window update
                    return out or _NO_EVENTS
                if seq == h.nxt_abs and not h.starts and h.fin_off is None:
                    # The hot path: in-order data, no hole, nothing new acknowledged.
                    n = len(payload)
                    h.nxt += n
                    h.nxt_abs = (h.nxt_abs + n) & _MASK
                    ev = _new_event(StreamData, (flow.conn_id, h.dir, payload, record_no, ts))
                    if out:
                        out.append(ev)
                        return out
                    return [ev]
        if out is None:
            out = []
        self._slow(seg, h, out)
        return out or _NO_EVENTS

    def tick(self, ts: int) -> list[StreamEvent]:
        """A TCP segment of a connection analysed elsewhere (another process's share) was seen at
        `ts`: run the idle and half-open checks exactly when `feed` would have run them."""
        if ts >= self._next_check:
            return self._expire(ts)
        return _NO_EVENTS

    def finish(self) -> list[StreamEvent]:
        """End of capture: give up on every hole, deliver what is buffered, release every flow."""
        out: list[StreamEvent] = []
        for flow in list(self._lru.values()):
            self._flush_and_release(flow, "end-of-capture", flow.last_rec, flow.last_ts, out)
        return out

    # --- per segment -------------------------------------------------------------------------

    def _slow(self, seg: Segment, h: _Half | None, out: list[StreamEvent]) -> None:
        flags = seg.flags
        rec = seg.record_no
        ts = seg.ts_ns
        if h is None:
            h = self._open(seg, out)
        elif flags & SYN:
            h = self._syn_on_open_flow(h, seg, out)
        if h is None:
            return
        if flags & ACK and seg.ack != h.ack_out:
            h.ack_out = seg.ack
            self._on_ack(h.peer, seg.ack, rec, ts, out)
        if flags & RST:
            self._reset(h, rec, ts, out)
            return
        seq = seg.seq
        if flags & SYN:
            if h.nxt_abs < 0:
                h.set_base(seq + 1, True, 1)
            seq = (seq + 1) & _MASK
        elif h.nxt_abs < 0:
            h.set_base(seq, False, 0)                     # picked up mid-stream: data starts here
        off = h.rel(seq)
        payload = seg.payload
        if payload:
            self._on_data(h, off, payload, rec, ts, out)
        if flags & FIN and not seg.truncated:             # a cut segment hides where its FIN is
            self._on_fin(h, off + len(payload), rec, ts, out)
        if h.ended and h.peer.ended:
            self._release(h.flow, "closed", rec, ts, out)

    def _open(self, seg: Segment, out: list[StreamEvent]) -> _Half | None:
        """A segment of an unknown tuple: a new connection, a stray of a closed one, or nothing."""
        flags = seg.flags
        if flags & RST:
            return None                                   # a lone RST opens nothing
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        rkey = (seg.dst, seg.dport, seg.src, seg.sport)
        recent = self._recent.get(key)
        if recent is not None:
            closed_ts, old_isn = recent
            if seg.ts_ns - closed_ts <= _RECENT_TTL_NS and (not flags & SYN or seg.seq == old_isn):
                return None                               # late retransmission or stray: drop
            self._recent.pop(key, None)
            self._recent.pop(rkey, None)
        bare = self._bare
        if len(bare) >= self.max_half_open:
            victim = next(iter(bare.values()))
            self.half_open_released += 1
            self._flush_and_release(victim, "idle", victim.last_rec, victim.last_ts, out)
        while len(self._lru) >= self.max_flows:
            victim = next(iter(bare.values())) if bare else next(iter(self._lru.values()))
            self.flows_evicted += 1
            out.append(StreamProblem(victim.conn_id, None, Problem(
                ProblemKind.FLOW_LIMIT,
                f"flow table full (max_flows={self.max_flows}): released the least recently active "
                f"connection", seg.record_no, seg.ts_ns)))
            self._flush_and_release(victim, "idle", victim.last_rec, victim.last_ts, out)
        if flags & SYN:
            sender_is_client = not flags & ACK            # SYN: client; SYN-ACK: server
        elif seg.sport != seg.dport:
            sender_is_client = seg.sport > seg.dport      # the ephemeral port is the client's
        else:
            sender_is_client = True
        conn_id = self.new_id()
        keys = (key, rkey) if sender_is_client else (rkey, key)
        flow = _Flow(conn_id, keys, seg.record_no, seg.ts_ns)
        self._table[keys[0]] = flow.halves[0]
        self._table[keys[1]] = flow.halves[1]
        self._lru[conn_id] = flow
        if seg.payload:
            flow.bare = False
        else:
            bare[conn_id] = flow
        if sender_is_client:
            client, cport, server, sport = seg.src, seg.sport, seg.dst, seg.dport
        else:
            client, cport, server, sport = seg.dst, seg.dport, seg.src, seg.sport
        syn_seen = bool(flags & SYN) and sender_is_client
        out.append(StreamOpened(conn_id, seg.record_no, seg.ts_ns, seg.ip_version, client, cport,
                                server, sport, syn_seen))
        h = flow.halves[0] if sender_is_client else flow.halves[1]
        if flags & SYN and flags & ACK:
            h.peer.set_base(seg.ack, False, 1)            # the SYN-ACK tells where client data starts
        return h

    def _syn_on_open_flow(self, h: _Half, seg: Segment, out: list[StreamEvent]) -> _Half | None:
        """A SYN on a tuple with an open flow: retransmission, the expected SYN-ACK, or port reuse."""
        isn = seg.seq
        if h.syn_seen:
            if isn == h.isn:
                return h                                  # retransmitted SYN
        elif h.nxt_abs < 0:
            return h                                      # this side's first SYN (the SYN-ACK)
        elif ((isn + 1) & _MASK) == h.base_abs:
            h.syn_seen = True                             # a late SYN of this very connection
            h.isn = isn
            return h
        # A new ISN: the tuple was reused without the old connection's end being seen.
        self._flush_and_release(h.flow, "idle", seg.record_no, seg.ts_ns, out)
        return self._open(seg, out)

    def _on_ack(self, h: _Half, ack: int, rec: int, ts: int, out: list[StreamEvent]) -> None:
        """The peer of `h` acknowledged up to `ack`: bytes below it it received, so a hole there
        is bytes the capture missed."""
        if h.nxt_abs < 0:
            return
        rel = h.rel(ack)
        if rel <= h.acked or rel - h.nxt > _ACK_SANITY:
            return                                        # old news, or not an ACK of this stream
        h.acked = rel
        if rel > h.nxt and (h.starts or h.fin_off is not None):
            self._resolve(h, rel, rec, ts, out)

    def _on_data(self, h: _Half, off: int, data: bytes, rec: int, ts: int,
                 out: list[StreamEvent]) -> None:
        end = off + len(data)
        fin = h.fin_off
        if fin is not None and end > fin:                 # nothing exists past a FIN
            if off >= fin:
                return
            data = data[:fin - off]
            end = fin
        nxt = h.nxt
        if end <= nxt:
            return                                        # full retransmission
        if off < nxt:
            data = data[nxt - off:]                       # partial retransmission
            off = nxt
        starts = h.starts
        if off == nxt and (not starts or end <= starts[0]):
            self._deliver(h, data, rec, ts, out)
            return
        self._insert(h, off, data, rec, ts, out)
        if starts and starts[0] == h.nxt:
            self._deliver(h, b"", rec, ts, out)
        if starts and h.acked > h.nxt:
            self._resolve(h, h.acked, rec, ts, out)
        if h.starts:
            self._enforce_limits(h, rec, ts, out)

    def _on_fin(self, h: _Half, fin_off: int, rec: int, ts: int, out: list[StreamEvent]) -> None:
        if h.fin_off is not None or fin_off < h.nxt:
            return                                        # retransmitted FIN, or one behind data we have
        h.fin_off = fin_off
        starts, chunks = h.starts, h.chunks
        while starts and starts[-1] >= fin_off:           # buffered bytes past the FIN do not exist
            starts.pop()
            self._account(h, -len(chunks.pop()), -1)
        if starts and starts[-1] + len(chunks[-1]) > fin_off:
            cut = chunks[-1][:fin_off - starts[-1]]
            self._account(h, len(cut) - len(chunks[-1]), 0)
            chunks[-1] = cut
        if h.nxt == fin_off:
            self._reach_end(h, rec, ts, out)
        elif h.acked > h.nxt:
            self._resolve(h, h.acked, rec, ts, out)

    def _reset(self, h: _Half, rec: int, ts: int, out: list[StreamEvent]) -> None:
        flow = h.flow
        for half in flow.halves:
            self._flush_half(half, rec, ts, out)
        if not h.ended:
            h.ended = True
            out.append(StreamEnd(flow.conn_id, h.dir, True, rec, ts))
        self._release(flow, "reset", rec, ts, out)

    # --- delivery, holes, buffer -------------------------------------------------------------

    def _deliver(self, h: _Half, head: bytes, rec: int, ts: int, out: list[StreamEvent]) -> None:
        """Deliver `head` (which starts at h.nxt) and every buffered chunk contiguous with it."""
        pos = h.nxt + len(head)
        starts = h.starts
        if starts and starts[0] == pos:
            chunks = h.chunks
            parts = [head] if head else []
            k = 0
            n = len(starts)
            while k < n and starts[k] == pos:
                c = chunks[k]
                parts.append(c)
                pos += len(c)
                k += 1
            taken = pos - h.nxt - len(head)
            del starts[:k]
            del chunks[:k]
            self._account(h, -taken, -k)
            head = parts[0] if len(parts) == 1 else b"".join(parts)
        if head:
            h.nxt = pos
            h.nxt_abs = (h.base_abs + pos) & _MASK
            out.append(StreamData(h.flow.conn_id, h.dir, head, rec, ts))
        if h.fin_off is not None and h.nxt >= h.fin_off and not h.ended:
            self._reach_end(h, rec, ts, out)

    def _gap(self, h: _Half, size: int, rec: int, ts: int, out: list[StreamEvent]) -> None:
        conn_id = h.flow.conn_id
        out.append(StreamGap(conn_id, h.dir, size, rec, ts))
        out.append(StreamProblem(conn_id, h.dir, Problem(
            ProblemKind.TCP_GAP, f"{size} bytes missing at relative seq {h.nxt + h.bias}", rec, ts)))
        h.nxt += size
        h.nxt_abs = (h.base_abs + h.nxt) & _MASK

    def _reach_end(self, h: _Half, rec: int, ts: int, out: list[StreamEvent]) -> None:
        h.ended = True
        out.append(StreamEnd(h.flow.conn_id, h.dir, False, rec, ts))

    def _resolve(self, h: _Half, limit: int, rec: int, ts: int, out: list[StreamEvent]) -> None:
        """Give up on the holes below `limit` that have data (or the FIN) after them."""
        while h.nxt < limit and not h.ended:
            if h.starts:
                hole_end = min(h.starts[0], limit)
            elif h.fin_off is not None:
                hole_end = min(h.fin_off, limit)
            else:
                return                                    # nothing after the hole yet: wait for it
            if hole_end <= h.nxt:
                return
            self._gap(h, hole_end - h.nxt, rec, ts, out)
            self._deliver(h, b"", rec, ts, out)

    def _flush_half(self, h: _Half, rec: int, ts: int, out: list[StreamEvent]) -> None:
        """Release time: every hole becomes a gap, every buffered byte is delivered."""
        if h.nxt_abs < 0 or h.ended:
            return
        while h.starts:
            size = h.starts[0] - h.nxt
            if size > 0:
                self._gap(h, size, rec, ts, out)
            self._deliver(h, b"", rec, ts, out)
        if h.ended:
            return
        if h.fin_off is not None:
            end = h.fin_off
        elif h.acked - h.nxt > 1:
            # Acknowledged bytes the capture missed at the very end. A 1-byte difference is most
            # likely an uncaptured FIN, not data, so it is not reported.
            end = h.acked
        else:
            end = h.nxt
        if end > h.nxt:
            self._gap(h, end - h.nxt, rec, ts, out)
        if h.fin_off is not None and h.nxt >= h.fin_off:
            self._reach_end(h, rec, ts, out)

    def _insert(self, h: _Half, off: int, data: bytes, rec: int, ts: int,
                out: list[StreamEvent]) -> None:
        """Buffer [off, off+len) keeping the bytes already buffered (the first copy) where they
        overlap; report overlapping bytes that differ (one problem per segment at most).

        The chunks lying wholly inside the segment are merged with its new bytes into one chunk,
        so a segment costs O(1 + chunks it merges away): a retransmission over many small pieces
        pays for them once, and the next one compares a single chunk (C-speed slices, no loop)."""
        starts, chunks = h.starts, h.chunks
        end = off + len(data)
        base = off                                        # data[i] is the byte at offset base + i
        differ: list[tuple[int, int]] = []                # overlapping ranges whose copies differ
        i = bisect_left(starts, off) - 1                  # the last chunk starting before `off`
        if i >= 0:
            ps = starts[i]
            c = chunks[i]
            pe = ps + len(c)
            if pe > off:                                  # overlaps it
                ov = min(pe, end)
                if c[off - ps:ov - ps] != data[:ov - off]:
                    differ.append((off, ov - off))
                off = pe
        i += 1
        j = bisect_left(starts, end, i)                   # chunks i..j-1 start inside [off, end)
        stop = end
        if j > i:
            ls = starts[j - 1]
            c = chunks[j - 1]
            if ls + len(c) > end:                         # the last runs past the segment: kept apart
                if c[:end - ls] != data[ls - base:]:
                    differ.append((ls, end - ls))
                j -= 1
                stop = ls
        if off < stop:
            if j == i:                                    # nothing buffered inside: one new chunk
                starts.insert(i, off)
                chunks.insert(i, data if off == base and stop == end else data[off - base:stop - base])
                self._account(h, stop - off, 1)
            else:
                pieces = []
                pos = off
                held = 0
                for k in range(i, j):
                    cs = starts[k]
                    c = chunks[k]
                    if cs > pos:
                        pieces.append(data[pos - base:cs - base])
                    ce = cs + len(c)
                    if c != data[cs - base:ce - base]:
                        differ.append((cs, ce - cs))
                    pieces.append(c)
                    held += ce - cs
                    pos = ce
                if pos < stop:
                    pieces.append(data[pos - base:stop - base])
                starts[i:j] = [off]
                chunks[i:j] = [b"".join(pieces)]
                self._account(h, stop - off - held, 1 - (j - i))
        if differ:
            self._conflict(h, differ, rec, ts, out)

    def _conflict(self, h: _Half, differ: list[tuple[int, int]], rec: int, ts: int,
                  out: list[StreamEvent]) -> None:
        off, length = differ[0]
        where = f"{length} bytes at relative seq {off + h.bias}"
        if len(differ) > 1:
            where = (f"{sum(n for _, n in differ)} bytes in {len(differ)} places from relative seq "
                     f"{off + h.bias}")
        out.append(StreamProblem(h.flow.conn_id, h.dir, Problem(
            ProblemKind.TCP_OVERLAP_CONFLICT, f"overlapping copies differ: {where} (first copy kept)",
            rec, ts)))

    def _account(self, h: _Half, nbytes: int, nchunks: int) -> None:
        h.nbytes += nbytes
        self._total_bytes += nbytes
        self._total_chunks += nchunks
        flow = h.flow
        if h.starts or h.peer.starts:
            if not flow.buffering:
                flow.buffering = True
                self._buffering[flow] = None
        elif flow.buffering:
            flow.buffering = False
            del self._buffering[flow]

    def _enforce_limits(self, h: _Half, rec: int, ts: int, out: list[StreamEvent]) -> None:
        """Over a cap: give up on the oldest holes (this flow first) until back under it."""
        flow = h.flow
        per_flow = self.max_buffered_per_flow
        a, b = flow.halves
        for half in (h, h.peer):
            while half.starts and (a.nbytes + b.nbytes > per_flow
                                   or len(a.starts) + len(b.starts) > self._max_chunks_flow):
                self._force(half, f"flow buffer over its cap of {per_flow} bytes", rec, ts, out)
        # Over the total cap: this flow first, then the flows that have buffered longest, taken one
        # at a time from the front of _buffering (a flow leaves it when its buffer empties): O(1)
        # per flow given up on, however many flows are buffering.
        buffering = self._buffering
        victim = flow
        while self._total_bytes > self.max_buffered_total or self._total_chunks > self._max_chunks_total:
            for half in victim.halves:
                while half.starts and (self._total_bytes > self.max_buffered_total
                                       or self._total_chunks > self._max_chunks_total):
                    self._force(half, f"total buffer over its cap of {self.max_buffered_total} bytes",
                                rec, ts, out)
            if victim is not flow and victim.halves[0].ended and victim.halves[1].ended:
                self._release(victim, "closed", victim.last_rec, victim.last_ts, out)
            if not buffering or next(iter(buffering)) is victim:
                break                                     # nothing left to give up
            victim = next(iter(buffering))

    def _force(self, h: _Half, why: str, rec: int, ts: int, out: list[StreamEvent]) -> None:
        size = h.starts[0] - h.nxt
        self.bytes_given_up += size
        out.append(StreamProblem(h.flow.conn_id, h.dir, Problem(
            ProblemKind.TCP_BUFFER_LIMIT,
            f"{why}: gave up waiting for {size} bytes at relative seq {h.nxt + h.bias}", rec, ts)))
        self._gap(h, size, rec, ts, out)
        self._deliver(h, b"", rec, ts, out)

    # --- release -----------------------------------------------------------------------------

    def _expire(self, ts: int) -> list[StreamEvent]:
        """Release the flows idle for longer than the timeout, least recently active first."""
        out: list[StreamEvent] = []
        clock = self._clock
        if clock is not None and ts - clock > 2 * self._check_every:
            # A jump: believed once several checks in a row saw it. Until then _next_check stays
            # where it is, so the next packets check again; a packet back on time (at the next
            # regular check) ends the run.
            self._jumps += 1
            if self._jumps == 1 or ts < self._jump_low:
                self._jump_low = ts
            if self._jumps < _JUMP_CONFIRMATIONS:
                return out
            ts = self._jump_low
        self._jumps = 0
        self._clock = ts
        self._next_check = ts + self._check_every
        for flow in self._idle(self._lru, ts - self.idle_timeout_ns, ts):
            if not flow.bare:
                out.append(StreamProblem(flow.conn_id, None, Problem(
                    ProblemKind.FLOW_IDLE_RELEASED,
                    f"no packet for {(ts - flow.last_ts) / 1e9:.0f} s (idle timeout "
                    f"{self.idle_timeout_ns / 1e9:.0f} s): released; a later packet of it starts a "
                    "new connection", flow.last_rec, flow.last_ts)))
            self._flush_and_release(flow, "idle", flow.last_rec, flow.last_ts, out)
        for flow in self._idle(self._bare, ts - self.half_open_timeout_ns, ts):
            self.half_open_released += 1
            self._flush_and_release(flow, "idle", flow.last_rec, flow.last_ts, out)
        return out

    @staticmethod
    def _idle(flows: OrderedDict[int, _Flow], limit: int, now: int) -> Iterator[_Flow]:
        """The flows of `flows` (least recently active first) with no packet since before `limit`;
        the caller releases each one it is given. A flow stamped after `now` (a timestamp ahead of
        the idle clock) is out of order in the list: it is moved to the end, so it does not hide
        the idle flows behind it."""
        moved = None
        while flows:
            flow = next(iter(flows.values()))
            if flow.last_ts < limit:
                yield flow
            elif flow.last_ts <= now or flow is moved:
                return
            else:
                if moved is None:
                    moved = flow
                flows.move_to_end(flow.conn_id)

    def _flush_and_release(self, flow: _Flow, reason: str, rec: int, ts: int,
                           out: list[StreamEvent]) -> None:
        for half in flow.halves:
            self._flush_half(half, rec, ts, out)
        if flow.halves[0].ended and flow.halves[1].ended:
            reason = "closed"
        self._release(flow, reason, rec, ts, out)

    def _release(self, flow: _Flow, reason: str, rec: int, ts: int, out: list[StreamEvent]) -> None:
        out.append(StreamClosed(flow.conn_id, reason, rec, ts))
        table = self._table
        for key in flow.keys:
            table.pop(key, None)
        self._lru.pop(flow.conn_id, None)
        if flow.bare:
            self._bare.pop(flow.conn_id, None)
        for half in flow.halves:
            if half.starts:
                self._total_bytes -= half.nbytes
                self._total_chunks -= len(half.starts)
                half.nbytes = 0
                half.starts.clear()
                half.chunks.clear()
        if flow.buffering:
            flow.buffering = False
            del self._buffering[flow]
        if reason == "closed" or reason == "reset":
            recent = self._recent
            for key, half in zip(flow.keys, flow.halves):
                recent[key] = (ts, half.isn)
                recent.move_to_end(key)
            while len(recent) > _RECENT_MAX:
                recent.popitem(last=False)
        # Break the flow <-> half reference cycles: a released flow is freed at once by reference
        # counting, not left to the cyclic GC (which a flood of short flows keeps busy for nothing).
        for half in flow.halves:
            half.peer = half.flow = None  # type: ignore[assignment]
