"""The capture corpus as the tests read it: where it is, its expected files, and how each capture is
analysed (analyze_options, with key log paths relative to captures/) and dissected by tshark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
EXPECTED = sorted(CAPTURES.glob("*.expected.json"))


def load_expected(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def keylog_paths(exp: dict[str, Any]) -> list[Path]:
    """The key logs an expected file names in analyze_options (a path or a list, relative to captures/)."""
    keylog = exp.get("analyze_options", {}).get("keylog")
    if keylog is None:
        return []
    return [CAPTURES / k for k in ([keylog] if isinstance(keylog, str) else keylog)]


def analyze_kwargs(exp: dict[str, Any]) -> dict[str, Any]:
    """The expected file's analyze_options as keyword arguments of analyzer.analyze()."""
    kwargs = dict(exp.get("analyze_options", {}))
    keylogs = keylog_paths(exp)
    if keylogs:
        kwargs["keylog"] = [str(p) for p in keylogs]
    return kwargs


def tshark_kwargs(exp: dict[str, Any]) -> dict[str, Any]:
    """tshark_frames() keyword arguments: TLS on the server ports, decrypted with the key log (tshark
    takes one file; a pcapng's embedded secrets need none)."""
    if not exp.get("tls"):
        return {}
    keylogs = keylog_paths(exp)
    assert len(keylogs) <= 1, "tshark reads one key log file"
    return {"tls": True, "keylog": keylogs[0] if keylogs else None}
