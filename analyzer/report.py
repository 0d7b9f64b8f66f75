"""The HTML report: index.html (figures inlined as base64 PNG), a page per connection
(conn/<id>.html), the frames in pages (frames/<n>.html), the figures as PNG and SVG files and the
tables as CSV and Parquet; and the compact HTML summary for Jupyter.

Every captured string is escaped: the templates are rendered by jinja2 with autoescape on and text
is passed through `stats.printable` (control and bidi characters shown as escapes). The pages carry
a Content-Security-Policy that fetches nothing and runs one script only, ours (templates/report.js,
sorting and filtering the tables, allowed by its SHA-256 hash); no captured text is ever inside a
script. File names are fixed or made from our integers (conn ids, page numbers): no captured value
ever becomes a path. Files are written through `export.open_output` (a link already in the
directory is replaced, never followed). Sizes are bounded for any capture: the index tables show at
most MAX_ROWS rows, the frames at most MAX_FRAME_PAGES pages of FRAMES_PER_PAGE, and only the first
MAX_CONN_PAGES connections get a page (the index says so).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import io
import json
import os
from importlib import resources
from typing import TYPE_CHECKING, Any

from analyzer import export, plots, report_conn, stats
from analyzer.report_tables import Links, display_table, frame_pages

if TYPE_CHECKING:
    from analyzer.api import Analysis

#: rows shown in the index's HTML tables (all rows are in the CSV/Parquet files)
MAX_ROWS = {"connections": 500, "messages": 300, "problems": 300, "close_codes": 500, "versions": 100}
#: rows of the application-protocol tables shown in the index (all are in tables/app_*.csv)
MAX_APP_ROWS = {"app_rates": 100, "app_latency": 200, "app_top": 30, "app_top_bytes": 30, "app_slowest": 20,
                "app_unanswered": 300}
#: frames per frames page, and at most this many pages (the rest are in tables/frames.csv)
FRAMES_PER_PAGE = 500
MAX_FRAME_PAGES = 50
#: connections that get a page of their own (the first ones, in the connections table's order)
MAX_CONN_PAGES = 100

_FIGURE_DPI = 100

# Columns shown in the HTML, per table (the files have all of them).
_COLUMNS = {
    "connections": ["conn_id", "capture", "client", "client_port", "server", "server_port", "start",
                    "duration", "transport", "h2_stream_id", "tls_version", "sni", "decrypted",
                    "not_decrypted", "draft", "version", "http_status", "handshake_ok", "host", "path",
                    "origin", "user_agent", "subprotocol", "extensions", "close_initiator", "close_code",
                    "close_reason_client", "close_reason_server", "close_status", "tcp_end", "frames_client",
                    "frames_server", "messages_client", "messages_server", "bytes_client", "bytes_server",
                    "handshake_rtt", "tcp_gaps", "failure_reason"],
    "frames": ["frame_no", "ts", "conn_id", "sender", "opcode_name", "fin", "rsv1", "rsv2", "rsv3", "masked",
               "payload_len", "compressed", "close_code", "close_reason", "message_id", "rtt"],
    "messages": ["conn_id", "message_id", "sender", "type", "ts_start", "frames", "wire_bytes", "size",
                 "compressed", "complete", "preview"],
    "problems": ["frame_no", "ts", "conn_id", "sender", "kind", "detail"],
}


def _script() -> tuple[str, str]:
    """Our table script and its CSP source ('sha256-…' of exactly the text inside <script>)."""
    text = resources.files("analyzer").joinpath("templates/report.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return text, f"sha256-{digest}"


def _save_figures(a: Analysis, directory: str, origin: Any,
                  names: tuple[str, ...] = plots.PLOTS) -> list[dict[str, Any]]:
    figdir = export.make_subdir(os.path.join(directory, "figures"))
    out = []
    with plots.offscreen():
        for name in names:
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

    Files: index.html (self-contained), conn/<id>.html (the first MAX_CONN_PAGES connections),
    frames/<n>.html, figures/<plot>.png and .svg, tables/<table>.csv and .parquet for
    connections, frames, messages and problems, tables/close_codes.csv, tables/versions.csv and
    tables/summary.json; with application messages, the "Application protocols" section, its
    figures and tables/app_*.csv (rates, latency per method, top channels, slowest, unanswered).

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

    origin = plots.time_origin(a)  # one time axis for every time figure and page: the capture start
    figures = _save_figures(a, directory, origin)
    files += [f[k] for f in figures for k in ("png", "svg")]
    app_tables = _app_tables(a)
    for name, df in app_tables.items():
        export.write_table(df, os.path.join(tabdir, f"{name}.csv"), "csv")
        files.append(f"tables/{name}.csv")
    app_figures = _save_figures(a, directory, origin, plots.APP_PLOTS) if app_tables else []
    files += [f[k] for f in app_figures for k in ("png", "svg")]

    conn_ids = list(dict.fromkeys(int(v) for v in a.connections["conn_id"].iloc[:MAX_CONN_PAGES]))
    n_pages = min(-(-len(a.frames) // FRAMES_PER_PAGE), MAX_FRAME_PAGES)
    links = Links("", frozenset(conn_ids), frame_pages(a.frames["frame_no"], FRAMES_PER_PAGE, n_pages))
    down = Links("../", links.conn_pages, links.frame_page)

    script, script_hash = _script()
    env = jinja2.Environment(loader=jinja2.PackageLoader("analyzer", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    title = stats.printable(", ".join(c.name for c in a.captures) or "no capture")
    common = {"title": title, "version": __version__, "script": script, "script_hash": script_hash,
              "origin": "unknown" if origin is None else origin.strftime("%Y-%m-%d %H:%M:%S.%f UTC")}

    def write_page(relpath: str, template: str, **context: Any) -> None:
        with export.open_output(os.path.join(directory, relpath), "w", encoding="utf-8") as fh:
            fh.write(env.get_template(template).render(**common, **context))
        files.append(relpath)

    if n_pages:
        export.make_subdir(os.path.join(directory, "frames"))
    for page in range(1, n_pages + 1):
        t = display_table(a.frames, _COLUMNS["frames"], FRAMES_PER_PAGE, "../tables/frames.csv",
                          name="frames", links=down, offset=(page - 1) * FRAMES_PER_PAGE)
        write_page(f"frames/{page}.html", "frames_page.html.j2", frames=t, page=page, pages=n_pages)
    if conn_ids:
        export.make_subdir(os.path.join(directory, "conn"))
    for cid, context in report_conn.pages(a, conn_ids, origin, down):
        write_page(f"conn/{cid}.html", "conn.html.j2", c=context)

    tables = {name: display_table(getattr(a, name), _COLUMNS[name], MAX_ROWS[name], f"tables/{name}.csv",
                                  name=name, links=links)
              for name in ("connections", "messages", "problems")}
    tables["frames"] = display_table(a.frames, _COLUMNS["frames"], FRAMES_PER_PAGE, "tables/frames.csv",
                                     name="frames", links=links)
    tables["close_codes"] = display_table(close_table, None, MAX_ROWS["close_codes"],
                                          "tables/close_codes.csv", name="close_codes")
    tables["versions"] = display_table(version_table, None, MAX_ROWS["versions"], "tables/versions.csv",
                                       name="versions")
    app = {name: display_table(df, None, MAX_APP_ROWS[name], f"tables/{name}.csv", name=name, links=links)
           for name, df in app_tables.items()}
    index = os.path.join(directory, "index.html")
    page_files = [f for f in files if f.startswith(("conn/", "frames/"))]
    listed = sorted(f for f in files if f not in page_files)
    index_html = env.get_template("report.html.j2").render(
        **common,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        summary_rows=summary.rows(), figures=figures, tables=tables, files=listed,
        conn_pages=len(conn_ids), frame_pages=n_pages, per_page=FRAMES_PER_PAGE,
        app=app, app_figures=app_figures,
    )
    with export.open_output(index, "w", encoding="utf-8") as fh:
        fh.write(index_html)
    return index


def _app_tables(a: Analysis) -> dict[str, Any]:
    """The application-protocol tables of the report (analyzer.app.stats), with latencies in
    milliseconds; none when the analysis decoded no application message."""
    if a.app_messages.empty:
        return {}
    from analyzer.app import stats as app_stats

    ms = ["p50", "p90", "p99", "max"]
    latency = app_stats.latency(a)
    latency[ms] = latency[ms].astype("float64") * 1000.0
    latency = latency.rename(columns={c: f"{c}_ms" for c in ms})

    def view(e: Any) -> Any:
        return e.assign(latency=e["latency"].astype("float64") * 1000.0).rename(
            columns={"latency": "latency_ms"})

    return {
        "app_rates": app_stats.rates(a),
        "app_latency": latency,
        "app_top": app_stats.top_channels(a, n=None),
        "app_top_bytes": app_stats.top_channels(a, by="bytes", n=None),
        "app_slowest": view(app_stats.slowest(a, n=MAX_APP_ROWS["app_slowest"])),
        "app_unanswered": view(app_stats.unanswered(a)),
    }


def summary_html(a: Analysis) -> str:
    """A compact HTML summary for Jupyter (`Analysis._repr_html_`): counts and the headline table."""
    names = stats.printable(", ".join(c.name for c in a.captures) or "no capture")
    websockets = len(stats.websocket_rows(a.connections))
    head = (f"<p><b>ws-analyzer</b> analysis of {html.escape(names)}: {websockets:,} WebSocket "
            f"connections, {len(a.frames):,} frames, {len(a.messages):,} messages, "
            f"{len(a.problems):,} problems. Tables: <code>.connections</code>, <code>.frames</code>, "
            f"<code>.messages</code>, <code>.problems</code>; plots: <code>.plot.*</code>.</p>")
    return f"<div class='ws-analyzer'>{head}{stats.summary(a)._repr_html_()}</div>"


__all__ = ["FRAMES_PER_PAGE", "MAX_APP_ROWS", "MAX_CONN_PAGES", "MAX_FRAME_PAGES", "MAX_ROWS", "summary_html",
           "write_report"]
