"""The HTML tables of the report for the templates: headers, and the rows as escaped HTML (cells
with their CSS class and optional link, row anchors).

Cells are display strings made column by column (vectorised; captured text through
`stats.printable`); the template escapes them. Links and anchors are built from our integers
only (conn ids, frame numbers, page numbers), never from captured text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from analyzer import stats

#: columns of free text that may wrap; every other cell (addresses, ports, times, flags, numbers,
#: kinds) is kept on one line
WRAPPING = frozenset({"capture", "host", "path", "origin", "user_agent", "server_software", "subprotocol",
                      "extensions", "close_reason", "close_reason_client", "close_reason_server",
                      "failure_reason", "preview", "detail", "subprotocols_offered", "extensions_offered",
                      "versions_supported", "value", "event", "method", "channel",
                      "correlation_id", "status"})


@dataclass
class Links:
    """Where the report's pages are, as seen from the page a table is on.

    `prefix` leads from that page to the report's directory ("" on index.html, "../" one level
    down); `conn_pages` holds the conn ids that have a page; `frame_page` maps a frame number to
    the number of the frames page holding it (frame numbers not shown on any page are absent).
    """

    prefix: str = ""
    conn_pages: frozenset[int] = frozenset()
    frame_page: dict[int, int] = field(default_factory=dict)
    _sorted: np.ndarray | None = field(default=None, repr=False)

    def conn(self, cid: object) -> str | None:
        if cid is None or cid is pd.NA or (isinstance(cid, float) and np.isnan(cid)):
            return None
        return f"{self.prefix}conn/{int(cid)}.html" if int(cid) in self.conn_pages else None  # type: ignore[call-overload]

    def frame(self, frame_no: object) -> str | None:
        """The frames page row of `frame_no`; for a record that completed no frame (a TCP gap, a
        problem of the handshake or of TLS), the first frame after it (else the last before it),
        so that every problem leads to the frames around it."""
        if frame_no is None or frame_no is pd.NA or (isinstance(frame_no, float) and np.isnan(frame_no)):
            return None
        n = int(frame_no)  # type: ignore[call-overload]
        page = self.frame_page.get(n)
        if page is None and self.frame_page:
            shown = self._shown()
            i = int(np.searchsorted(shown, n))
            n = int(shown[min(i, len(shown) - 1)])
            page = self.frame_page[n]
        return None if page is None else f"{self.prefix}frames/{page}.html#frame-{n}"

    def _shown(self) -> np.ndarray:
        """The frame numbers that have a page row, sorted (made once)."""
        if self._sorted is None or len(self._sorted) != len(self.frame_page):
            self._sorted = np.fromiter(sorted(self.frame_page), dtype=np.int64, count=len(self.frame_page))
        return self._sorted


def cell_strings(s: pd.Series) -> tuple[list[str], bool]:
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


#: tables listing exchanges of several connections: their exchange_id links to the exchange's row
#: on its connection's page (conn/<id>.html#exchange-<n>)
EXCHANGE_LINKED = frozenset({"app_slowest", "app_unanswered"})


def _hrefs(name: str, s: pd.Series, links: Links | None, table: str,
           head: pd.DataFrame | None = None) -> list[str | None]:
    if links is None:
        return [None] * len(s)
    if name == "exchange_id" and table in EXCHANGE_LINKED and head is not None and "conn_id" in head.columns:
        pages = [links.conn(c) for c in head["conn_id"].astype("object")]
        return [None if p is None else f"{p}#exchange-{int(n)}" for p, n in zip(pages, s.astype("object"))]
    if name == "conn_id":
        return [links.conn(v) for v in s.astype("object")]
    if name == "frame_no" and table != "frames":
        return [links.frame(v) for v in s.astype("object")]
    return [None] * len(s)


def _td(text: str, css: str, href: str | None) -> str:
    inner = escape(text) if href is None else f'<a href="{escape(href)}">{escape(text)}</a>'
    return f'<td class="{css}">{inner}</td>' if css else f"<td>{inner}</td>"


def display_table(df: pd.DataFrame, columns: list[str] | None, limit: int, file: str | None, *,
                  name: str = "", links: Links | None = None, offset: int = 0) -> dict[str, Any]:
    """Rows `offset`..`offset+limit` of `df` as the template's table: headers (with whether numeric),
    the rows as escaped HTML (`body`; an id "frame-N" on the first row of each frame number in the
    frames table, "exchange-N" on each row of a connection page's exchanges table), the total row
    count and the CSV holding all rows.

    The rows are made here, not in the template: a frames page of 500 rows is ~8,000 cells, and
    a jinja2 macro call per cell took most of the report's time. Every cell goes through
    markupsafe's escape, as the template's autoescape would.
    """
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    head = df.iloc[offset:offset + limit]
    columns_cells = []
    numeric = []
    for c in cols:
        if c == "time":  # seconds since the capture start, to the microsecond as tshark shows them
            values = [("" if pd.isna(v) else f"{v:.6f}") for v in head[c].to_numpy(dtype="float64")]
            num = True
        else:
            values, num = cell_strings(head[c])
        css = " ".join(k for k in ("num" if num else "", "" if c in WRAPPING else "nw") if k)
        columns_cells.append([_td(v, css, h) for v, h in zip(values, _hrefs(c, head[c], links, name, head))])
        numeric.append(num)
    starts = ["<tr>"] * len(head)
    if name == "frames" and "frame_no" in head.columns and len(head):
        fn = head["frame_no"].to_numpy(dtype="int64")
        first = np.ones(len(fn), dtype=bool)
        first[1:] = fn[1:] != fn[:-1]
        starts = [f'<tr id="frame-{n}">' if f else "<tr>" for n, f in zip(fn.tolist(), first.tolist())]
    if name == "exchanges" and "exchange_id" in head.columns:  # a connection page's exchanges
        starts = [f'<tr id="exchange-{n}">' for n in head["exchange_id"].to_numpy(dtype="int64").tolist()]
    body = "\n".join(start + "".join(cells) + "</tr>"
                     for start, *cells in zip(starts, *columns_cells)) if columns_cells else ""
    return {"id": f"t-{name or 'table'}", "headers": list(zip(cols, numeric)), "body": Markup(body),
            "total": len(df), "shown": len(head), "offset": offset, "file": file}


def frame_pages(frame_nos: pd.Series, per_page: int, max_pages: int) -> dict[int, int]:
    """Frame number -> number (1-based) of the frames page showing it, for the first max_pages pages."""
    shown = frame_nos.iloc[:per_page * max_pages].to_numpy(dtype="int64")
    pages = np.arange(len(shown)) // per_page + 1
    # a frame number on two rows (one packet completing two frames) belongs to its first row's page
    uniq, first = np.unique(shown, return_index=True)
    return dict(zip(uniq.tolist(), pages[first].tolist()))


__all__ = ["EXCHANGE_LINKED", "WRAPPING", "Links", "cell_strings", "display_table", "frame_pages"]
