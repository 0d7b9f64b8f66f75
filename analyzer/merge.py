"""Putting tables together: the shards of one capture, then several captures, into one set.

conn_id is renumbered here so that it never depends on how the work was split: within a capture,
WebSocket connections are numbered 1, 2, 3… in the order of their first packet, and the
captures follow one another in the order they were given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyzer.tables import SCHEMAS, empty_tables

Tables = dict[str, pd.DataFrame]


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


def _ordered(tables: Tables) -> Tables:
    frames = tables["frames"]
    if len(frames) > 1 and not frames["frame_no"].is_monotonic_increasing:
        frames = frames.sort_values("frame_no", kind="stable").reset_index(drop=True)
    messages = tables["messages"]
    if len(messages) > 1:
        order = np.lexsort((messages["message_id"].to_numpy(), messages["conn_id"].to_numpy()))
        if not (order == np.arange(len(order))).all():
            messages = messages.iloc[order].reset_index(drop=True)
    connections = tables["connections"].sort_values("conn_id", kind="stable").reset_index(drop=True)
    problems = tables["problems"]
    if len(problems) > 1:
        problems = problems.sort_values(["frame_no"], kind="stable", na_position="first")
        problems = problems.reset_index(drop=True)
    return {"frames": frames, "messages": messages, "connections": connections, "problems": problems}


def _concat(parts: list[Tables]) -> Tables:
    """Concatenate tables; categoricals whose parts had different categories (pandas then falls
    back to object) become categoricals again, with sorted categories as make_frame gives."""
    if len(parts) == 1:
        return parts[0]
    tables = {}
    for name, schema in SCHEMAS.items():
        df = pd.concat([p[name] for p in parts], ignore_index=True)
        for column, dtype, _ in schema:
            if dtype.startswith("cat") and not isinstance(df[column].dtype, pd.CategoricalDtype):
                df[column] = pd.Categorical(df[column].astype("str"))
        tables[name] = df
    return tables


def merge_shards(parts: list[Tables]) -> Tables:
    """One capture's tables from the tables of its shards (each shard saw different connections)."""
    if not parts:
        return empty_tables()
    return _ordered(_concat(_renumber(parts, 1)))


def merge_captures(parts: list[Tables], names: list[str]) -> Tables:
    """Several captures' tables, one after the other, with conn_id unique across them."""
    if not parts:
        tables = empty_tables()
    else:
        shifted = []
        next_id = 1
        for part in parts:
            shifted.extend(_renumber([part], next_id))
            next_id += len(part["connections"])
        tables = _ordered(_concat(shifted))
    for df in tables.values():
        df["capture"] = pd.Categorical(df["capture"].astype("object"), categories=names)
    return tables
