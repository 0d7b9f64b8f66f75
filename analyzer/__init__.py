"""ws-analyzer: WebSocket traffic in packet captures, as pandas DataFrames, plots and reports.

    import analyzer
    a = analyzer.analyze("capture.pcapng")
    a.frames, a.messages, a.connections, a.problems
"""

from __future__ import annotations

from analyzer.api import Analysis, analyze
from analyzer.capture import CaptureError

__all__ = ["Analysis", "CaptureError", "analyze"]
__version__ = "0.1.0"
