"""matplotlib figures of an Analysis: close codes, versions, connection timeline, traffic, message
sizes, round-trip times and problems.

Each function takes an Analysis (or one of its DataFrames), draws on `ax` (a new figure when None)
and returns the Axes. Empty data gives an Axes that says "no data". Captured strings never reach
a label except IP addresses and ports; anything drawn as text goes through `_label` so a `$` in
it cannot switch matplotlib to mathtext.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from analyzer import stats
from analyzer.protocol import close_code_class, close_code_name
from analyzer.tables import SCHEMAS, empty_tables

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis

    from analyzer.api import Analysis

#: the plot functions, in the order the report shows them
PLOTS = ("close_codes", "versions", "connection_timeline", "traffic", "message_sizes", "rtt", "problems")
#: the application-protocol plots (the report shows them in its "Application protocols" section)
APP_PLOTS = ("app_latency", "app_top")
#: the plots with a time axis: they take `origin=` so a report draws them all from one moment
TIME_PLOTS = ("connection_timeline", "traffic")

#: at most this many connections get a bar each in connection_timeline; beyond, it aggregates
TIMELINE_MAX_BARS = 60
#: at most this many categories (close codes, problem kinds) are drawn; the title says when cut
MAX_CATEGORIES = 30

STATUS_COLORS = {
    "clean": "#2ca02c",
    "half-closed": "#ff7f0e",
    "abnormal": "#d62728",
    "open-at-end": "#1f77b4",
    "handshake-failed": "#7f7f7f",
}
CLASS_COLORS = {
    "standard": "#4c72b0",
    "reserved": "#8172b2",
    "not-sent-on-wire": "#c44e52",
    "unassigned": "#ccb974",
    "registered": "#64b5cd",
    "private": "#55a868",
    "invalid": "#4d4d4d",
}
SENDER_COLORS = {"client": "#1f77b4", "server": "#ff7f0e", "none": "#9e9e9e"}
SENDER_HATCH = {"client": "", "server": "///", "none": "..."}
TYPE_COLORS = {"text": "#4c72b0", "binary": "#dd8452"}

# Bucket widths traffic() may pick, as pandas frequency strings with their length in seconds.
_FREQS = [("1ms", 0.001), ("2ms", 0.002), ("5ms", 0.005), ("10ms", 0.01), ("20ms", 0.02), ("50ms", 0.05),
          ("100ms", 0.1), ("200ms", 0.2), ("500ms", 0.5), ("1s", 1), ("2s", 2), ("5s", 5), ("10s", 10),
          ("30s", 30), ("1min", 60), ("2min", 120), ("5min", 300), ("10min", 600), ("30min", 1800),
          ("1h", 3600), ("2h", 7200), ("6h", 21600), ("12h", 43200), ("1D", 86400), ("7D", 604800)]


#: what the time plots say when no packet, frame or message has a time
_NO_TIMES = "no data: no times in the tables"

_OUTSIDE: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}

# --- helpers ------------------------------------------------------------------------------------

def _label(text: object, limit: int = 60) -> str:
    """Text safe for a matplotlib label: printable, shortened, `$` escaped (no mathtext)."""
    s = stats.printable(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def _as_analysis(obj: Any) -> Any:
    """An Analysis as is; a DataFrame of one of the four schemas becomes an analysis of it alone."""
    if hasattr(obj, "connections") and hasattr(obj, "frames"):
        return obj
    if isinstance(obj, pd.DataFrame):
        tables = empty_tables()
        cols = set(obj.columns)
        for name, schema in SCHEMAS.items():
            if {c for c, _, _ in schema if c != "capture"} <= cols:
                tables[name] = obj
                return SimpleNamespace(captures=[], **tables)
        raise TypeError("expected an Analysis or one of its DataFrames (connections, frames, messages, "
                        f"problems); got a DataFrame with columns {list(obj.columns)[:8]}")
    raise TypeError(f"expected an Analysis or a DataFrame, got {type(obj).__name__}")


_OFFSCREEN: ContextVar[bool] = ContextVar("offscreen", default=False)


@contextmanager
def offscreen() -> Iterator[None]:
    """Inside this block new figures are bare matplotlib Figures, not pyplot ones: nothing opens a
    window or stays registered with pyplot (the report uses it; the caller saves and drops them)."""
    token = _OFFSCREEN.set(True)
    try:
        yield
    finally:
        _OFFSCREEN.reset(token)


def _axes(ax: Axes | None, width: float = 8.0, height: float = 4.5) -> Axes:
    if ax is not None:
        return ax
    if _OFFSCREEN.get():
        from matplotlib.figure import Figure
        return Figure(figsize=(width, height), layout="constrained").subplots()
    import matplotlib.pyplot as plt
    _, new = plt.subplots(figsize=(width, height), layout="constrained")
    return new


def _no_data(ax: Axes, title: str, message: str = "no data") -> Axes:
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=14,
            color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _rows_height(n: int) -> float:
    return min(2.0 + 0.32 * n, 14.0)


def time_origin(a_or_df: Any) -> pd.Timestamp | None:
    """The moment every time axis of an analysis counts from: the capture's first packet (as the
    listings' relative times), or the earliest time in the tables when the file cannot be read."""
    from analyzer import timefmt

    a = _as_analysis(a_or_df)
    return timefmt.capture_start([c.path for c in a.captures], a.connections["start"], a.frames["ts"],
                                 a.problems["ts"], a.messages["ts_start"])


def _seconds(ts: pd.Series, t0: pd.Timestamp) -> np.ndarray:
    return ((ts - t0).dt.total_seconds()).to_numpy(dtype="float64")


def _time_label(t0: pd.Timestamp) -> str:
    return f"seconds since the capture start, {t0.strftime('%Y-%m-%d %H:%M:%S.%f')} UTC"


def _pick_freq(span_s: float, buckets: int = 150) -> tuple[str, float]:
    for name, seconds in _FREQS:
        if span_s / seconds <= buckets:
            return name, seconds
    return _FREQS[-1]


def _barh_stacked(ax: Axes, labels: list[str], parts: dict[str, np.ndarray], colors: dict[str, Any],
                  hatches: dict[str, str] | None = None) -> None:
    """Horizontal stacked bars, first label on top, the total written after each bar."""
    y = np.arange(len(labels))
    left = np.zeros(len(labels))
    for key, values in parts.items():
        if not values.any():
            continue
        ax.barh(y, values, left=left, color=colors[key], hatch=(hatches or {}).get(key, ""),
                edgecolor="#333333", linewidth=0.5, label=key)
        left = left + values
    for yi, total in enumerate(left.tolist()):
        ax.text(total, yi, f" {int(total):,}", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(0, max(left.max(), 1) * 1.15)
    _integer_ticks(ax.xaxis)


def _integer_ticks(axis: Axis) -> None:
    """Ticks at whole numbers only, on a linear axis (whose locator, an AutoLocator, is a
    MaxNLocator; other locators have no such setting)."""
    from matplotlib.ticker import MaxNLocator
    locator = axis.get_major_locator()
    if isinstance(locator, MaxNLocator):
        locator.set_params(integer=True)


def _log_bins(values: np.ndarray, n: int = 40) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo * 1.5:
        lo, hi = lo / 1.5, hi * 1.5
    return np.logspace(np.log10(lo), np.log10(hi * 1.01), n + 1)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _log_ticks(ax: Axes, bins: np.ndarray, unit: str, scale: float = 1.0) -> None:
    """Engineering-notation labels (1 kB, 300 µs) on a log x axis; minor ticks labelled only when the
    axis spans less than about a decade, so labels never crowd."""
    from matplotlib.ticker import EngFormatter, FuncFormatter, NullFormatter
    eng = EngFormatter(unit=unit, places=None)
    def label(v: float, _pos: object = None) -> str:
        return eng.format_data(v * scale) if v > 0 else ""

    def label_2_5(v: float, _pos: object = None) -> str:
        lead = round(v / 10 ** np.floor(np.log10(v))) if v > 0 else 0
        return label(v) if lead in (2, 5) else ""

    ratio = bins[-1] / bins[0]
    ax.xaxis.set_major_formatter(FuncFormatter(label))
    minor = label if ratio < 12 else label_2_5 if ratio < 1000 else None
    ax.xaxis.set_minor_formatter(FuncFormatter(minor) if minor else NullFormatter())
    # labelled minor ticks get the major ticks' size, so one label does not stand out
    ax.tick_params(axis="x", which="both" if minor else "minor", labelsize=8)


# --- the plots ----------------------------------------------------------------------------------

def close_codes(a_or_df: Any, ax: Axes | None = None) -> Axes:
    """Close codes by code (named), bar colour by code class, hatching by sender.

    Counts close frames by their sender, and connections that ended with no close frame (1006)
    as sender "none" (see analyzer.stats.close_codes). Accepts the close_codes() table too.
    """
    if isinstance(a_or_df, pd.DataFrame) and {"code", "sender", "count"} <= set(a_or_df.columns):
        table = a_or_df
    else:
        table = stats.close_codes(_as_analysis(a_or_df))
    title = "Close codes"
    if table.empty:
        return _no_data(_axes(ax), title)
    wide = table.pivot_table(index="code", columns="sender", values="count", aggfunc="sum",
                             observed=False, fill_value=0)
    wide = wide.reindex(columns=list(stats.CLOSE_SENDERS), fill_value=0)
    total = wide.sum(axis=1)
    ncodes = len(wide)
    if ncodes > MAX_CATEGORIES:
        wide = wide.loc[total.sort_values(ascending=False, kind="stable").index[:MAX_CATEGORIES]].sort_index()
        title += f" (the {MAX_CATEGORIES} most frequent of {ncodes} codes)"
    codes = [int(c) for c in wide.index]
    classes = [close_code_class(c) for c in codes]
    labels = [f"{c} {_label(close_code_name(c))}" for c in codes]
    ax = _axes(ax, 8.0, _rows_height(len(codes)))
    y = np.arange(len(codes))
    left = np.zeros(len(codes))
    face = [CLASS_COLORS[k] for k in classes]
    for sender in stats.CLOSE_SENDERS:
        values = wide[sender].to_numpy(dtype="float64")
        if values.any():
            ax.barh(y, values, left=left, color=face, hatch=SENDER_HATCH[sender], edgecolor="#222222",
                    linewidth=0.5)
            left = left + values
    for yi, tot in enumerate(left.tolist()):
        ax.text(tot, yi, f" {int(tot):,}", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(len(codes) - 0.5, -0.5)
    ax.set_xlim(0, max(left.max(), 1) * 1.15)
    _integer_ticks(ax.xaxis)
    from matplotlib.patches import Patch
    present = [k for k in CLASS_COLORS if k in classes]
    senders = [s for s in stats.CLOSE_SENDERS if wide[s].any()]
    handles = [Patch(facecolor=CLASS_COLORS[k], edgecolor="#222222", label=k) for k in present]
    handles += [Patch(facecolor="white", edgecolor="#222222", hatch=SENDER_HATCH[s],
                      label={"none": "no close frame"}.get(s, f"sent by {s}")) for s in senders]
    ax.legend(handles=handles, fontsize=8, **_OUTSIDE)
    n_frames = int(table.loc[table["sender"] != "none", "count"].sum())
    n_none = int(table.loc[table["sender"] == "none", "count"].sum())
    ax.set_title(f"{title}\n{_plural(n_frames, 'close frame')}, "
                 f"{_plural(n_none, 'connection')} ended without one", fontsize=11)
    ax.set_xlabel("count (close frames, or connections for “no close frame”)")
    return ax


def versions(a_or_df: Any, ax: Axes | None = None) -> Axes:
    """WebSocket connections per protocol version/draft, failed handshakes stacked in red."""
    if isinstance(a_or_df, pd.DataFrame) and {"version", "draft", "failed"} <= set(a_or_df.columns):
        table = a_or_df
    else:
        table = stats.versions(_as_analysis(a_or_df))
    title = "Protocol versions"
    if table.empty:
        return _no_data(_axes(ax), title)
    table = table.sort_values(["connections", "version"], ascending=[False, True], kind="stable")
    labels = [f"{_label(d)} (version {v})" for d, v in zip(table["draft"], table["version"])]
    ax = _axes(ax, 8.0, _rows_height(len(labels)))
    failed = table["failed"].to_numpy(dtype="float64")
    ok = table["connections"].to_numpy(dtype="float64") - failed
    _barh_stacked(ax, labels, {"handshake ok": ok, "handshake failed": failed},
                  {"handshake ok": "#4c72b0", "handshake failed": "#d62728"})
    ax.legend(fontsize=8, **_OUTSIDE)
    n = int(table["connections"].sum())
    ax.set_title(f"{title} ({n:,} WebSocket connections)")
    ax.set_xlabel("connections")
    return ax


def connection_timeline(a_or_df: Any, ax: Axes | None = None, origin: pd.Timestamp | None = None) -> Axes:
    """One bar per connection from its first to its last packet, coloured by close_status, close
    frames marked. Above TIMELINE_MAX_BARS connections: the number of open connections over time,
    stacked by close_status, with close frames ticked along the top. The x axis counts seconds from
    `origin` (default `time_origin(a)`, the capture start, as traffic() does)."""
    a = _as_analysis(a_or_df)
    c, f = stats.websocket_rows(a.connections), a.frames
    title = "Connections over time"
    if c.empty:
        return _no_data(_axes(ax), title)
    t0 = origin if origin is not None else time_origin(a)
    if t0 is None:               # no time anywhere: a table whose times are all null
        return _no_data(_axes(ax), title, _NO_TIMES)
    start = _seconds(c["start"], t0)
    end = _seconds(c["end"].fillna(c["start"]), t0)
    end = np.maximum(end, start)
    status = c["close_status"].astype("object").fillna("open-at-end").to_numpy()
    closes = f.loc[f["opcode"] == 8, ["conn_id", "ts", "sender"]]
    span = float(end.max() - start.min()) or 1.0
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    if len(c) <= TIMELINE_MAX_BARS:
        ax = _axes(ax, 9.0, _rows_height(len(c)))
        order = np.lexsort((c["conn_id"].to_numpy(), start))
        row_of = {int(cid): i for i, cid in enumerate(c["conn_id"].to_numpy()[order])}
        width = np.maximum(end - start, span * 0.004)[order]
        colors = [STATUS_COLORS.get(s, "#7f7f7f") for s in status[order]]
        ax.barh(np.arange(len(c)), width, left=start[order], color=colors, height=0.6)
        labels = [f"#{cid} {_label(cl, 40)}:{port}" for cid, cl, port in
                  zip(c["conn_id"].to_numpy()[order], c["client"].to_numpy()[order],
                      c["client_port"].to_numpy()[order])]
        ax.set_yticks(np.arange(len(c)), labels, fontsize=8)
        ax.set_ylim(len(c) - 0.5, -0.5)
        markers = {"client": ("<", "black"), "server": (">", "white")}
        closes = closes[closes["conn_id"].isin(row_of)]
        for sender, (marker, face) in markers.items():
            part = closes[closes["sender"] == sender]
            if len(part):
                ys = part["conn_id"].map(row_of).to_numpy(dtype="float64")
                ax.scatter(_seconds(part["ts"], t0), ys, marker=marker, s=36, facecolor=face,
                           edgecolor="black", linewidth=0.8, zorder=3)
        seen = set(status)
        handles: list[Any] = [Patch(color=STATUS_COLORS[s], label=s) for s in STATUS_COLORS if s in seen]
        handles += [Line2D([], [], marker=m, color="none", markerfacecolor=fc, markeredgecolor="black",
                           label=f"close frame from {s}") for s, (m, fc) in markers.items()
                    if (closes["sender"] == s).any()]
        ax.legend(handles=handles, fontsize=8, **_OUTSIDE)
        ax.set_title(f"{title}: {len(c):,} connections, one bar each (first to last packet)")
        ax.set_ylabel("connection (#id client:port)")
    else:
        ax = _axes(ax, 9.0, 4.5)
        grid = np.linspace(start.min(), end.max(), 400)
        layers, names = [], []
        for s in STATUS_COLORS:
            sel = status == s
            if not sel.any():
                continue
            st, en = np.sort(start[sel]), np.sort(end[sel])
            layers.append(np.searchsorted(st, grid, side="right") - np.searchsorted(en, grid, side="left"))
            names.append(s)
        ax.stackplot(grid, *layers, labels=names, colors=[STATUS_COLORS[s] for s in names], step="post")
        if len(closes):
            counts, edges = np.histogram(_seconds(closes["ts"], t0), bins=grid)
            hit = edges[:-1][counts > 0]
            ax.plot(hit, np.full(len(hit), 1.0), "|", color="black", markersize=8, clip_on=False,
                    transform=ax.get_xaxis_transform(), label="close frames (ticks on top)")
        ax.legend(fontsize=8, **_OUTSIDE)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{title}: {len(c):,} connections — too many for one bar each,\n"
                     "so: connections open at each moment, by how they ended", fontsize=11)
        ax.set_ylabel("open connections")
    ax.set_xlabel(_time_label(t0))
    return ax


def traffic(a_or_df: Any, ax: Axes | None = None, origin: pd.Timestamp | None = None) -> Axes:
    """WebSocket bytes (areas, left axis) and messages (markers, right axis) by sender, in buckets
    sized so the traffic spans at most ~150 of them, and at least 1 s when it spans a second or
    more: then drawn as rates per second. Traffic spanning under stats.MIN_RATE_SPAN_S (the
    summary's rule) gets sub-second buckets drawn as counts per bucket, never extrapolated to a
    per-second rate. The x
    axis counts seconds from `origin` (default `time_origin(a)`, the capture start)."""
    a = _as_analysis(a_or_df)
    f = a.frames
    title = "Traffic by sender"
    if f.empty:
        return _no_data(_axes(ax), title)
    t0 = origin if origin is not None else time_origin(a)
    if t0 is None:
        return _no_data(_axes(ax), title, _NO_TIMES)
    first = min(f["ts"].min(), a.messages["ts_end"].min() if len(a.messages) else f["ts"].min())
    tmax = max(f["ts"].max(), a.messages["ts_end"].max() if len(a.messages) else f["ts"].max())
    span = (tmax - first).total_seconds()
    # a span of a second or more gets buckets of a second or more, drawn as rates; a shorter span
    # gets shorter buckets, drawn as counts (a rate from a millisecond bucket would be extrapolated)
    freq, bucket = _pick_freq(span)
    if span >= stats.MIN_RATE_SPAN_S and bucket < 1.0:
        freq, bucket = "1s", 1.0
    rates = bucket >= 1.0
    per = bucket if rates else 1.0
    unit = "per second" if rates else f"per {freq} bucket"
    tl = stats.timeline(a, freq=freq)
    ax = _axes(ax, 9.0, 4.5)
    from matplotlib.ticker import EngFormatter
    twin = ax.twinx()
    for sender in ("client", "server"):
        part = tl[tl["sender"] == sender]
        if part.empty:
            continue
        x = _seconds(part["ts"], t0)
        x = np.append(x, x[-1] + bucket)
        b = part["bytes"].to_numpy(dtype="float64") / per
        msg = part["messages"].to_numpy(dtype="float64") / per
        color = SENDER_COLORS[sender]
        ax.fill_between(x, np.append(b, b[-1]), step="post", color=color, alpha=0.3, lw=0)
        ax.step(x, np.append(b, b[-1]), where="post", color=color, lw=1.2,
                label=f"{sender} bytes" + ("/s" if rates else ""))
        busy = msg > 0
        twin.scatter(x[:-1][busy] + bucket / 2, msg[busy], s=14, color=color,
                     marker="o" if sender == "client" else "x",
                     label=f"{sender} messages" + ("/s" if rates else ""))
    ax.yaxis.set_major_formatter(EngFormatter(unit="B/s" if rates else "B"))
    if not rates:
        _integer_ticks(twin.yaxis)
    ax.set_ylim(bottom=0)
    twin.set_ylim(bottom=0)
    ax.set_ylabel(f"bytes on the wire {unit} (areas)")
    twin.set_ylabel(f"messages {unit} (markers)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left", bbox_to_anchor=(1.12, 1.0), borderaxespad=0)
    note = "" if rates else "; counts, as the buckets are under 1 s"
    ax.set_title(f"{title} ({freq} buckets{note})")
    ax.set_xlabel(_time_label(t0))
    return ax


def message_sizes(a_or_df: Any, ax: Axes | None = None) -> Axes:
    """Histogram of message sizes after decompression, log-spaced bins, text and binary overlaid."""
    a = _as_analysis(a_or_df)
    m = a.messages
    title = "Message sizes"
    if m.empty:
        return _no_data(_axes(ax), title)
    sizes = m["size"].to_numpy(dtype="float64")
    zeros = int((sizes <= 0).sum())
    clipped = np.maximum(sizes, 1.0)
    bins = _log_bins(clipped)
    ax = _axes(ax)
    for kind in ("text", "binary"):
        sel = (m["type"] == kind).to_numpy()
        if sel.any():
            ax.hist(clipped[sel], bins=bins.tolist(), histtype="stepfilled", alpha=0.45,
                    color=TYPE_COLORS[kind], edgecolor=TYPE_COLORS[kind], linewidth=1.2,
                    label=f"{kind} ({int(sel.sum()):,})")
    ax.set_xscale("log")
    _integer_ticks(ax.yaxis)
    ax.legend(fontsize=8)
    ax.set_title(f"{title} ({len(m):,} messages, after decompression)")
    _log_ticks(ax, bins, "B")
    ax.set_xlabel("message size (bytes, log scale)"
                  + (f"; {zeros:,} empty messages counted as 1 B" if zeros else ""))
    ax.set_ylabel("messages")
    return ax


def rtt(a_or_df: Any, ax: Axes | None = None) -> Axes:
    """Distributions of ping→pong round-trip times (frames.rtt) and handshake request→response times
    (connections.handshake_rtt), in milliseconds on a log axis."""
    a = _as_analysis(a_or_df)
    ping = a.frames["rtt"].dropna().to_numpy(dtype="float64") * 1000.0
    hs = a.connections["handshake_rtt"].dropna().to_numpy(dtype="float64") * 1000.0
    title = "Round-trip times"
    if ping.size == 0 and hs.size == 0:
        return _no_data(_axes(ax), title)
    both = np.concatenate([ping, hs])
    floor = max(float(both[both > 0].min()) if (both > 0).any() else 1e-3, 1e-6)
    bins = _log_bins(np.maximum(both, floor))
    ax = _axes(ax)
    for values, name, color in ((hs, "handshake", "#55a868"), (ping, "ping → pong", "#8172b2")):
        if values.size:
            ax.hist(np.maximum(values, floor), bins=bins.tolist(), histtype="stepfilled", alpha=0.45,
                    color=color, edgecolor=color, linewidth=1.2,
                    label=f"{name}: n={values.size:,}, median {np.median(values):.3g} ms")
    ax.set_xscale("log")
    _log_ticks(ax, bins, "s", scale=1e-3)
    _integer_ticks(ax.yaxis)
    ax.legend(fontsize=8)
    ax.set_title(title)
    ax.set_xlabel("round-trip time (log scale)")
    ax.set_ylabel("count")
    return ax


def problems(a_or_df: Any, ax: Axes | None = None) -> Axes:
    """Problems by kind, most frequent on top, split by the side that caused them."""
    a = _as_analysis(a_or_df)
    p = a.problems
    title = "Problems"
    if p.empty:
        return _no_data(_axes(ax), title, "no data: no problems found")
    sender = p["sender"].astype("object").fillna("none")
    table = pd.crosstab(p["kind"].astype("object"), sender)
    table = table.reindex(columns=list(stats.CLOSE_SENDERS), fill_value=0)
    table = table.loc[table.sum(axis=1).sort_values(ascending=False, kind="stable").index]
    nkinds = len(table)
    if nkinds > MAX_CATEGORIES:
        table = table.iloc[:MAX_CATEGORIES]
        title += f" (the {MAX_CATEGORIES} most frequent of {nkinds} kinds)"
    ax = _axes(ax, 8.0, _rows_height(len(table)))
    _barh_stacked(ax, [_label(k) for k in table.index],
                  {s: table[s].to_numpy(dtype="float64") for s in stats.CLOSE_SENDERS},
                  {"client": SENDER_COLORS["client"], "server": SENDER_COLORS["server"],
                   "none": SENDER_COLORS["none"]})
    handles, labels = ax.get_legend_handles_labels()
    names = {"client": "client side", "server": "server side", "none": "not side-specific"}
    ax.legend(handles, [names[s] for s in labels], fontsize=8, **_OUTSIDE)
    ax.set_title(f"{title} ({len(p):,} in total)")
    ax.set_xlabel("problems")
    return ax


def app_latency(a_or_df: Any, ax: Axes | None = None) -> Axes:
    """Exchange latency per (protocol, method): a box (quartiles, whiskers to the 5th and 95th
    percentiles) and every answered exchange as a dot, in milliseconds on a log axis; methods with
    the slowest median on top, the MAX_CATEGORIES slowest shown (the title says when cut)."""
    from analyzer.app import stats as app_stats
    a = _as_analysis(a_or_df)
    e = app_stats.exchanges(a)
    e = e[e["answered"].to_numpy(dtype=bool) & e["latency"].notna().to_numpy()]
    title = "Exchange latency by method"
    if e.empty:
        return _no_data(_axes(ax), title, "no data: no answered exchanges")
    ms = e["latency"].to_numpy(dtype="float64") * 1000.0
    floor = max(float(ms[ms > 0].min()) if (ms > 0).any() else 1e-3, 1e-6)
    ms = np.maximum(ms, floor)
    keyed = pd.DataFrame({"protocol": e["protocol"].astype("object").to_numpy(),
                          "method": e["method"].astype("object").to_numpy(), "ms": ms})
    indices = keyed.groupby(["protocol", "method"], sort=True).indices
    groups: dict[tuple[Any, Any], np.ndarray] = {cast(tuple[Any, Any], k): np.asarray(v)
                                                 for k, v in indices.items()}
    medians = {k: float(np.median(ms[v])) for k, v in groups.items()}  # one per method, not per row
    order = sorted(groups, key=lambda k: (-medians[k], str(k)))
    n_methods = len(order)
    if n_methods > MAX_CATEGORIES:
        order = order[:MAX_CATEGORIES]
        title += f" (the {MAX_CATEGORIES} slowest of {n_methods})"
    data = [ms[groups[k]] for k in order]
    ax = _axes(ax, 8.0, _rows_height(len(order)))
    y = np.arange(len(order))
    import matplotlib
    # `orientation` arrived in matplotlib 3.10, which deprecates `vert` (pyproject allows 3.7)
    horizontal: dict[str, Any] = ({"orientation": "horizontal"}
                                  if tuple(int(x) for x in matplotlib.__version__.split(".")[:2]) >= (3, 10)
                                  else {"vert": False})
    ax.boxplot(data, positions=y, whis=(5, 95), showfliers=False, widths=0.6,
               medianprops={"color": "#d62728"}, **horizontal)
    for yi, values in zip(y, data):
        jitter = (np.arange(len(values)) % 5 - 2) * 0.06
        ax.scatter(values, yi + jitter, s=12, color="#1f77b4", alpha=0.7, zorder=3)
    labels = [f"{_label(p, 20)}: {_label(m, 40)} (n={len(d):,})" for (p, m), d in zip(order, data)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(len(order) - 0.5, -0.5)
    ax.set_xscale("log")
    ax.set_title(f"{title} ({_plural(len(ms), 'answered exchange')})")
    ax.set_xlabel("latency, request to response (ms, log scale)")
    return ax


def app_top(a_or_df: Any, ax: Axes | None = None, by: str = "messages", n: int = 20) -> Axes:
    """The `n` busiest methods, topics, destinations and events by application messages (or, with
    by="bytes", by the bytes of the WebSocket messages carrying them), one bar each, coloured by
    protocol."""
    from analyzer.app import stats as app_stats
    a = _as_analysis(a_or_df)
    table = app_stats.top_channels(a, by="bytes" if by == "bytes" else "messages", n=None)
    title = "Busiest methods, topics and events" + (" by bytes" if by == "bytes" else "")
    if table.empty:
        return _no_data(_axes(ax), title, "no data: no application messages")
    total = len(table)
    table = table.head(n)
    if total > n:
        title += f" (the {n} first of {total})"
    ax = _axes(ax, 8.0, _rows_height(len(table)))
    protocols = list(dict.fromkeys(table["protocol"].astype("object")))
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c"]
    colors = {p: palette[i % len(palette)] for i, p in enumerate(protocols)}
    values = table[by if by == "bytes" else "messages"].to_numpy(dtype="float64")
    y = np.arange(len(table))
    ax.barh(y, values, color=[colors[p] for p in table["protocol"].astype("object")])
    for yi, v in enumerate(values.tolist()):
        ax.text(v, yi, f" {int(v):,}", va="center", fontsize=8)
    ax.set_yticks(y, [_label(c, 50) for c in table["channel"].astype("object")], fontsize=8)
    ax.set_ylim(len(table) - 0.5, -0.5)
    ax.set_xlim(0, max(float(values.max()), 1.0) * 1.15)
    _integer_ticks(ax.xaxis)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=colors[p], label=_label(p, 30)) for p in protocols], fontsize=8,
              **_OUTSIDE)
    ax.set_title(title)
    ax.set_xlabel("bytes (WebSocket message sizes, shared among the application messages each carried)"
                  if by == "bytes" else "application messages")
    return ax


class PlotAccessor:
    """`analysis.plot`: the plot functions of this module bound to one Analysis.

    Each method takes `ax=None` and returns the matplotlib Axes it drew on.
    """

    def __init__(self, analysis: Analysis) -> None:
        self._a = analysis

    def close_codes(self, ax: Axes | None = None) -> Axes:
        return close_codes(self._a, ax=ax)

    def versions(self, ax: Axes | None = None) -> Axes:
        return versions(self._a, ax=ax)

    def connection_timeline(self, ax: Axes | None = None, origin: pd.Timestamp | None = None) -> Axes:
        return connection_timeline(self._a, ax=ax, origin=origin)

    def traffic(self, ax: Axes | None = None, origin: pd.Timestamp | None = None) -> Axes:
        return traffic(self._a, ax=ax, origin=origin)

    def message_sizes(self, ax: Axes | None = None) -> Axes:
        return message_sizes(self._a, ax=ax)

    def rtt(self, ax: Axes | None = None) -> Axes:
        return rtt(self._a, ax=ax)

    def problems(self, ax: Axes | None = None) -> Axes:
        return problems(self._a, ax=ax)

    def app_latency(self, ax: Axes | None = None) -> Axes:
        return app_latency(self._a, ax=ax)

    def app_top(self, ax: Axes | None = None, by: str = "messages", n: int = 20) -> Axes:
        return app_top(self._a, ax=ax, by=by, n=n)

    def __repr__(self) -> str:
        return f"<PlotAccessor: {', '.join(PLOTS + APP_PLOTS)}>"


__all__ = ["APP_PLOTS", "PLOTS", "TIME_PLOTS", "PlotAccessor", "app_latency", "app_top", "close_codes",
            "connection_timeline", "message_sizes",
           "problems", "rtt", "time_origin", "traffic", "versions"]
