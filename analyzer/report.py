"""The HTML report: one self-contained index.html (figures inlined as base64 PNG) plus the figures as
PNG and SVG files and the tables as CSV and Parquet; and the compact HTML summary for Jupyter.

Every captured string is escaped: the template is rendered by jinja2 with autoescape on, text is
passed through `stats.printable` (control and bidi characters shown as escapes), and the page
carries a Content-Security-Policy that allows no script at all. File names are fixed
(figures/close_codes.png, tables/frames.csv…): no captured value ever becomes a path. Files are
written through `export.open_output` (a link already in the directory is replaced, never followed)
and the HTML tables show at most MAX_ROWS rows each, so the page stays small for any capture.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analyzer import export, plots, stats

if TYPE_CHECKING:
    from analyzer.api import Analysis

#: rows shown in the HTML tables (all rows are in the CSV/Parquet files)
MAX_ROWS = {"connections": 500, "frames": 300, "messages": 300, "problems": 300, "close_codes": 500,
            "versions": 100}

_FIGURE_DPI = 100

# Columns shown in the HTML, per table (the files have all of them).
_COLUMNS = {
    "connections": ["conn_id", "capture", "client", "client_port", "server", "server_port", "start",
                    "duration", "draft", "version", "http_status", "handshake_ok", "host", "path", "origin",
                    "user_agent", "subprotocol", "extensions", "close_initiator", "close_code",
                    "close_reason_client", "close_reason_server", "close_status", "tcp_end", "frames_client",
                    "frames_server", "messages_client", "messages_server", "bytes_client", "bytes_server",
                    "handshake_rtt", "tcp_gaps", "failure_reason"],
    "frames": ["frame_no", "ts", "conn_id", "sender", "opcode_name", "fin", "rsv1", "rsv2", "rsv3", "masked",
               "payload_len", "compressed", "close_code", "close_reason", "message_id", "rtt"],
    "messages": ["conn_id", "message_id", "sender", "type", "ts_start", "frames", "wire_bytes", "size",
                 "compressed", "complete", "preview"],
    "problems": ["frame_no", "ts", "conn_id", "sender", "kind", "detail"],
}


def _cell_strings(s: pd.Series) -> tuple[list[str], bool]:
    """A column as display strings (nulls empty, captured text made printable) and whether numeric."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s.dt.strftime("%Y-%m-%d %H:%M:%S.%f").fillna("").tolist(), False
    if pd.api.types.is_timedelta64_dtype(s.dtype):
        return [("" if pd.isna(v) else f"{v:.6f} s") for v in s.dt.total_seconds()], True
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("object").map({True: "yes", False: "no"}).fillna("").tolist(), False
    if pd.api.types.is_float_dtype(s.dtype):
        return [("" if pd.isna(v) else f"{v:.6g}") for v in s.to_numpy(dtype="float64")], True
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.astype("string").fillna("").tolist(), True
    return [stats.printable(v) if not (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)))
            else "" for v in s.astype("object")], False


def _display_table(df: pd.DataFrame, columns: list[str] | None, limit: int,
                   file: str | None) -> dict[str, Any]:
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    head = df.head(limit)
    converted = [_cell_strings(head[c]) for c in cols]
    rows = [list(zip(values, [num] * len(values))) for values, num in converted]
    return {"headers": cols, "rows": [list(r) for r in zip(*rows)] if rows else [], "total": len(df),
            "shown": len(head), "file": file}


def _save_figures(a: Analysis, directory: str) -> list[dict[str, Any]]:
    figdir = export.make_subdir(os.path.join(directory, "figures"))
    out = []
    origin = plots.time_origin(a)  # one time axis for every time figure: the capture start
    with plots.offscreen():
        for name in plots.PLOTS:
            ax = getattr(plots, name)(a, **({"origin": origin} if name in plots.TIME_PLOTS else {}))
            fig = ax.figure
            title = ax.get_title().replace("\n", " ").replace("\\$", "$")
            png_path = os.path.join(figdir, f"{name}.png")
            svg_path = os.path.join(figdir, f"{name}.svg")
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=_FIGURE_DPI)
            png = buf.getvalue()
            with export.open_output(png_path, "wb") as fh:
                fh.write(png)
            fig.set_layout_engine("none")  # keep the layout the PNG got; saves a second layout pass
            with export.open_output(svg_path, "wb") as fh:
                fig.savefig(fh, format="svg")
            width, height = (round(v * _FIGURE_DPI) for v in fig.get_size_inches())
            out.append({"name": name, "title": title, "png": f"figures/{name}.png",
                        "svg": f"figures/{name}.svg", "png_b64": base64.b64encode(png).decode("ascii"),
                        "width": width, "height": height})
            fig.clear()
    return out


def write_report(a: Analysis, directory: str | os.PathLike[str]) -> str:
    """Write the report into `directory` (created if missing) and return the path of index.html.

    Files: index.html (self-contained), figures/<plot>.png and .svg, tables/<table>.csv and
    .parquet for connections, frames, messages and problems, tables/close_codes.csv,
    tables/versions.csv and tables/summary.json.

    Raises:
        OSError: the directory or a file cannot be written.
    """
    import jinja2

    from analyzer import __version__

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    tabdir = export.make_subdir(os.path.join(directory, "tables"))
    files: list[str] = []
    for fmt in ("csv", "parquet"):
        files += [os.path.relpath(p, directory) for p in export.export(a, tabdir, fmt)]
    summary = stats.summary(a)
    close_table = stats.close_codes(a)
    version_table = stats.versions(a)
    export.write_table(close_table, os.path.join(tabdir, "close_codes.csv"), "csv")
    export.write_table(version_table, os.path.join(tabdir, "versions.csv"), "csv")
    with export.open_output(os.path.join(tabdir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary.to_dict(), fh, indent=1)
    files += ["tables/close_codes.csv", "tables/versions.csv", "tables/summary.json"]

    figures = _save_figures(a, directory)
    files += [f[k] for f in figures for k in ("png", "svg")]

    tables = {name: _display_table(getattr(a, name), _COLUMNS[name], MAX_ROWS[name], f"tables/{name}.csv")
              for name in ("connections", "frames", "messages", "problems")}
    tables["close_codes"] = _display_table(close_table, None, MAX_ROWS["close_codes"],
                                           "tables/close_codes.csv")
    tables["versions"] = _display_table(version_table, None, MAX_ROWS["versions"], "tables/versions.csv")

    env = jinja2.Environment(loader=jinja2.PackageLoader("analyzer", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    page = env.get_template("report.html.j2").render(
        title=stats.printable(", ".join(c.name for c in a.captures) or "no capture"),
        version=__version__,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        summary_rows=summary.rows(),
        figures=figures,
        tables=tables,
        files=sorted(files),
    )
    index = os.path.join(directory, "index.html")
    with export.open_output(index, "w", encoding="utf-8") as fh:
        fh.write(page)
    return index


def summary_html(a: Analysis) -> str:
    """A compact HTML summary for Jupyter (`Analysis._repr_html_`): counts and the headline table."""
    names = stats.printable(", ".join(c.name for c in a.captures) or "no capture")
    head = (f"<p><b>ws-analyzer</b> analysis of {html.escape(names)}: {len(a.connections):,} WebSocket "
            f"connections, {len(a.frames):,} frames, {len(a.messages):,} messages, "
            f"{len(a.problems):,} problems. Tables: <code>.connections</code>, <code>.frames</code>, "
            f"<code>.messages</code>, <code>.problems</code>; plots: <code>.plot.*</code>.</p>")
    return f"<div class='ws-analyzer'>{head}{stats.summary(a)._repr_html_()}</div>"


__all__ = ["MAX_ROWS", "summary_html", "write_report"]
