"""Fuzz every sans-IO stage with random and mutated bytes: only events come out, state stays
consistent (see the invariants in tests/fuzz/targets.py). Hypothesis draws the inputs, the
parameters, the cut points, the gaps and the mutations (tests/fuzz/strategies.py), so a failure
shrinks to a small example. HYPOTHESIS_PROFILE picks the size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.profiles import fuzz_settings
from tests.fuzz.strategies import STAGES, cases, record_cases, seed_bodies, segment_cases
from tests.fuzz.targets import TARGETS, crashers, run_packets, run_reassembler

BYTES_ONLY = ["capture"]            # a file is bytes: no parameters to draw


# Example counts: each example draws its parameters and cut points and checks more (a second,
# whole decoding to compare with), so half the old counts keep the suite's time (dev/long: more).
@pytest.mark.parametrize("stage", sorted(STAGES))
@given(data=st.data())
@fuzz_settings(150)
def test_random_bytes(stage: str, data: st.DataObject) -> None:
    run, _ = STAGES[stage]
    run(**data.draw(cases(stage, st.binary(max_size=3000)), label="case"))


@pytest.mark.parametrize("stage", sorted(STAGES))
@given(data=st.data())
@fuzz_settings(150)
def test_mutated_seeds(stage: str, data: st.DataObject) -> None:
    run, _ = STAGES[stage]
    run(**data.draw(cases(stage, seed_bodies(stage)), label="case"))


@pytest.mark.parametrize("target", BYTES_ONLY)
@given(data=st.data())
@fuzz_settings(200)
def test_bytes_targets(target: str, data: st.DataObject) -> None:
    from tests.fuzz.strategies import mutated
    from tests.fuzz.targets import seeds

    body = data.draw(st.one_of(st.binary(max_size=3000), mutated(seeds(target))), label="data")
    TARGETS[target](body)


@given(case=record_cases())
@fuzz_settings(300)
def test_random_records_into_the_packet_decoder(case: dict) -> None:
    run_packets(**case)


@given(case=segment_cases())
@fuzz_settings(250)
def test_random_segments_into_the_reassembler(case: dict) -> None:
    """Small sequence numbers so segments overlap, repeat and leave holes."""
    run_reassembler(**case)


def _all_crashers() -> list:
    return [(t, name, data) for t in TARGETS for name, data in crashers(t)]


@pytest.mark.parametrize(("target", "name", "data"), _all_crashers(),
                         ids=[f"{t}/{n}" for t, n, _ in _all_crashers()])
def test_stored_crashers(target: str, name: str, data: bytes) -> None:
    """Every input a campaign once failed on (tests/fuzz/crashers/<target>/) passes now."""
    TARGETS[target](data)


def test_bytes_targets_read_their_parameters_from_the_first_byte() -> None:
    """The campaign's bytes targets and the drawn ones run the same code: a seed through each."""
    from tests.fuzz.targets import seeds

    for target in TARGETS:
        for data in seeds(target)[:3]:
            TARGETS[target](data)
