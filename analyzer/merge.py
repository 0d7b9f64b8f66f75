"""Putting tables together: the rows of one capture's processes, then several captures, into one set.

conn_id is renumbered here so that it never depends on how the work was split: within a capture,
WebSocket connections are numbered 1, 2, 3… in the order of their first packet, and the
captures follow one another in the order they were given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from analyzer.tables import (
    CONNECTION_COLUMNS,
    FRAME_FIELDS,
    MESSAGE_FIELDS,
    PROBLEM_COLUMNS,
    SCHEMAS,
    TableRows,
    empty_tables,
    frames_frame,
    make_frame,
    messages_frame,
)

Tables = dict[str, pd.DataFrame]

# positions in the collected rows (tables.py): connections and problems rows are tuples in schema
# order; frames and messages rows are int64 matrices (tables.FRAME_FIELDS / MESSAGE_FIELDS)
_CONN_ID, _FIRST_PACKET = 1, 7
_PROBLEM_CONN_ID, _PROBLEM_FRAME_NO = 1, 2
_FRAME_NO_FIELD = 1
_MESSAGE_ID_FIELD = 1


def tables_from_rows(parts: list[TableRows]) -> Tables:
    """One capture's four DataFrames from the rows collected by the processes that shared it
    (or by the only one): connections numbered 1, 2, 3… by first packet, frames in frame_no order,
    messages by (conn_id, message_id), problems by frame_no. The sorting and merging is done on the
    collected arrays, each part released once merged, and every table is made once."""
    capture = parts[0].capture
    lookups = _lookups(parts)
    connections = [(row[0], int(lut[row[_CONN_ID]]), *row[2:])
                   for part, lut in zip(parts, lookups) for row in part.connections]
    connections.sort(key=lambda row: row[_CONN_ID])
    problems = [row if row[_PROBLEM_CONN_ID] is None
                else (row[0], _new_id(lut, row[_PROBLEM_CONN_ID]), *row[2:])
                for part, lut in zip(parts, lookups) for row in part.problems]
    problems.sort(key=lambda row: (row[_PROBLEM_FRAME_NO] is not None, row[_PROBLEM_FRAME_NO] or 0))

    # frames: merged in frame_no order; each part's arrays are let go as soon as they are copied
    frame_parts = [part.frames.matrix() for part in parts]
    for matrix, lut in zip(frame_parts, lookups):
        matrix[:, 0] = lut[matrix[:, 0]]
    frame_order = np.argsort(_stack_column(frame_parts, _FRAME_NO_FIELD), kind="stable")
    reasons_by_part = [part.frames.close_reason for part in parts]
    for part in parts:
        part.frames = type(part.frames)()
    frame_columns, frame_rows = _gather(frame_parts, frame_order, FRAME_FIELDS)
    reasons = {int(frame_rows[i][row]): reason for i, part_reasons in enumerate(reasons_by_part)
               for row, reason in part_reasons.items()}
    frames = frames_frame(frame_columns, reasons, capture)
    del frame_columns, frame_order, frame_rows

    # messages: by (conn_id, message_id), previews and kept payloads moved with their rows
    message_parts = [part.messages.matrix() for part in parts]
    for matrix, lut in zip(message_parts, lookups):
        matrix[:, 0] = lut[matrix[:, 0]]
    message_order = np.lexsort((_stack_column(message_parts, _MESSAGE_ID_FIELD),
                                _stack_column(message_parts, 0)))
    previews_by_part = [part.messages.previews() for part in parts]
    payload_by_part = [part.messages.payload for part in parts]
    for part in parts:
        part.messages = type(part.messages)()
    message_columns, message_rows = _gather(message_parts, message_order, MESSAGE_FIELDS)
    previews = pa.concat_arrays(previews_by_part) if len(previews_by_part) > 1 else previews_by_part[0]
    del previews_by_part
    if not _is_identity(message_order):
        previews = previews.take(pa.array(message_order))
    payload = {int(message_rows[i][row]): kept for i, part_payload in enumerate(payload_by_part)
               for row, kept in part_payload.items()}
    messages = messages_frame(message_columns, previews, payload, capture)
    return {
        "frames": frames,
        "messages": messages,
        "connections": make_frame(CONNECTION_COLUMNS, connections),
        "problems": make_frame(PROBLEM_COLUMNS, problems),
    }


def _new_id(lut: np.ndarray, old: int) -> int | None:
    new = int(lut[old])
    return None if new < 0 else new


def _lookups(parts: list[TableRows]) -> list[np.ndarray]:
    """Per part, old conn_id → new one (by first packet, then part, then old id); -1 unknown."""
    starts = sorted((row[_FIRST_PACKET], i, row[_CONN_ID])
                    for i, part in enumerate(parts) for row in part.connections)
    lookups = []
    for part in parts:
        ids = [row[_CONN_ID] for row in part.connections]
        ids += [row[_PROBLEM_CONN_ID] for row in part.problems if row[_PROBLEM_CONN_ID] is not None]
        top = max(ids, default=0)
        for matrix in (part.frames.matrix(), part.messages.matrix()):
            if len(matrix):
                top = max(top, int(matrix[:, 0].max()))
        lookups.append(np.full(top + 1, -1, dtype=np.int64))
    for new_id, (_, i, old) in enumerate(starts, start=1):
        lookups[i][old] = new_id
    return lookups


def _stack_column(matrices: list[np.ndarray], column: int) -> np.ndarray:
    return np.concatenate([m[:, column] for m in matrices])


def _is_identity(order: np.ndarray) -> bool:
    return bool((order == np.arange(len(order))).all())


def _gather(matrices: list[np.ndarray], order: np.ndarray,
            fields: tuple[str, ...]) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The columns of the stacked row matrices in `order`, and where each part's rows went. One
    part already in order comes back as views (no copy); otherwise each column is copied on its
    own, so that the parts and the result are never both held whole in a second layout. The list
    is emptied: the parts are freed when the caller's last reference goes."""
    if len(matrices) == 1 and _is_identity(order):
        from analyzer.tables import matrix_columns
        return matrix_columns(matrices.pop(), fields), [order]
    where = np.empty(len(order), dtype=np.int64)
    where[order] = np.arange(len(order))
    rows, offset = [], 0
    for matrix in matrices:
        rows.append(where[offset:offset + len(matrix)])
        offset += len(matrix)
    columns = {}
    for i, name in enumerate(fields):
        column = np.empty(len(order), dtype=np.int64)
        for matrix, dest in zip(matrices, rows):
            column[dest] = matrix[:, i]
        columns[name] = column
    matrices.clear()
    return columns, rows


def _renumber(parts: list[Tables], first_id: int) -> list[Tables]:
    """Give every part's connections global ids by first packet (in place: the tables are ours)."""
    starts = [(int(fp), i, int(cid)) for i, part in enumerate(parts)
              for fp, cid in zip(part["connections"]["first_packet"], part["connections"]["conn_id"])]
    starts.sort()
    lookups = []
    for part in parts:
        top = max((int(df["conn_id"].max()) for df in part.values()
                   if len(df) and df["conn_id"].notna().any()), default=0)
        lookups.append(np.full(top + 1, -1, dtype=np.int64))
    for new_id, (_, i, old) in enumerate(starts, start=first_id):
        lookups[i][old] = new_id
    for part, lut in zip(parts, lookups):
        for name, df in part.items():
            if not len(df):
                continue
            if name == "problems":          # capture-level problems have no connection
                ids = df["conn_id"]
                known = ids.notna().to_numpy()
                new = np.full(len(df), -1, dtype=np.int64)
                new[known] = lut[ids.to_numpy(dtype=np.int64, na_value=0)[known]]
                df["conn_id"] = pd.arrays.IntegerArray(new, new < 0)
            else:
                df["conn_id"] = lut[df["conn_id"].to_numpy()]
    return parts


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
        next_id = 1
        for part in parts:
            shifted.extend(_renumber([part], next_id))
            next_id += len(part["connections"])
        tables = _merge(shifted)
    for df in tables.values():
        column = df["capture"]
        if isinstance(column.dtype, pd.CategoricalDtype):
            df["capture"] = column.cat.set_categories(names)
        else:
            df["capture"] = pd.Categorical(column.astype("object"), categories=names)
    return tables
