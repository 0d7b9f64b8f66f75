"""The pipeline's read-ahead with idle ticks (pipes and live captures show rows while they wait)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from analyzer.pipeline import _with_idle_ticks


def _slow(items: list[object], pause_after: int, pause: float) -> Iterator[object]:
    for i, item in enumerate(items):
        if i == pause_after:
            time.sleep(pause)
        yield item


def test_a_quiet_spell_gives_one_tick_and_order_is_kept() -> None:
    got = list(_with_idle_ticks(_slow([1, 2, 3, 4], 2, 0.5), idle=0.1))
    assert got == [1, 2, None, 3, 4]


def test_no_tick_when_records_keep_coming() -> None:
    assert list(_with_idle_ticks(iter(range(10_000)), idle=5.0)) == list(range(10_000))


def test_the_readers_exception_is_raised_in_the_consumer() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    ticks = _with_idle_ticks(broken(), idle=1.0)
    assert next(ticks) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(ticks)


def test_the_reader_stops_when_the_consumer_does() -> None:
    read = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            read.append(n)
            yield n
            n += 1

    ticks = _with_idle_ticks(endless(), idle=1.0)
    assert next(ticks) == 0
    ticks.close()           # the consumer stops (| head): the thread must not read on for ever
    seen = len(read)
    time.sleep(0.3)
    assert len(read) == seen
    assert seen <= 4096 + 2         # bounded read-ahead
