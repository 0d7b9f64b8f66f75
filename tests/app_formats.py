"""What the EVE, HAR and Zeek exports should say about the application tables, worked out here
from the tables themselves and from the programs' logs beside the captures (captures/app/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

import analyzer

APP = Path(__file__).resolve().parent.parent / "captures" / "app"
FIELDS = ("protocol", "type", "channel", "correlation_id", "role", "status")


def app_objects(a: analyzer.Analysis) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """By (conn_id, message_id): that message's application messages as the exports write them
    (null fields left out, a paired response with its exchange's latency in ms)."""
    latency = {(int(r.conn_id), int(r.response_message_id), r.correlation_id): round(r.latency * 1000, 3)
               for r in a.exchanges.itertuples() if r.answered}
    out: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in a.app_messages.sort_values(["conn_id", "message_id", "app_index"]).itertuples():
        obj = {k: str(getattr(r, k)) for k in FIELDS if not pd.isna(getattr(r, k))}
        key = (int(r.conn_id), int(r.message_id), r.correlation_id)
        if r.role == "response" and key in latency:
            obj["latency_ms"] = latency[key]
        out.setdefault((int(r.conn_id), int(r.message_id)), []).append(obj)
    return out


def logged_latencies_ms(name: str) -> list[float]:
    """The request → response latencies (ms, from the capture's timestamps) that the capture's
    generator recorded beside what the programs logged, one per request, sorted."""
    exp = json.loads((APP / f"{name}.expected.json").read_text())
    out: list[float] = []
    for r in exp["requests"]:
        if "capture_latency_ms" in r:                     # JSON-RPC: a batch answers each of its ids
            ids = r["id"] if isinstance(r["id"], list) else [r["id"]]
            out += [r["capture_latency_ms"]] * len(ids)
        else:
            out.append(r["latency_capture_ms"])
    return sorted(out)
