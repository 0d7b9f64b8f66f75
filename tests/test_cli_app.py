"""`ws-analyzer app` and `exchanges` (issue 19) on real captures: the requests the programs logged,
at the frames tshark numbered, with the latency between those frames' timestamps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer import cli

APP = Path(__file__).resolve().parent.parent / "captures" / "app"


def _jsonl(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    assert cli.main([*argv, "-q", "-T", "jsonl"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_exchanges_are_the_logged_requests_with_their_capture_latency(
        capsys: pytest.CaptureFixture[str]) -> None:
    expected = json.loads((APP / "jsonrpc.expected.json").read_text())
    asked = [r for r in expected["requests"]            # a batch shares its frame with others
             if r["sender"] == "client" and r["kind"] == "request" and r.get("request_frame")]
    rows = _jsonl(capsys, "exchanges", "-Y", "correlation_id matches '^c:'", "-e", "frame", "-e", "method",
                  "-e", "response_frame_no", "-e", "latency_ms", str(APP / "jsonrpc.pcap"))
    by_frame = {r["frame_no"]: r for r in rows}
    assert len(asked) >= 5
    for want in asked:
        got = by_frame[want["request_frame"]]
        assert got["method"] == want["name"]
        assert got["response_frame_no"] == want["answer_frame"]
        assert got["latency_ms"] == pytest.approx(want["capture_latency_ms"], abs=0.002)


def test_app_lists_every_message_and_filters_by_its_columns(capsys: pytest.CaptureFixture[str]) -> None:
    counts = json.loads((APP / "mqtt5.expected.json").read_text())["counts"]
    rows = _jsonl(capsys, "app", "-e", "sender", "-e", "type", "-e", "protocol", str(APP / "mqtt5.pcap"))
    assert {r["protocol"] for r in rows} == {"mqtt"}
    for sender in ("client", "server"):
        seen: dict[str, int] = {}
        for r in rows:
            if r["sender"] == sender:
                seen[r["type"]] = seen.get(r["type"], 0) + 1
        assert seen == counts[sender]
    publishes = _jsonl(capsys, "app", "-Y", "type == 'PUBLISH' and sender == 'client'",
                       str(APP / "mqtt5.pcap"))
    assert len(publishes) == counts["client"]["PUBLISH"]


def test_unanswered_requests_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    """RabbitMQ answers neither DISCONNECT receipt (it closes the WebSocket) nor the SEND to an
    unknown destination (its ERROR has no receipt-id): exactly those are unanswered."""
    expected = json.loads((APP / "stomp.expected.json").read_text())
    unanswered = sorted(r["correlation_id"] for r in expected["requests"] if r["latency_capture_ms"] is None)
    rows = _jsonl(capsys, "exchanges", "-Y", "not answered", "-e", "correlation_id", "-e", "info",
                  str(APP / "stomp.pcap"))
    assert sorted(r["correlation_id"] for r in rows) == unanswered == ["receipt:bye", "receipt:bye-3",
                                                                         "receipt:send-bad"]
    assert {r["info"] for r in rows} == {"UNANSWERED"}
