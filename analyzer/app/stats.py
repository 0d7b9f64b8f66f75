"""Statistics of the application protocols: latency per (protocol, method), top channels by count
and bytes, error and unanswered rates, the slowest and the unanswered exchanges.

Each function takes an Analysis and returns a DataFrame (empty, with its columns, when the
analysis has no application messages). All of it is grouped pandas over whole columns.

Words used below:
  * method: `exchanges.method` (the request's channel: method, topic, destination, event or
    operation). A request without a channel (an MQTT CONNECT or PINGREQ, a Socket.IO CONNECT) is
    labelled by its packet type in parentheses, "(CONNECT)", taken from its app_messages row.
  * error: an answered exchange whose status is not "ok" (a JSON-RPC error object, a STOMP ERROR,
    an MQTT reason code of 0x80 or more, a Jupyter reply with status error…, as the decoder says).
  * bytes of an application message: the size (after decompression) of the WebSocket message that
    carried it, shared equally among the application messages that message carried (a JSON-RPC
    batch, several MQTT packets in one message).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from analyzer.api import Analysis

#: latency() quantiles, with their column names
QUANTILES = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"))

LATENCY_COLUMNS = ["protocol", "method", "count", "answered", "p50", "p90", "p99", "max"]
TOP_COLUMNS = ["protocol", "channel", "messages", "bytes"]
RATE_COLUMNS = ["exchanges", "answered", "unanswered", "errors", "unanswered_rate", "error_rate"]
EXCHANGE_VIEW = ["conn_id", "exchange_id", "protocol", "method", "correlation_id", "ts_request",
                 "latency", "status", "request_message_id", "response_message_id"]


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="object") for c in columns})


def _request_types(a: Analysis, rows: np.ndarray) -> pd.Series:
    """The packet type of the request (app_messages.type) of the exchanges rows selected by `rows`,
    or null. Only requests without a channel are looked at (an exchange's method is its request's
    channel), so the join is as small as the unnamed requests."""
    e, am = a.exchanges[rows], a.app_messages
    keys = ["capture", "conn_id", "message_id", "correlation_id"]
    sel = (am["role"] == "request").to_numpy(dtype=bool) & am["channel"].isna().to_numpy()
    req = am.loc[sel, [*keys, "type"]].astype({"capture": "object", "correlation_id": "object",
                                                "type": "object"}).drop_duplicates(keys)
    left = pd.DataFrame({"capture": e["capture"].astype("object").to_numpy(),
                         "conn_id": e["conn_id"].to_numpy(), "message_id": e["request_message_id"].to_numpy(),
                         "correlation_id": e["correlation_id"].astype("object").to_numpy()})
    joined = left.merge(req, how="left", on=keys)
    return pd.Series(joined["type"].to_numpy(), index=e.index, dtype="object")


def exchanges(a: Analysis) -> pd.DataFrame:
    """`a.exchanges` with `method` filled for requests without a channel ("(CONNECT)") and an `error`
    column (answered with a status other than "ok")."""
    e = a.exchanges
    method = e["method"].astype("object")
    missing = method.isna().to_numpy()
    if missing.any():
        types = _request_types(a, missing).fillna("?").astype(str)
        method = method.copy()
        method[missing] = "(" + types + ")"
    status = e["status"]
    error = e["answered"].to_numpy(dtype=bool) & status.ne("ok").fillna(False).to_numpy(dtype=bool)
    return e.assign(protocol=e["protocol"].astype("object").astype("string"),
                    method=method.astype("string"), error=error)


def latency(a: Analysis) -> pd.DataFrame:
    """Latency distribution per (protocol, method): count (exchanges), answered, p50, p90, p99 and max
    (seconds, over the answered ones; NaN when none was answered). Slowest p90 first."""
    e = exchanges(a)
    if e.empty:
        return _empty(LATENCY_COLUMNS)
    g = e.groupby(["protocol", "method"], observed=True, sort=True)
    out = g.agg(count=("exchange_id", "size"), answered=("answered", "sum"), max=("latency", "max"))
    q = g["latency"].quantile(np.array([p for p, _ in QUANTILES])).unstack()
    for p, name in QUANTILES:
        out[name] = q[p] if p in q.columns else np.nan
    out = out.reset_index()[LATENCY_COLUMNS]
    out = out.astype({"count": "int64", "answered": "int64"})
    return out.sort_values(["p90", "count"], ascending=[False, False], na_position="last",
                           kind="stable").reset_index(drop=True)


def _message_bytes(a: Analysis) -> np.ndarray:
    """Bytes of each app_messages row: its WebSocket message's size shared among the app messages
    that message carried (see the module docstring)."""
    am, m = a.app_messages, a.messages
    keys = ["capture", "conn_id", "message_id"]
    left = pd.DataFrame({"capture": am["capture"].astype("object").to_numpy(),
                         "conn_id": am["conn_id"].to_numpy(), "message_id": am["message_id"].to_numpy()})
    sizes = pd.DataFrame({"capture": m["capture"].astype("object").to_numpy(),
                          "conn_id": m["conn_id"].to_numpy(), "message_id": m["message_id"].to_numpy(),
                          "size": m["size"].to_numpy(dtype="float64")}).drop_duplicates(keys)
    joined = left.merge(sizes, how="left", on=keys)
    share = left.groupby(keys, sort=False)["message_id"].transform("size").to_numpy(dtype="float64")
    return np.asarray(joined["size"].fillna(0.0).to_numpy(dtype="float64") / share)


def channels(a: Analysis) -> pd.Series:
    """app_messages.channel, with "(TYPE)" for the messages without one (a PINGREQ, an Engine.IO open)."""
    am = a.app_messages
    ch = am["channel"].astype("object")
    missing = ch.isna().to_numpy()
    if missing.any():
        ch = ch.copy()
        ch[missing] = "(" + am["type"].astype("object")[missing].fillna("?").astype(str) + ")"
    return ch.astype("string")


def top_channels(a: Analysis, by: Literal["messages", "bytes"] = "messages",
                 n: int | None = 20) -> pd.DataFrame:
    """The methods, topics, destinations and events by number of application messages or by bytes:
    protocol, channel, messages, bytes (shared as the module docstring says). Most first; the
    first `n` (all with None).

    Raises:
        ValueError: `by` is neither "messages" nor "bytes".
    """
    if by not in ("messages", "bytes"):
        raise ValueError(f"by must be 'messages' or 'bytes', not {by!r}")
    am = a.app_messages
    if am.empty:
        return _empty(TOP_COLUMNS)
    df = pd.DataFrame({"protocol": am["protocol"].astype("object").to_numpy(),
                       "channel": channels(a).to_numpy(), "bytes": _message_bytes(a)})
    out = df.groupby(["protocol", "channel"], sort=True).agg(messages=("bytes", "size"),
                                                              bytes=("bytes", "sum")).reset_index()
    out["bytes"] = out["bytes"].round().astype("int64")
    other = "bytes" if by == "messages" else "messages"
    out = out.sort_values([by, other], ascending=False, kind="stable").reset_index(drop=True)
    out = out.astype({"protocol": "string", "channel": "string", "messages": "int64"})[TOP_COLUMNS]
    return out if n is None else out.head(n)


def rates(a: Analysis, by: Literal["protocol", "method"] = "protocol") -> pd.DataFrame:
    """Exchanges, answered, unanswered, errors and the unanswered and error rates (of all exchanges)
    per protocol, or per (protocol, method) with by="method". Most exchanges first.

    Raises:
        ValueError: `by` is neither "protocol" nor "method".
    """
    if by not in ("protocol", "method"):
        raise ValueError(f"by must be 'protocol' or 'method', not {by!r}")
    keys = ["protocol"] if by == "protocol" else ["protocol", "method"]
    e = exchanges(a)
    if e.empty:
        return _empty(keys + RATE_COLUMNS)
    e = e.assign(unanswered=~e["answered"].to_numpy(dtype=bool))
    out = e.groupby(keys, observed=True, sort=True).agg(
        exchanges=("exchange_id", "size"), answered=("answered", "sum"),
        unanswered=("unanswered", "sum"), errors=("error", "sum")).reset_index()
    out = out.astype({c: "int64" for c in ("exchanges", "answered", "unanswered", "errors")})
    out["unanswered_rate"] = out["unanswered"] / out["exchanges"]
    out["error_rate"] = out["errors"] / out["exchanges"]
    return out.sort_values("exchanges", ascending=False, kind="stable").reset_index(drop=True)


def slowest(a: Analysis, n: int = 20) -> pd.DataFrame:
    """The `n` answered exchanges with the longest latency, slowest first (EXCHANGE_VIEW columns)."""
    e = exchanges(a)
    if e.empty:
        return _empty(EXCHANGE_VIEW)
    e = e[e["answered"].to_numpy(dtype=bool)]
    top = e.sort_values("latency", ascending=False, kind="stable").head(n)
    return top[EXCHANGE_VIEW].reset_index(drop=True)


def unanswered(a: Analysis) -> pd.DataFrame:
    """The requests that got no response before their connection (or the capture) ended, in time
    order (EXCHANGE_VIEW columns)."""
    e = exchanges(a)
    if e.empty:
        return _empty(EXCHANGE_VIEW)
    e = e[~e["answered"].to_numpy(dtype=bool)]
    return e.sort_values("ts_request", kind="stable")[EXCHANGE_VIEW].reset_index(drop=True)


def summary_data(a: Analysis) -> dict[str, Any]:
    """The summary's application-protocol keys: app_messages, app_messages_by_protocol, exchanges,
    exchanges_answered, exchanges_unanswered, exchanges_errors, exchange_latency_ms
    (n/p50/p90/p99/max over the answered exchanges)."""
    from analyzer.stats import percentiles

    am = a.app_messages
    counts = am["protocol"].astype("object").value_counts()
    e = exchanges(a)
    answered = int(e["answered"].sum()) if len(e) else 0
    return {
        "app_messages": len(am),
        "app_messages_by_protocol": {str(k): int(v) for k, v in counts.items()},
        "exchanges": len(e),
        "exchanges_answered": answered,
        "exchanges_unanswered": len(e) - answered,
        "exchanges_errors": int(e["error"].sum()) if len(e) else 0,
        "exchange_latency_ms": percentiles(e["latency"], 1000.0),
    }


__all__ = ["EXCHANGE_VIEW", "LATENCY_COLUMNS", "QUANTILES", "RATE_COLUMNS", "TOP_COLUMNS", "channels",
           "exchanges", "latency", "rates", "slowest", "summary_data", "top_channels", "unanswered"]
