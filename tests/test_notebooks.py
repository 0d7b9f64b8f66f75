"""The notebooks in notebooks/ and the incident capture they walk through.

- Each notebook runs from a clean kernel with nbclient, from the notebooks/ folder as a reader would,
  without a cell error, and draws its figures (image/png outputs).
- The committed notebooks carry their outputs (so they read on a code host without running them).
- captures/incident.pcapng: analyze() finds the problems, close statuses and the TCP gap that the
  generator (captures/make_incident.py) recorded in incident.expected.json from what its programs did.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CAPTURES = ROOT / "captures"
NAMES = ["explore.ipynb", "incident.ipynb", "encrypted.ipynb", "app_latency.ipynb"]
# explore: one figure (all plots composed); app_latency: the two app plots and latency over time
MIN_FIGURES = {"explore.ipynb": 1, "incident.ipynb": 2, "encrypted.ipynb": 1, "app_latency.ipynb": 2}
FRAME_KEYS = ("frame_no", "sender", "opcode", "fin", "rsv1", "masked", "payload_len", "close_code")


def _outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _text(nb) -> str:
    """All text/plain, text/html and stream output of a notebook, concatenated."""
    parts = []
    for o in _outputs(nb):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        for key in ("text/plain", "text/html", "text/markdown"):
            parts.append(o.get("data", {}).get(key, ""))
    return "\n".join(parts)


def _pngs(nb) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


def _errors(nb) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for o in _outputs(nb) if o.get("output_type") == "error"]


# --- the notebooks ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_from_a_clean_kernel(name: str) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in nb.cells:  # run it as a reader would get it: no outputs from the committed run
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    t0 = time.monotonic()
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    elapsed = time.monotonic() - t0
    assert not _errors(nb)
    assert _pngs(nb) >= MIN_FIGURES[name]
    assert elapsed < 45, f"{name} took {elapsed:.0f} s (both notebooks must run in under a minute)"
    text = _text(nb)
    if name == "explore.ipynb":
        assert "demo.pcapng" in text and "abnormal" in text and "rst" in text
    elif name == "encrypted.ipynb":
        for seen in ("no key for the client random", "TLS_AES_256_GCM_SHA384", "hello from chromium",
                     "permessage-deflate", "half-closed", "close-not-echoed"):
            assert seen in text, seen
        assert text.count(" h2 ") >= 3            # one row per HTTP/2 stream
    elif name == "app_latency.ipynb":
        # the slow method, since when, and the analyzer's latencies equal the logged capture latencies
        for seen in ("14 requests: 14 answered, 0 unanswered, 4 answered with an error",
                     "sleep_add first took more than 50 ms at t = 0.038 s (exchange 2, 52.2 ms",
                     "correlation of latency with the requested delay: 1.0",
                     "largest difference from the logged capture latency: 0.0 ms"):
            assert seen in text, seen
    else:
        for kind in ("tcp-gap", "unmasked-client-frame", "control-frame-too-long", "invalid-utf8",
                     "reserved-opcode", "handshake-failed", "HTTP 404"):
            assert kind in text, kind


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_its_outputs(name: str) -> None:
    """Committed executed: every code cell ran in order, none failed, the figures are there."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not _errors(nb)
    assert _pngs(nb) >= MIN_FIGURES[name]
    assert "<Analysis of" in _text(nb)
    # paths are relative to notebooks/, as a reader runs them
    assert all("../captures/" in c.source for c in code if "analyze(" in c.source)


# --- the incident capture --------------------------------------------------------------------


@functools.cache
def _incident():
    import analyzer

    exp = json.loads((CAPTURES / "incident.expected.json").read_text(encoding="utf-8"))
    return exp, analyzer.analyze(str(CAPTURES / exp["capture"]), payloads=True)


def _val(v):
    """A table cell as a plain value: None for NA/NaN."""
    import pandas as pd

    return None if v is None or pd.isna(v) else v


def _port_of(a) -> dict[int, int]:
    c = a.connections
    return dict(zip(c["conn_id"].astype(int), c["client_port"].astype(int)))


def test_incident_capture_is_small_and_edited() -> None:
    exp, _ = _incident()
    assert (CAPTURES / exp["capture"]).stat().st_size < 1 << 20
    assert exp["generator"] == "make_incident.py" and (CAPTURES / "make_incident.py").is_file()
    assert "editcap" in exp["edits"]["command"] and "loopback" in exp["edits"]["why"]


def test_incident_problem_kinds() -> None:
    """Every problem the generator caused is found on its connection and side; the healthy
    connections (and the ones that merely ended without a close frame) have none."""
    exp, a = _incident()
    ports = _port_of(a)
    found = {(ports[int(r["conn_id"])], _val(r["sender"]), str(r["kind"]))
             for r in a.problems.to_dict("records")}
    for p in exp["problems"]:
        assert (p["client_port"], p["sender"], p["kind"]) in found, p
    kinds = {k for _, _, k in found}
    assert {"tcp-gap", "unmasked-client-frame", "control-frame-too-long", "invalid-utf8", "reserved-opcode",
            "handshake-failed"} <= kinds
    troubled = {p["client_port"] for p in exp["problems"]}
    clean_ports = {exp["clients"][r] for r in ("dashboard", "worker", "rst", "fin")}
    assert not clean_ports & troubled
    assert not {port for port, _, _ in found} & clean_ports, "problems on a connection without trouble"


def test_incident_close_statuses() -> None:
    exp, a = _incident()
    rows = {int(r["client_port"]): r for r in a.connections.to_dict("records")}
    assert sorted(rows) == sorted(c["client_port"] for c in exp["connections"])
    statuses = {}
    for c in exp["connections"]:
        row = rows[c["client_port"]]
        statuses[c["close_status"]] = statuses.get(c["close_status"], 0) + 1
        assert row["close_status"] == c["close_status"], c["client_port"]
        assert int(row["http_status"]) == c["http_status"]
        assert bool(row["handshake_ok"]) == c["handshake_ok"]
        for side in ("client", "server"):
            got = _val(row[f"close_code_{side}"])
            assert (None if got is None else int(got)) == c[f"close_code_{side}"], (c, side)
    assert statuses == {"clean": 5, "half-closed": 2, "abnormal": 2, "handshake-failed": 1}
    tcp_end = {int(r["client_port"]): str(r["tcp_end"]) for r in a.connections.to_dict("records")}
    assert tcp_end[exp["clients"]["rst"]] == "rst" and tcp_end[exp["clients"]["fin"]] == "fin"


def test_incident_tcp_gap_cuts_one_message() -> None:
    """The removed segment held the 2nd of 4 fragments: the message is cut after the 1st
    (complete=False, 16,000 bytes), the 3rd and 4th are found again but belong to no message, and
    the server's echo of the whole upload is complete."""
    exp, a = _incident()
    edits = exp["edits"]
    cid = {v: k for k, v in _port_of(a).items()}[edits["gap_connection"]]
    conn = a.connections.set_index("conn_id").loc[cid]
    assert int(conn["tcp_gaps"]) == 1 and conn["close_status"] == "clean"
    gap = a.problems[(a.problems["conn_id"] == cid) & (a.problems["kind"] == "tcp-gap")]
    assert len(gap) == 1 and f"{edits['gap_bytes']} bytes missing" in gap["detail"].iloc[0]

    incomplete = a.messages[~a.messages["complete"]]
    assert len(incomplete) == 1
    cut = incomplete.iloc[0]
    assert (int(cut["conn_id"]), cut["sender"], cut["type"]) == (cid, "client", "binary")
    assert int(cut["size"]) == 16000 and int(cut["frames"]) == 1
    echo = a.messages[(a.messages["conn_id"] == cid) & (a.messages["sender"] == "server")
                      & (a.messages["type"] == "binary")]
    assert echo["size"].tolist() == [64000] and echo["complete"].all()

    client = a.frames[(a.frames["conn_id"] == cid) & (a.frames["sender"] == "client")]
    got = [{"opcode": int(r.opcode), "fin": bool(r.fin), "payload_len": int(r.payload_len)}
           for r in client.itertuples()]
    assert got == edits["gap_client_frames"]
    assert client[client["opcode"] == 0]["message_id"].isna().all()


def test_incident_frames_agree_with_tshark_off_the_gap() -> None:
    """Where tshark could follow (every connection but the gapped one), the analyzer lists the
    same frames as the tshark run stored by the generator."""
    exp, a = _incident()
    ports = _port_of(a)
    gap_port = exp["edits"]["gap_connection"]
    got = []
    for r in a.frames.to_dict("records"):
        port = ports[int(r["conn_id"])]
        if port == gap_port:
            continue
        code = _val(r["close_code"])
        got.append((port, int(r["frame_no"]), r["sender"], int(r["opcode"]), bool(r["fin"]), bool(r["rsv1"]),
                    bool(r["masked"]), int(r["payload_len"]), None if code is None else int(code)))
    want = [(f["client_port"], *(f[k] for k in FRAME_KEYS)) for f in exp["tshark_frames"]]
    assert len(want) > 50
    assert got == want
