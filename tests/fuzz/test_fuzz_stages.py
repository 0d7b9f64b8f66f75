"""Fuzz every sans-IO stage with random and mutated bytes: only events come out, state stays
consistent (see the invariants in tests/fuzz/targets.py). HYPOTHESIS_PROFILE picks the size."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.campaign import mutate
from tests.fuzz.profiles import fuzz_settings
from tests.fuzz.targets import SEP, TARGETS, crashers, seeds

STAGES = ["handshake", "frames", "hixie", "messages", "inflate", "reassembler", "packets", "capture"]


@pytest.mark.parametrize("target", STAGES)
@given(data=st.binary(max_size=3000))
@fuzz_settings(300)
def test_random_bytes(target: str, data: bytes) -> None:
    TARGETS[target](data)


@pytest.mark.parametrize("target", STAGES)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
@fuzz_settings(300)
def test_mutated_seeds(target: str, data: st.DataObject, seed: int) -> None:
    pool = seeds(target)
    base = data.draw(st.sampled_from(pool))
    TARGETS[target](mutate(base, random.Random(seed), pool))


@given(parts=st.lists(st.binary(max_size=300), min_size=1, max_size=6), p=st.integers(0, 255))
@fuzz_settings(300)
def test_random_records_into_the_packet_decoder(parts: list[bytes], p: int) -> None:
    TARGETS["packets"](bytes([p]) + SEP.join(parts))


_FLAGS = [0x02, 0x12, 0x10, 0x18, 0x11, 0x14, 0x04, 0x01, 0x19]
segment = st.tuples(st.integers(0, 255), st.sampled_from(_FLAGS), st.integers(0, 3000), st.integers(0, 3000),
                    st.binary(max_size=40))


@given(segs=st.lists(segment, max_size=40), p=st.integers(0, 255))
@fuzz_settings(400)
def test_random_segments_into_the_reassembler(segs: list, p: int) -> None:
    """Small sequence numbers so segments overlap, repeat and leave holes."""
    from tests.fuzz.targets import encode_segments
    TARGETS["reassembler"](bytes([p]) + encode_segments(segs))


def _all_crashers() -> list:
    return [(t, name, data) for t in TARGETS for name, data in crashers(t)]


@pytest.mark.parametrize(("target", "name", "data"), _all_crashers(),
                         ids=[f"{t}/{n}" for t, n, _ in _all_crashers()])
def test_stored_crashers(target: str, name: str, data: bytes) -> None:
    """Every input a campaign once failed on (tests/fuzz/crashers/<target>/) passes now."""
    TARGETS[target](data)
