"""ws-analyzer: WebSocket traffic in packet captures, as pandas DataFrames, plots and reports.

    import analyzer
    a = analyzer.analyze("capture.pcapng")
    a.frames, a.messages, a.connections, a.problems

The names below are loaded on first use, so `ws-analyzer --help` does not pay for pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Analysis", "CaptureError", "analyze"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from analyzer.api import Analysis, analyze
    from analyzer.capture import CaptureError


def __getattr__(name: str) -> Any:
    if name in ("Analysis", "analyze"):
        from analyzer import api
        return getattr(api, name)
    if name == "CaptureError":
        from analyzer.capture import CaptureError
        return CaptureError
    raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
