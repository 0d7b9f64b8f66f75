"""Hypothesis strategies for the fuzz targets: every parameter, cut point, gap and mutation is
drawn, so that a failing example shrinks to a small input with plain parameters (the targets'
`run_<stage>` functions in tests/fuzz/targets.py take them as arguments).

`cases(stage, bodies)` draws the keyword arguments of `run_<stage>` around input bytes drawn from
`bodies`: random bytes (`st.binary`) or a seed of that stage mutated by drawn edits (`mutated`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.targets import (
    DEFLATES,
    IDLE_TIMEOUTS,
    INFLATE_LIMITS,
    LINKTYPES,
    MAX_FLOWS,
    MAX_PAYLOADS,
    MESSAGE_LIMITS,
    PER_FLOW_CAPS,
    SEP,
    TOTAL_CAPS,
    make_segment,
    run_frames,
    run_handshake,
    run_inflate,
    run_messages,
    run_packets,
    run_reassembler,
    seeds,
)

_INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\x7e", b"\xff\xff", b"\x00\x00", b"\xff\xff\xff\xff",
                b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x7f\xff\xff\xff\xff\xff\xff\xff", b"\r\n",
                b"\r\n\r\n")


# Strategies are made once, here: making one per example (st.integers(0, len(buf)), a list
# of len(sizes)) cost more than running the stage.
_BOOL = st.booleans()
_BYTE = st.integers(0, 255)
_BIT = st.integers(0, 7)
_WHERE = st.integers(0, 1 << 16)            # a position, as a fraction of the length
_OPS = st.sampled_from(("set", "flip", "value", "insert", "delete", "duplicate", "truncate"))
_EDITS = st.integers(0, 6)
_VALUES = st.sampled_from(_INTERESTING)
_INSERT = st.binary(min_size=1, max_size=64)
_DELETE = st.integers(1, 300)
_DUPLICATE = st.integers(1, 2000)


def _at(draw: st.DrawFn, n: int) -> int:
    return draw(_WHERE) * n >> 16


@st.composite
def mutated(draw: st.DrawFn, pool: tuple[bytes, ...]) -> bytes:
    """A seed from `pool` with 0-6 drawn edits (byte errors as editcap -E makes them, bit flips,
    interesting values, inserts, deletions, duplications, truncation); shrinks to fewer edits."""
    buf = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(_EDITS)):
        op = draw(_OPS)
        n = len(buf)
        at = _at(draw, n)
        if op == "set" and n:
            buf[min(at, n - 1)] = draw(_BYTE)
        elif op == "flip" and n:
            buf[min(at, n - 1)] ^= 1 << draw(_BIT)
        elif op == "value":
            value = draw(_VALUES)
            buf[at:at + (len(value) if draw(_BOOL) else 0)] = value
        elif op == "insert":
            buf[at:at] = draw(_INSERT)
        elif op == "delete":
            del buf[at:at + draw(_DELETE)]
        elif op == "duplicate":
            piece = buf[at:at + draw(_DUPLICATE)]
            where = _at(draw, n)
            buf[where:where] = piece
        elif op == "truncate":
            del buf[at:]
    return bytes(buf)


def seed_bodies(stage: str) -> st.SearchStrategy[bytes]:
    """Mutated seeds of a stage, without the parameter byte the bytes targets read first."""
    pool = tuple(s[1:] for s in seeds(stage)) or (b"",)
    return mutated(pool)


#: Piece sizes: the input is fed in pieces of these sizes, the rest in one last piece.
_SIZES = st.lists(st.integers(1, 4000), max_size=12)
_SMALL_SIZES = st.lists(st.integers(1, 2000), max_size=6)
_GAP = st.sampled_from((0, 0, 1, 2, 7, 100, 70000))
_HEADER_LIMITS = st.sampled_from((256, 4096, 65536))
_HANDSHAKE_BUDGETS = st.sampled_from((300, 1 << 30))
_STEPS = st.lists(st.tuples(st.integers(0, 1), st.integers(1, 3000), _BOOL), max_size=16)
_FRAME_PAYLOADS = st.sampled_from(MAX_PAYLOADS)
_FRAME_BUDGETS = st.sampled_from((64, 1 << 30))
_RSV = st.integers(0, 7)
_MESSAGE_LIMITS = st.sampled_from(MESSAGE_LIMITS)
_DEFLATES = st.sampled_from(DEFLATES)
_PREVIEWS = st.sampled_from((0, 8, 64))
_INFLATE_LIMITS = st.sampled_from(INFLATE_LIMITS)
_WINDOW_BITS = st.integers(8, 15)


def _flags(draw: st.DrawFn, n: int, strategy: st.SearchStrategy, off: Any) -> list:
    """n values, all `off` unless a first drawn boolean turns them on (most examples have none)."""
    return [draw(strategy) for _ in range(n)] if draw(_BOOL) else [off] * n


def _handshake(draw: st.DrawFn, body: bytes) -> dict[str, Any]:
    client, _, server = body.partition(SEP)
    steps = draw(_STEPS)
    if not draw(_BOOL):
        steps = [(d, size, False) for d, size, _ in steps]      # no gaps
    return dict(client=client, server=server, max_header_bytes=draw(_HEADER_LIMITS),
                budget_bytes=draw(_HANDSHAKE_BUDGETS), steps=steps)


def _frames(draw: st.DrawFn, body: bytes, hixie: bool = False) -> dict[str, Any]:
    sizes = draw(_SIZES)
    case = dict(body=body, hixie=hixie, from_client=draw(_BOOL), max_payload=draw(_FRAME_PAYLOADS),
                budget_bytes=draw(_FRAME_BUDGETS), sizes=sizes,
                gaps=_flags(draw, len(sizes) + 1, _GAP, 0))
    if not hixie:
        case.update(hybi04_opcodes=draw(_BOOL), allowed_rsv=draw(_RSV))
    return case


def _messages(draw: st.DrawFn, body: bytes) -> dict[str, Any]:
    sizes = draw(_SIZES)
    return dict(body=body, from_client=draw(_BOOL), limit=draw(_MESSAGE_LIMITS), deflate=draw(_DEFLATES),
                limit_frames=draw(_BOOL), keep_payload=draw(_BOOL), preview_len=draw(_PREVIEWS),
                sizes=sizes, gaps=_flags(draw, len(sizes) + 1, _BOOL, False))


def _inflate(draw: st.DrawFn, body: bytes) -> dict[str, Any]:
    messages = body.split(SEP)
    return dict(messages=messages, limit=draw(_INFLATE_LIMITS), window_bits=draw(_WINDOW_BITS),
                no_context_takeover=draw(_BOOL), sizes=[draw(_SMALL_SIZES) for _ in messages],
                abandon=_flags(draw, len(messages), _BOOL, False))


_PER_FLOW_CAPS = st.sampled_from(PER_FLOW_CAPS)
_TOTAL_CAPS = st.sampled_from(TOTAL_CAPS)
_IDLE_TIMEOUTS = st.sampled_from(IDLE_TIMEOUTS)
_MAX_FLOWS = st.sampled_from(MAX_FLOWS)


def _reassembler_params(draw: st.DrawFn) -> dict[str, Any]:
    return dict(per_flow=draw(_PER_FLOW_CAPS), total_cap=draw(_TOTAL_CAPS),
                idle_timeout_ns=draw(_IDLE_TIMEOUTS), max_flows=draw(_MAX_FLOWS))


def _reassembler(draw: st.DrawFn, body: bytes) -> dict[str, Any]:
    from tests.fuzz.targets import decode_segments
    return dict(segments=decode_segments(body), **_reassembler_params(draw))


_FLAGS = (0x02, 0x12, 0x10, 0x18, 0x11, 0x14, 0x04, 0x01, 0x19)


_SEGMENT = st.tuples(st.sampled_from((0, 0, 1000, 10**9, 3600 * 10**9)), st.integers(0, 63),
                     st.sampled_from(_FLAGS), st.integers(0, 3000), st.integers(0, 3000),
                     st.binary(max_size=40))
_SEGMENTS = st.lists(_SEGMENT, max_size=40)


@st.composite
def segment_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Drawn segments (time step, who, flags, seq, ack, payload) with small sequence numbers, so
    that they overlap, repeat and leave holes; a step sometimes passes the idle timeout."""
    segments = []
    ts = 1_000_000_000
    for rec, (step, who, flags, seq, ack, payload) in enumerate(draw(_SEGMENTS), 1):
        ts += step
        segments.append(make_segment(rec, ts, who, flags, seq, ack, payload))
    return dict(segments=segments, **_reassembler_params(draw))


_LINKTYPES = st.sampled_from(sorted(set(LINKTYPES)))
_WIRE_EXTRA = st.sampled_from((0, 100, 200, 300))
_RECORDS = st.lists(st.binary(max_size=300), min_size=1, max_size=6)


def _packets(draw: st.DrawFn, body: bytes) -> dict[str, Any]:
    return dict(records=body.split(SEP), linktype=draw(_LINKTYPES), wire_extra=draw(_WIRE_EXTRA))


@st.composite
def record_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Drawn records (random bytes) of a drawn link type."""
    case = _packets(draw, b"")
    case["records"] = draw(_RECORDS)
    return case


#: stage → (run_<stage>, a function (draw, input) → the keyword arguments of run_<stage>)
STAGES: dict[str, tuple[Callable[..., Any], Callable[..., dict[str, Any]]]] = {
    "handshake": (run_handshake, _handshake),
    "frames": (run_frames, _frames),
    "hixie": (run_frames, lambda draw, body: _frames(draw, body, hixie=True)),
    "messages": (run_messages, _messages),
    "inflate": (run_inflate, _inflate),
    "reassembler": (run_reassembler, _reassembler),
    "packets": (run_packets, _packets),
}


@st.composite
def cases(draw: st.DrawFn, stage: str, bodies: st.SearchStrategy[bytes]) -> dict[str, Any]:
    """The keyword arguments of `run_<stage>` around an input drawn from `bodies`. (Drawn in one
    composite: a strategy made per input, as flatmap would, costs more than the stage itself.)"""
    return STAGES[stage][1](draw, draw(bodies))
