"""Putting tables together: the rows of one capture's processes, then several captures, into one set.

conn_id is renumbered here so that it never depends on how the work was split: within a capture,
WebSocket connections are numbered 1, 2, 3… in the order of their first packet, and the
captures follow one another in the order they were given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.tables import (
    APP_MESSAGE_COLUMNS,
    EXCHANGE_COLUMNS,
    PROBLEM_COLUMNS,
    SCHEMAS,
    ConnectionColumns,
    FrameColumns,
    MessageColumns,
    TableRows,
    analysis_cap_rows,
    connections_frame,
    empty_tables,
    frames_frame,
    kept_payloads_rows,
    make_frame,
    messages_frame,
)

Tables = dict[str, pd.DataFrame]

def tables_from_rows(parts: list[TableRows]) -> Tables:
    """One capture's DataFrames from the rows collected by the processes that shared it
    (or by the only one): connections numbered 1, 2, 3… by first packet, frames in frame_no order,
    messages by (conn_id, message_id), problems by (frame_no, conn_id), app_messages by (conn_id,
    message_id, app_index), exchanges by (conn_id, exchange_id). The sorting and merging is done on the
    collected columns, one column at a time (each part's copy of it let go as soon as it is
    placed), and every table is made once."""
    capture = parts[0].capture
    lookups = _lookups(parts)
    connections = _connections(parts, lookups)
    problems = [row if row.conn_id is None else row._replace(conn_id=_new_id(lut, row.conn_id))
                for part, lut in zip(parts, lookups) for row in part.problems]
    # what the caps of the whole analysis left out (each process kept its share of them)
    problems += analysis_cap_rows(capture, [part.problems for part in parts])
    problems += kept_payloads_rows(capture, [part.kept for part in parts])
    # by frame_no (none first), then connection (capture-level first): within one connection the
    # collection order is the same however the work was split, across connections it is not
    problems.sort(key=lambda row: (row.frame_no is not None, row.frame_no or 0,
                                   row.conn_id is not None, row.conn_id or 0))

    # frames in frame_no order
    frame_tables = [part.frames for part in parts]
    sizes = [len(t) for t in frame_tables]
    order = _order([t.column("frame_no") for t in frame_tables])
    reasons_by_part = [t.close_reason for t in frame_tables]
    where = _placement(order, sizes, needed=len(parts) > 1 or any(reasons_by_part))
    reasons = _moved(reasons_by_part, where, sizes)
    columns = _gather(frame_tables, order, where, lookups)
    for part in parts:
        part.frames = type(part.frames)()
    del frame_tables
    frames = frames_frame(columns, reasons, capture)
    del columns

    # messages by (conn_id, message_id), previews and kept payloads moved with their rows
    message_tables = [part.messages for part in parts]
    sizes = [len(t) for t in message_tables]
    order = _order(_message_keys(message_tables, lookups))
    payload_by_part = [t.payload for t in message_tables]
    where = _placement(order, sizes, needed=len(parts) > 1 or any(payload_by_part))
    payload = _moved(payload_by_part, where, sizes)
    columns = _gather(message_tables, order, where, lookups)
    previews = [t.previews() for t in message_tables]
    for part in parts:
        part.messages = type(part.messages)()
    del message_tables
    # Arrow's own pool (mimalloc) would keep the freed concatenation for later: the system pool
    # gives it back, so the process's peak is what the tables need
    pool = pa.system_memory_pool()
    previews = pa.concat_arrays(previews, memory_pool=pool) if len(previews) > 1 else previews[0]
    if order is not None:
        previews = pc.take(previews, pa.array(order), memory_pool=pool)
    del order, where
    messages = messages_frame(columns, previews, payload, capture)
    return {
        "frames": frames,
        "messages": messages,
        "connections": connections,
        "problems": make_frame(PROBLEM_COLUMNS, problems),
        **app_tables(parts, lookups),
    }


def app_tables(parts: list[TableRows], lookups: list[np.ndarray]) -> Tables:
    """app_messages and exchanges of one capture's parts, conn_id renumbered, in key order (each
    part's rows let go of as they are taken)."""
    app_rows = []
    exchange_rows = []
    for part, lut in zip(parts, lookups):
        # (every conversation has its connections row: its id is known)
        app_rows += [row._replace(conn_id=int(lut[row.conn_id])) for row in part.app_messages]
        exchange_rows += [row._replace(conn_id=int(lut[row.conn_id])) for row in part.exchanges]
        part.app_messages, part.exchanges = [], []
    app_rows.sort(key=lambda row: (row.conn_id, row.message_id, row.app_index))
    exchange_rows.sort(key=lambda row: (row.conn_id, row.exchange_id))
    return {"app_messages": make_frame(APP_MESSAGE_COLUMNS, app_rows),
            "exchanges": make_frame(EXCHANGE_COLUMNS, exchange_rows)}


def _new_id(lut: np.ndarray, old: int) -> int | None:
    new = int(lut[old])
    return None if new < 0 else new


def _lookups(parts: list[TableRows], at_least: int = 0) -> list[np.ndarray]:
    """Per part, old conn_id → new one (by first packet, then part, then old id); -1 unknown.
    `at_least`: the largest old id to cover beyond those in the parts (rows taken out of them)."""
    starts = sorted((int(first), i, int(old)) for i, part in enumerate(parts)
                    for first, old in zip(part.connections.columns["first_packet"],
                                          part.connections.columns["conn_id"]))
    lookups = []
    for part in parts:
        ids = list(part.connections.columns["conn_id"])
        ids += [row.conn_id for row in part.problems if row.conn_id is not None]
        top = max(max(ids, default=0), at_least)
        for table in (part.frames, part.messages):
            if len(table):
                top = max(top, int(table.column("conn_id").max()))
        ids = [row.conn_id for row in part.app_messages] + [row.conn_id for row in part.exchanges]
        top = max(top, max(ids, default=0))
        lookups.append(np.full(top + 1, -1, dtype=np.int64))
    for new_id, (_, i, old) in enumerate(starts, start=1):
        lookups[i][old] = new_id
    return lookups


def conn_id_lookup(rows: TableRows, top: int) -> np.ndarray:
    """One process's provisional conn_id → the final one (as tables_from_rows numbers them), for
    ids up to `top` at least; -1 for an id of no connection (analyzer.outofcore)."""
    return _lookups([rows], top)[0]


def _connections(parts: list[TableRows], lookups: list[np.ndarray]) -> pd.DataFrame:
    """The connections table: the parts' columns stacked, conn_id renumbered, in conn_id order;
    tcp_id numbers the TCP connections 1, 2, 3… by first packet as conn_id numbers the WebSockets
    (the rows of several WebSockets on one TCP connection share its first packet)."""
    columns = [part.connections.take_all() for part in parts]
    for part in parts:
        part.connections = type(part.connections)()
    new_ids = np.concatenate([lut[cols["conn_id"]] if len(cols["conn_id"]) else cols["conn_id"]
                              for cols, lut in zip(columns, lookups)])
    order = None if _ascending(new_ids) else np.argsort(new_ids, kind="stable")
    merged = ConnectionColumns.concat(columns, order)
    merged["conn_id"] = new_ids if order is None else new_ids[order]
    merged["tcp_id"] = np.unique(merged["first_packet"], return_inverse=True)[1].astype(np.int64) + 1
    return connections_frame(merged)


def _ascending(key: np.ndarray) -> bool:
    if key.dtype.names:                     # (conn_id, message_id) pairs: no ordering operators
        return False
    return len(key) < 2 or bool((key[1:] >= key[:-1]).all())


def _order(keys: list[np.ndarray]) -> np.ndarray | None:
    """The stable order of the parts' keys stacked; None when they are in order already (the
    common case: checked with a byte a row, where sorting would take 8 or more)."""
    key = keys[0] if len(keys) == 1 else np.concatenate(keys)
    del keys
    return None if _ascending(key) else np.argsort(key, kind="stable")


def _message_keys(tables: list[MessageColumns], lookups: list[np.ndarray]) -> list[np.ndarray]:
    """Per part, the sort key of its messages: (new conn_id, message_id) packed in one int64
    (conn_id << 32 | message_id: one array, not two and a lexsort), or that pair stacked as
    a record array on the rare capture whose ids do not fit."""
    keys = []
    for t, lut in zip(tables, lookups):
        key = lut[t.column("conn_id")]
        message_id = t.column("message_id")
        if len(key) and (int(key.max()) >= 1 << 31 or int(message_id.max()) >= 1 << 32):
            pairs = np.empty(len(key), dtype=[("conn", "i8"), ("message", "i8")])
            pairs["conn"], pairs["message"] = key, message_id
            keys.append(pairs)
            continue
        key <<= 32
        key |= message_id
        keys.append(key)
    if len({k.dtype for k in keys}) > 1:       # some packed, some not: all as pairs
        keys = [k if k.dtype.names else _unpacked(k) for k in keys]
    return keys


def _unpacked(key: np.ndarray) -> np.ndarray:
    pairs = np.empty(len(key), dtype=[("conn", "i8"), ("message", "i8")])
    pairs["conn"], pairs["message"] = key >> 32, key & 0xFFFFFFFF
    return pairs


def _placement(order: np.ndarray | None, sizes: list[int], *, needed: bool) -> list[np.ndarray] | None:
    """Where each part's rows go in the merged table; None when the parts stacked are in order
    or nobody needs it (one part is gathered with `order` itself)."""
    if order is None or not needed:
        return None
    where = np.empty(len(order), dtype=np.int64)
    where[order] = np.arange(len(order))
    return np.split(where, np.cumsum(sizes)[:-1])


def _moved(by_row: list[dict[int, Any]], where: list[np.ndarray] | None,
           sizes: list[int]) -> dict[int, Any]:
    """Per-row values of each part (close reasons, payloads) keyed by their merged rows."""
    moved = {}
    offset = 0
    for i, values in enumerate(by_row):
        for row, value in values.items():
            moved[offset + row if where is None else int(where[i][row])] = value
        offset += sizes[i]
    return moved


def _gather(tables: list[FrameColumns] | list[MessageColumns], order: np.ndarray | None,
            where: list[np.ndarray] | None, lookups: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every int64 field of the parts' tables merged into one column, field by field: each part's
    piece is taken out of it (and freed) as soon as it is placed; conn_id is renumbered."""
    total = sum(len(t) for t in tables)
    columns = {}
    for name in tables[0].FIELDS:
        pieces = [t.column(name, take=True) for t in tables]
        if name == "conn_id":
            pieces = [lut[piece] for piece, lut in zip(pieces, lookups)]
        if order is None:
            column = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        elif where is None:                 # one part
            column = pieces[0].take(order)
        else:
            column = np.empty(total, dtype=np.int64)
            for piece, dest in zip(pieces, where):
                column[dest] = piece
        del pieces
        columns[name] = column
    return columns


def _shifted(part: Tables, conn_offset: int, tcp_offset: int) -> Tables:
    """A capture's tables (numbered from 1 by tables_from_rows) with conn_id and tcp_id moved up
    past the captures before it (in place: the tables are ours)."""
    for name, df in part.items():
        if not len(df):
            continue
        if name == "problems":          # capture-level problems have no connection
            df["conn_id"] = df["conn_id"] + conn_offset
        else:
            df["conn_id"] = df["conn_id"].to_numpy() + conn_offset
        if name == "connections":
            df["tcp_id"] = df["tcp_id"].to_numpy() + tcp_offset
    return part


def _categorical_again(column: pd.Series, dtype: str) -> pd.Series:
    """A schema categorical whose parts had different categories comes out of pd.concat as
    object: make it categorical again, with sorted categories as make_frame gives them."""
    if dtype.startswith("cat") and not isinstance(column.dtype, pd.CategoricalDtype):
        return pd.Series(pd.Categorical(column.astype("str")), index=column.index, name=column.name)
    return column


def _merge_table(dfs: list[pd.DataFrame], name: str, keys: list[str]) -> pd.DataFrame:
    """Concatenate one table's parts and sort them by `keys` (stable), column by column: each
    column is popped from the parts as it is merged, so the peak holds the table about once,
    not three times (parts, concatenation, sorted copy)."""
    dfs = [df for df in dfs if len(df)] or dfs[:1]
    key_arrays = [np.concatenate([df[k].to_numpy() for df in dfs]) for k in keys]
    order = np.lexsort(key_arrays[::-1]) if len(key_arrays) > 1 else np.argsort(key_arrays[0], kind="stable")
    if len(dfs) == 1 and (order == np.arange(len(order))).all():
        return dfs[0]
    columns = {}
    for column, dtype, _ in SCHEMAS[name]:
        merged = _categorical_again(pd.concat([df.pop(column) for df in dfs], ignore_index=True), dtype)
        columns[column] = merged.take(order).reset_index(drop=True)
    return pd.DataFrame(columns)


def _small_sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if len(df) < 2:
        return df
    return df.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)


def _merge(parts: list[Tables]) -> Tables:
    """All parts' tables as one set, in order: frames by frame_no, messages by connection and
    message, connections by id, problems by frame_no."""
    return {
        "frames": _merge_table([p["frames"] for p in parts], "frames", ["frame_no"]),
        "messages": _merge_table([p["messages"] for p in parts], "messages", ["conn_id", "message_id"]),
        "connections": _small_sorted(_concat_small([p["connections"] for p in parts], "connections"),
                                     ["conn_id"]),
        "problems": _small_sorted(_concat_small([p["problems"] for p in parts], "problems"),
                                  ["frame_no"]),
        "app_messages": _merge_table([p["app_messages"] for p in parts], "app_messages",
                                     ["conn_id", "message_id", "app_index"]),
        "exchanges": _merge_table([p["exchanges"] for p in parts], "exchanges", ["conn_id", "exchange_id"]),
    }


def _concat_small(dfs: list[pd.DataFrame], name: str) -> pd.DataFrame:
    """Concatenate the rare tables (connections, problems), keeping categoricals categorical."""
    if len(dfs) == 1:
        return dfs[0]
    df = pd.concat(dfs, ignore_index=True)
    for column, dtype, _ in SCHEMAS[name]:
        df[column] = _categorical_again(df[column], dtype)
    return df


def merge_captures(parts: list[Tables], names: list[str]) -> Tables:
    """Several captures' tables, one after the other, with conn_id unique across them."""
    if not parts:
        tables = empty_tables()
    elif len(parts) == 1:
        tables = parts[0]           # numbered from 1 already (tables_from_rows)
    else:
        shifted = []
        conn_offset = tcp_offset = 0
        for part in parts:
            conns = len(part["connections"])
            tcps = int(part["connections"]["tcp_id"].max()) if conns else 0
            shifted.append(_shifted(part, conn_offset, tcp_offset))
            conn_offset += conns
            tcp_offset += tcps
        tables = _merge(shifted)
    for df in tables.values():
        column = df["capture"]
        if isinstance(column.dtype, pd.CategoricalDtype):
            df["capture"] = column.cat.set_categories(names)
        else:
            df["capture"] = pd.Categorical(column.astype("object"), categories=names)
    return tables
