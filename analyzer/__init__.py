"""ws-analyzer: WebSocket traffic in packet captures, as pandas DataFrames, plots and reports.

    import analyzer
    a = analyzer.analyze("capture.pcapng")
    a.frames, a.messages, a.connections, a.problems
    w = analyzer.analyze("wss.pcapng", keylog="keys.log")    # wss:// (TLS) decrypted

    # the per-file unit every way of running an analysis calls (a process pool, a cluster):
    rows, info = analyzer.analyze_capture("capture.pcapng", "capture.pcapng", analyzer.Options())

    # many captures on a Dask cluster (pip install 'ws-analyzer[cluster]'), one task each:
    m = analyzer.analyze_many(paths, client=None, keylog="/abs/keys.log")
    m.frames, m.to_parquet("out/"), m.compute()       # dask DataFrames, a dataset, analyze(paths)

The names below are loaded on first use, so `ws-analyzer --help` does not pay for pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Analysis", "CaptureError", "KeyLogError", "Options", "analyze", "analyze_capture", "analyze_many"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from analyzer.api import Analysis, analyze, analyze_capture
    from analyzer.capture import CaptureError
    from analyzer.cluster import analyze_many
    from analyzer.tls import KeyLogError
    from analyzer.websocket import Options


def __getattr__(name: str) -> Any:
    if name in ("Analysis", "analyze", "analyze_capture"):
        from analyzer import api
        return getattr(api, name)
    if name == "analyze_many":      # needs the cluster extra (dask[distributed])
        from analyzer.cluster import analyze_many
        return analyze_many
    if name == "Options":
        from analyzer.websocket import Options
        return Options
    if name == "CaptureError":
        from analyzer.capture import CaptureError
        return CaptureError
    if name == "KeyLogError":
        from analyzer.tls import KeyLogError
        return KeyLogError
    raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
