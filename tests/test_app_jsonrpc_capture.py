"""analyze()'s app_messages and exchanges on captures/app/jsonrpc.pcap (jsonrpcserver 5 behind a
websockets server, jsonrpcclient 4 over a websockets client) against what the programs logged in
captures/app/jsonrpc.expected.json: every request paired with its answer, latencies equal to the
capture's (tshark's timestamps) within the pcap's microsecond resolution."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import analyzer

CAPTURE = Path(__file__).resolve().parent.parent / "captures" / "app" / "jsonrpc.pcap"
EXPECTED = CAPTURE.with_name("jsonrpc.expected.json")

pytestmark = pytest.mark.skipif(not EXPECTED.exists(), reason="captures/app/jsonrpc not recorded")


@pytest.fixture(scope="module")
def result() -> tuple[analyzer.Analysis, dict[str, Any]]:
    return analyzer.analyze(CAPTURE, jobs=1), json.loads(EXPECTED.read_text())


def _frames(a: analyzer.Analysis) -> dict[int, int]:
    """message_id → the frame that completed it (one connection)."""
    return dict(zip(a.messages["message_id"], a.messages["last_frame_no"]))


def test_the_connection_is_jsonrpc_by_content(result: tuple[analyzer.Analysis, dict[str, Any]]) -> None:
    a, exp = result
    assert a.connections["client_port"].tolist() == [exp["client_port"]]
    assert a.connections["app_protocol"].tolist() == ["jsonrpc"]
    assert a.app_messages["chosen_by"].astype(str).unique().tolist() == ["content"]
    assert not (a.problems["kind"].astype(str).str.startswith("app-")).any()
    assert not (a.problems["kind"] == "internal-error").any()


def test_every_wire_message_decoded(result: tuple[analyzer.Analysis, dict[str, Any]]) -> None:
    a, exp = result
    frames = _frames(a)
    m = a.app_messages.assign(frame_no=a.app_messages["message_id"].map(frames))
    per_frame = m.groupby("frame_no").size().to_dict()
    for wire in exp["wire"]:
        body = json.loads(wire["text"])
        assert per_frame[wire["frame_no"]] == (len(body) if isinstance(body, list) else 1)
        rows = m[m["frame_no"] == wire["frame_no"]]
        assert rows["sender"].astype(str).unique().tolist() == [wire["sender"]]
        elements = body if isinstance(body, list) else [body]
        methods = [e.get("method") for e in elements]
        if any(methods):
            assert rows["channel"].tolist() == methods
    # the programs' own counts, per side and kind (error responses apart)
    counts: dict[str, Counter[str]] = {}
    for row in m.itertuples():
        counts.setdefault(str(row.sender), Counter())[str(row.type)] += 1
    for side, kinds in exp["counts"].items():
        wanted = {k: v for k, v in kinds.items() if k not in ("messages", "batches")}
        assert dict(counts[side]) == wanted, side


def test_exchanges_agree_with_the_programs(result: tuple[analyzer.Analysis, dict[str, Any]]) -> None:
    a, exp = result
    frames = _frames(a)
    e = a.exchanges
    by_corr = {row.correlation_id: row for row in e.itertuples()}
    assert e["answered"].all()
    expected_count = 0
    for req in exp["requests"]:
        ids = req["id"] if isinstance(req["id"], list) else [req["id"]]
        answers = req["answer"] if isinstance(req["answer"], list) else [req["answer"]]
        for ident, answer in zip(ids, answers):
            expected_count += 1
            row = by_corr[f"{req['sender'][0]}:{ident}"]
            assert frames[row.request_message_id] == req["request_frame"]
            assert frames[row.response_message_id] == req["answer_frame"]
            # the capture's latency, as the generator measured it from tshark's timestamps
            assert row.latency * 1000 == pytest.approx(req["capture_latency_ms"], abs=0.002)
            # and between the delay the answering side added and what the asker measured
            assert row.latency * 1000 <= req["latency_ms"]
            if req.get("delay_ms"):
                assert row.latency * 1000 >= req["delay_ms"]
            if answer["ok"]:
                assert row.status == "ok"
            else:
                assert row.status == f"error {answer['code']}: {answer['message']}"
            if req["kind"] == "request":
                assert row.method == req["name"]
    assert len(e) == expected_count
    # the two concurrent requests were answered in the other order: paired by id, not by order
    assert by_corr["c:4"].latency > by_corr["c:5"].latency
    assert pd.Series(e["exchange_id"]).tolist() == list(range(1, len(e) + 1))
