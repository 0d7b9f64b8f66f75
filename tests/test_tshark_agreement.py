"""tshark, run live on the capture corpus, as a second opinion.

Two checks per capture that tshark can dissect:
- tshark still lists exactly the frames committed in <name>.expected.json (guards the expected files
  against a hand edit or a regenerated capture whose expectations were not rewritten);
- analyzer.analyze() agrees with tshark frame by frame (frame_no, opcode, fin, masked, payload_len,
  close code).
The wss:// captures are decrypted by both with the same key log (tshark: -o tls.keylog_file, TLS
decoded on the server ports), or with the secrets embedded in the pcapng; with the wrong key log
tshark must find nothing either.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest

from tests.capture_corpus import CAPTURES, EXPECTED, analyze_kwargs, load_expected, tshark_kwargs

_spec = importlib.util.spec_from_file_location("capture_tshark_frames", CAPTURES / "tshark_frames.py")
assert _spec is not None and _spec.loader is not None
tshark_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tshark_mod)

pytestmark = [
    pytest.mark.tshark,
    pytest.mark.skipif(not tshark_mod.tshark_available(), reason="tshark is not installed"),
]

DISSECTED = [p for p in EXPECTED if load_expected(p)["tshark_dissects"]]
IDS = [p.name.split(".")[0] for p in DISSECTED]
COMMITTED_KEYS = (
    "frame_no",
    "client_port",
    "sender",
    "opcode",
    "fin",
    "rsv1",
    "masked",
    "payload_len",
    "close_code",
)
AGREE_KEYS = ("frame_no", "opcode", "fin", "masked", "payload_len", "close_code")


@functools.cache
def expected(name: str) -> dict:
    return load_expected(CAPTURES / name)


@functools.cache
def live_frames(name: str) -> list[dict]:
    exp = expected(name)
    ports = {c["server_port"] for c in exp["connections"]}
    return tshark_mod.tshark_frames(CAPTURES / exp["capture"], ports, **tshark_kwargs(exp))


def test_there_are_dissectable_captures() -> None:
    assert len(DISSECTED) >= 15


@pytest.mark.parametrize("exp_path", DISSECTED, ids=IDS)
def test_tshark_still_matches_expected_frames(exp_path: Path) -> None:
    live = [{k: f[k] for k in COMMITTED_KEYS} for f in live_frames(exp_path.name)]
    assert live == expected(exp_path.name)["frames"]


def _norm(v):
    import pandas as pd

    if v is None or (not isinstance(v, (str, bytes)) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


@pytest.mark.parametrize("exp_path", DISSECTED, ids=IDS)
def test_analyzer_agrees_with_tshark(exp_path: Path) -> None:
    import analyzer

    exp = expected(exp_path.name)
    a = analyzer.analyze(str(CAPTURES / exp["capture"]), **analyze_kwargs(exp))
    ours = [
        (
            int(_norm(r["frame_no"])),
            int(_norm(r["opcode"])),
            bool(_norm(r["fin"])),
            bool(_norm(r["masked"])),
            int(_norm(r["payload_len"])),
            None if _norm(r["close_code"]) is None else int(_norm(r["close_code"])),
        )
        for r in a.frames.to_dict("records")
    ]
    theirs = [tuple(f[k] for k in AGREE_KEYS) for f in live_frames(exp_path.name)]
    assert len(ours) == len(theirs), "number of frames"
    for o, t in zip(ours, theirs, strict=True):
        assert o == t, f"({', '.join(AGREE_KEYS)}): analyzer vs tshark"


NOT_DECRYPTABLE = [p for p in EXPECTED if load_expected(p).get("tls") and "frames" not in load_expected(p)]


@pytest.mark.parametrize("exp_path", NOT_DECRYPTABLE, ids=[p.name.split(".")[0] for p in NOT_DECRYPTABLE])
def test_tshark_decrypts_nothing_with_a_wrong_key(exp_path: Path) -> None:
    """The wrong-key capture: tshark with its key log finds no WebSocket frame either."""
    assert live_frames(exp_path.name) == []


H2 = [p for p in EXPECTED if load_expected(p).get("h2")]


@pytest.mark.parametrize("exp_path", H2, ids=[p.name.split(".")[0] for p in H2])
def test_tshark_h2_streams_still_match(exp_path: Path) -> None:
    """WebSockets over HTTP/2 (tshark 4.0 does not dissect WebSocket inside HTTP/2): tshark's HTTP/2
    frames still show the expected file's extended CONNECT streams and DATA bytes per stream and
    direction (h2_data, which tests/test_captures.py holds the analyzer's frames to)."""
    exp = expected(exp_path.name)
    ports = {c["server_port"] for c in exp["connections"]}
    frames = tshark_mod.tshark_h2_frames(CAPTURES / exp["capture"], ports, **tshark_kwargs(exp))
    connects = {
        (f["client_port"], f["stream_id"]) for f in frames if f["type"] == 1 and f["protocol"] == "websocket"
    }
    streams = {(c["client_port"], c["h2_stream_id"]) for c in exp["connections"] if "h2_stream_id" in c}
    assert connects == streams
    data: dict[tuple[int, int, str], int] = {}
    for f in frames:
        if f["type"] == 0:
            key = (f["client_port"], f["stream_id"], f["sender"])
            data[key] = data.get(key, 0) + f["length"]
    for d in exp["h2_data"]:
        for sender in ("client", "server"):
            assert data.get((d["client_port"], d["h2_stream_id"], sender), 0) == d[f"{sender}_bytes"]
