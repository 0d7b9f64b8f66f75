"""The notebook front: `analyze()` and the `Analysis` object that holds the four DataFrames."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analyzer.pipeline import ProgressCallback, analyze_file
from analyzer.session import Options
from analyzer.tables import SCHEMAS, empty_tables

PathLike = str | os.PathLike[str]


@dataclass
class CaptureInfo:
    """What was read of one capture file."""

    path: str
    name: str
    packets: int
    tcp_connections: int
    bytes: int


def _analyze_one(path: str, name: str, options: Options,
                 progress: ProgressCallback | None = None) -> tuple[dict[str, pd.DataFrame], CaptureInfo]:
    rows = analyze_file(path, options, capture_name=name, progress=progress)
    info = CaptureInfo(path, name, rows.packets, rows.tcp_connections, rows.bytes_read)
    return rows.to_frames(), info


def _unique_names(paths: Sequence[str]) -> list[str]:
    """Capture names for the `capture` column: the base name, or the path when base names clash;
    a file given twice gets "#2", "#3"… so that every analysed file keeps its own name."""
    distinct = {os.path.abspath(p): os.path.basename(p) for p in paths}
    bases = list(distinct.values())
    names = [os.path.basename(p) if bases.count(os.path.basename(p)) == 1 else p for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique


def _combine(parts: list[dict[str, pd.DataFrame]], names: list[str]) -> dict[str, pd.DataFrame]:
    """Concatenate per-file tables, renumbering conn_id so it is unique across the analysis."""
    if not parts:
        return empty_tables()
    if len(parts) == 1:
        tables = parts[0]
    else:
        offset = 0
        shifted = []
        for part in parts:
            n = int(part["connections"]["conn_id"].max()) if len(part["connections"]) else 0
            n = max(n, int(part["frames"]["conn_id"].max()) if len(part["frames"]) else 0)
            moved = {}
            for name, df in part.items():
                df = df.copy()
                if len(df) and offset:
                    df["conn_id"] = df["conn_id"] + offset
                moved[name] = df
            shifted.append(moved)
            offset += n
        tables = {name: pd.concat([p[name] for p in shifted], ignore_index=True) for name in SCHEMAS}
    for df in tables.values():
        df["capture"] = pd.Categorical(df["capture"].astype("object"), categories=names)
    return tables


@dataclass
class Analysis:
    """The result of `analyze()`: four DataFrames plus aggregates, plots and the report.

    Attributes:
        connections: one row per TCP connection that carried a WebSocket handshake or frames.
        frames: one row per WebSocket frame, in capture order.
        messages: one row per reassembled data message.
        problems: one row per protocol violation or capture defect.
        captures: what was read of each capture file.
    """

    connections: pd.DataFrame
    frames: pd.DataFrame
    messages: pd.DataFrame
    problems: pd.DataFrame
    captures: list[CaptureInfo] = field(default_factory=list)
    options: Options = field(default_factory=Options)

    # --- aggregates (stats.py) ---
    def summary(self) -> Any:
        """Headline statistics; see analyzer.stats.Summary (text via str(), dict via .to_dict())."""
        from analyzer.stats import summary
        return summary(self)

    def close_codes(self) -> pd.DataFrame:
        from analyzer.stats import close_codes
        return close_codes(self)

    def versions(self) -> pd.DataFrame:
        from analyzer.stats import versions
        return versions(self)

    def timeline(self, freq: str = "1s") -> pd.DataFrame:
        from analyzer.stats import timeline
        return timeline(self, freq=freq)

    @property
    def plot(self) -> Any:
        """Plot functions bound to this analysis: `a.plot.close_codes(ax=None)` → matplotlib Axes."""
        from analyzer.plots import PlotAccessor
        return PlotAccessor(self)

    def report(self, directory: PathLike) -> str:
        """Write index.html, figures (PNG, SVG) and tables (CSV, Parquet) into `directory`."""
        from analyzer.report import write_report
        return write_report(self, directory)

    def __repr__(self) -> str:
        names = ", ".join(c.name for c in self.captures) or "no capture"
        return (f"<Analysis of {names}: {len(self.connections)} WebSocket connections, "
                f"{len(self.frames)} frames, {len(self.messages)} messages, "
                f"{len(self.problems)} problems>")

    def _repr_html_(self) -> str:
        try:
            from analyzer.report import summary_html
        except ImportError:
            import html
            return "<pre>" + html.escape(repr(self)) + "</pre>"
        return summary_html(self)


def analyze(paths: PathLike | Iterable[PathLike], *, ports: Iterable[int] | None = None,
            max_message_bytes: int = 16 << 20, payloads: bool = False, preview_len: int = 64,
            validate_utf8: bool = True, progress: bool | ProgressCallback = False,
            jobs: int | None = 1) -> Analysis:
    """Analyse one capture or several and return the four DataFrames.

    Args:
        paths: a pcap/pcapng file (gzipped or not), or a list of them.
        ports: TCP ports to treat as WebSocket even when no handshake is in the capture (captures
            that start mid-connection); the side on such a port is the server.
        max_message_bytes: largest frame buffered and message reassembled or decompressed; larger
            ones are counted and reported in `problems`, never held in memory.
        payloads: keep every message's whole payload in `messages.payload` (default: a preview only).
        preview_len: characters (text) or bytes (binary, as hex) of the preview.
        validate_utf8: check text messages and close reasons for valid UTF-8.
        progress: True for a progress bar on stderr, or a callback (bytes read, file size).
        jobs: processes for several captures (None: one per core).

    Raises:
        CaptureError: a file cannot be read as a capture (not a capture, empty, missing, a folder).
    """
    single = isinstance(paths, (str, os.PathLike))
    path_list = [os.fspath(paths)] if single else [os.fspath(p) for p in paths]  # type: ignore[union-attr]
    options = Options(ports=frozenset(int(p) for p in ports or ()),
                      max_message_bytes=int(max_message_bytes), payloads=bool(payloads),
                      preview_len=int(preview_len), validate_utf8=bool(validate_utf8))
    names = _unique_names(path_list)
    workers = jobs if jobs is not None else (os.cpu_count() or 1)
    results: list[tuple[dict[str, pd.DataFrame], CaptureInfo]] = []
    if workers > 1 and len(path_list) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(path_list))) as pool:
            futures = [pool.submit(_analyze_one, p, n, options) for p, n in zip(path_list, names)]
            results = [f.result() for f in futures]
    else:
        for p, n in zip(path_list, names):
            callback = _progress_callback(progress, n)
            try:
                results.append(_analyze_one(p, n, options, callback))
            finally:
                if callback is not None and hasattr(callback, "close"):
                    callback.close()
    tables = _combine([r[0] for r in results], names)
    return Analysis(captures=[r[1] for r in results], options=options, **tables)


def _progress_callback(progress: bool | ProgressCallback, name: str) -> ProgressCallback | None:
    if not progress:
        return None
    if callable(progress):
        return progress
    from analyzer.progress import ProgressBar
    return ProgressBar(name)
