"""The four tables of every capture in captures/ are those saved before the layered redesign
(issue 14), value for value and dtype for dtype, on every column they had then.

tests/data/golden/<capture>/ was written by benchmarks/golden.py at commit fc5f4c1 (the last
commit before the redesign), with the options test_captures.py uses (payloads=True and the
capture's analyze_options). A change that alters a table on purpose must say so and save them
again (`python benchmarks/golden.py save ...`, see tests/data/golden/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import golden
from tests.capture_corpus import analyze_kwargs

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden"
CAPTURES = sorted(p for p in (ROOT / "captures").iterdir() if p.suffix in (".pcap", ".pcapng"))


def _options(capture: Path) -> dict:
    expected = capture.with_suffix(".expected.json")
    if not expected.exists():
        return {}
    return analyze_kwargs(json.loads(expected.read_text(encoding="utf-8")))


def test_every_capture_has_saved_tables() -> None:
    assert CAPTURES, "captures/ is empty"
    assert sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()) == sorted(p.name for p in CAPTURES)


@pytest.mark.parametrize("capture", CAPTURES, ids=[p.name for p in CAPTURES])
@pytest.mark.parametrize("jobs", [1, 2])
def test_tables_are_those_saved_before_the_redesign(capture: Path, jobs: int) -> None:
    import analyzer
    analysis = analyzer.analyze(str(capture), payloads=True, jobs=jobs, **_options(capture))
    assert golden.compare(analysis, GOLDEN / capture.name) == []


def test_the_comparison_sees_a_changed_value() -> None:
    """A guard on the guard: one value changed in one table is a difference."""
    import analyzer
    capture = ROOT / "captures" / "demo.pcapng"
    analysis = analyzer.analyze(str(capture), payloads=True)
    analysis.frames.loc[3, "payload_len"] += 1
    assert any("payload_len" in d for d in golden.compare(analysis, GOLDEN / capture.name))
