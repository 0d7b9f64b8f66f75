"""Requests paired with responses on one connection (analyzer.app.exchanges)."""

from __future__ import annotations

import pytest

from analyzer.app.exchanges import Exchanges


def test_response_closes_its_request_with_the_latency() -> None:
    ex = Exchanges("cap", 7)
    assert ex.request("jsonrpc", "c:1", "subtract", 1, 1_000_000_000) == []
    row = ex.response("jsonrpc", "c:1", 2, 1_250_000_000, "ok")
    assert row is not None
    assert (row.capture, row.conn_id, row.exchange_id, row.protocol, row.method, row.correlation_id,
            row.request_message_id, row.response_message_id, row.ts_request, row.ts_response, row.status,
            row.answered) == ("cap", 7, 1, "jsonrpc", "subtract", "c:1", 1, 2, 1_000_000_000, 1_250_000_000,
                              "ok", True)
    assert row.latency == pytest.approx(0.25)
    assert ex.open == 0 and ex.finish() == []


def test_same_key_closes_the_oldest_first_and_keys_are_per_protocol() -> None:
    ex = Exchanges("cap", 1)
    ex.request("mqtt", "ping", None, 1, 10)
    ex.request("mqtt", "ping", None, 2, 20)
    ex.request("stomp", "ping", None, 3, 30)
    first = ex.response("mqtt", "ping", 4, 40, "ok")
    second = ex.response("mqtt", "ping", 5, 50, "ok")
    assert first is not None and second is not None
    assert (first.exchange_id, first.request_message_id) == (1, 1)
    assert (second.exchange_id, second.request_message_id) == (2, 2)
    assert ex.response("mqtt", "ping", 6, 60, "ok") is None        # nothing open: no row
    [left] = ex.finish()
    assert (left.exchange_id, left.protocol, left.answered, left.response_message_id, left.latency,
            left.ts_response, left.status) == (3, "stomp", False, None, None, None, None)


def test_unmatched_response_closes_nothing() -> None:
    ex = Exchanges("cap", 1)
    ex.request("jsonrpc", "c:1", "a", 1, 10)
    assert ex.response("jsonrpc", "c:2", 2, 20, "ok") is None
    assert ex.open == 1


def test_open_requests_are_bounded_oldest_given_up() -> None:
    ex = Exchanges("cap", 1, max_open=3)
    assert ex.request("p", "a", None, 1, 1) == []
    assert ex.request("p", "b", None, 2, 2) == []
    assert ex.request("p", "a", None, 3, 3) == []
    [gone] = ex.request("p", "c", None, 4, 4)
    assert (gone.exchange_id, gone.correlation_id, gone.request_message_id, gone.answered) == (
        1, "a", 1, False)
    assert ex.open == 3
    # "a" still has its second request open, answered now
    row = ex.response("p", "a", 5, 5, "ok")
    assert row is not None and row.exchange_id == 3
    assert [r.exchange_id for r in ex.finish()] == [2, 4]


def test_many_unanswered_requests_use_bounded_memory() -> None:
    ex = Exchanges("cap", 1, max_open=100)
    given_up = 0
    for i in range(10_000):
        given_up += len(ex.request("p", f"c:{i}", "m", i, i))
    assert ex.open == 100 and given_up == 9_900
    assert len(ex.finish()) == 100
