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


def merge_shards(parts: list[Tables]) -> Tables:
    """One capture's tables from the tables of its shards (each shard saw different connections)."""
    if not parts:
        return empty_tables()
    return _merge(_renumber(parts, 1))


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
        tables = _merge(shifted)
    for df in tables.values():
        df["capture"] = pd.Categorical(df["capture"].astype("object"), categories=names)
    return tables
