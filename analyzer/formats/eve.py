"""Suricata EVE JSON lines for WebSocket frames, from the frames table (one event per frame).

Each line is an EVE event as Suricata 7/8's websocket logger writes it:

    {"timestamp": "2026-11-26T13:25:27.121632+0000", "flow_id": 1234…, "pcap_cnt": 8,
     "event_type": "websocket", "src_ip": …, "src_port": …, "dest_ip": …, "dest_port": …,
     "proto": "TCP", "app_proto": "websocket", "community_id": "1:…", "pcap_filename": …,
     "websocket": {"fin": true, "opcode": "text", "payload_len": 5, "masked": true, …}}

src/dest follow the frame (client → server for a client's frame). `flow_id` is an integer made up
per connection (51 bits of a hash of capture, conn_id and first packet: stable, unlike
Suricata's). `opcode` uses Suricata's names (continuation, text, binary, close, ping, pong,
unknown-N). Suricata's `mask` is the 32-bit masking key, which our tables do not keep, so it is
left out; `masked`, `payload_len` (on the wire), `rsv1`, `compressed`, `close_code` and
`close_reason` are ours. With payloads kept (analyze(payloads=True), `export --payloads`), the
frame that completes a data message carries the whole message, after decompression, as
`payload_base64` (per-frame payloads are not kept). The same frame carries, when the message held
application messages (app_messages), `app`: a list of {protocol, type, channel, correlation_id,
role, status}, null fields left out, and for a response paired in exchanges its `latency_ms`
(analyzer.formats.app). "The frame that completes a message" is the message's last frame, even
when one packet (one `pcap_cnt`) completes two messages.
"""

from __future__ import annotations

import base64
from typing import IO, TYPE_CHECKING

import numpy as np
import pandas as pd

from analyzer.formats.app import app_json, json_strings, optional
from analyzer.formats.ids import connection_digests
from analyzer.stats import json_safe

if TYPE_CHECKING:
    from analyzer.api import Analysis

#: Suricata's opcode names (rust/src/websocket/parser.rs, WebSocketOpcode); others "unknown-N"
OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}

CHUNK_ROWS = 50_000


def _flow_ids(connections: pd.DataFrame) -> pd.Series:
    ids = [int.from_bytes(d[:8], "big") & ((1 << 51) - 1) for d in connection_digests(connections)]
    return pd.Series(ids, index=connections["conn_id"].to_numpy(), dtype="int64")


def _by_message(rows: pd.DataFrame, values: np.ndarray) -> pd.Series:
    """`values` (one per messages row of `rows`) keyed by (conn_id, message_id)."""
    lookup = pd.Series(values, index=pd.MultiIndex.from_arrays([rows["conn_id"], rows["message_id"]]))
    return lookup[~lookup.index.duplicated()]


def _payload_lookup(messages: pd.DataFrame) -> pd.Series | None:
    """Kept message payloads (base64) by (conn_id, message_id); None when none were kept."""
    kept = messages[messages["payload"].notna()]
    if kept.empty:
        return None
    b64 = kept["payload"].map(lambda p: base64.b64encode(bytes(p)).decode("ascii"))
    return _by_message(kept, b64.to_numpy())


def _completing(frames: pd.DataFrame) -> np.ndarray:
    """Whether each frame completes its data message: the message's last frame. (Keyed by the
    message, not by the packet: one packet can complete two messages.)"""
    has_message = frames["message_id"].notna().to_numpy()
    last = ~frames.duplicated(["conn_id", "message_id"], keep="last").to_numpy()
    return np.asarray(has_message & last, dtype=bool)


def _on_completing_frame(lookup: pd.Series | None, frames: pd.DataFrame, completing: np.ndarray) -> pd.Series:
    """The looked-up value of the message each frame completes (null on other frames and
    without a lookup)."""
    out = pd.Series(pd.NA, index=frames.index, dtype="object")
    if lookup is None or not completing.any():
        return out
    done = frames[completing]
    where = pd.MultiIndex.from_arrays([done["conn_id"], done["message_id"].astype("int64")])
    out[completing] = lookup.reindex(where).to_numpy()
    return out


def _lines(f: pd.DataFrame, conns: pd.DataFrame, flow_ids: pd.Series,
           payloads: pd.Series | None, apps: pd.Series | None, completing: np.ndarray) -> pd.Series:
    """The EVE lines of one chunk of frames, built column-wise."""
    by_id = conns.set_index("conn_id")
    client = by_id["client"].reindex(f["conn_id"]).to_numpy(dtype=object)
    cport = by_id["client_port"].reindex(f["conn_id"]).to_numpy()
    server = by_id["server"].reindex(f["conn_id"]).to_numpy(dtype=object)
    sport = by_id["server_port"].reindex(f["conn_id"]).to_numpy()
    # per connection, then spread over the frames (JSON-encoding per frame is the slow part)
    cid_json = json_strings(by_id["community_id"].astype("object"))
    cid = pd.Series(cid_json.reindex(f["conn_id"]).to_numpy(dtype=object), index=f.index)
    is_client = (f["sender"].astype("object") == "client").to_numpy()
    src = pd.Series(np.where(is_client, client, server), index=f.index).astype(str)
    dst = pd.Series(np.where(is_client, server, client), index=f.index).astype(str)
    src_port = pd.Series(np.where(is_client, cport, sport), index=f.index).astype(str)
    dst_port = pd.Series(np.where(is_client, sport, cport), index=f.index).astype(str)
    stamps = np.datetime_as_string(f["ts"].to_numpy(dtype="datetime64[us]"), unit="us")
    opcode = f["opcode"].astype("int64")
    names = opcode.map(OPCODES).fillna("unknown-" + opcode.astype(str))
    flags = {True: "true", False: "false"}
    line = ('{"timestamp":"' + pd.Series(stamps, index=f.index) + '+0000"'
            + ',"flow_id":' + flow_ids.reindex(f["conn_id"]).astype(str).to_numpy()
            + ',"pcap_cnt":' + f["frame_no"].astype(str)
            + ',"event_type":"websocket","src_ip":"' + src + '","src_port":' + src_port
            + ',"dest_ip":"' + dst + '","dest_port":' + dst_port
            + ',"proto":"TCP","app_proto":"websocket"')
    line = line + optional(',"community_id":', cid)
    capture = f["capture"]
    if isinstance(capture.dtype, pd.CategoricalDtype):
        files = json_strings(pd.Series(capture.cat.categories.astype("object")))
        capture_json = pd.Series(files.to_numpy(dtype=object)[capture.cat.codes.to_numpy()], index=f.index)
    else:
        capture_json = json_strings(capture.astype("object"))
    line = line + ',"pcap_filename":' + capture_json
    ws = ('{"fin":' + f["fin"].map(flags) + ',"opcode":"' + names + '"'
          + ',"payload_len":' + f["payload_len"].astype(str)
          + ',"masked":' + f["masked"].map(flags) + ',"rsv1":' + f["rsv1"].map(flags)
          + ',"compressed":' + f["compressed"].map(flags))
    codes = f["close_code"]
    ws = ws + optional(',"close_code":', codes.astype("string").astype("object").where(codes.notna()))
    ws = ws + optional(',"close_reason":', json_strings(f["close_reason"]))
    ws = ws + optional(',"payload_base64":"', _on_completing_frame(payloads, f, completing), '"')
    if apps is not None:
        ws = ws + optional(',"app":', _on_completing_frame(apps, f, completing))
    return line + ',"websocket":' + ws + "}}\n"


def write_eve(a: Analysis, fh: IO[str]) -> int:
    """One EVE line per frame to `fh`, in frame order; returns the number of lines."""
    f = a.frames
    conns = a.connections
    flow_ids = _flow_ids(conns)
    payloads = _payload_lookup(a.messages)
    apps = app_json(a)
    completing = _completing(f)
    for start in range(0, len(f), CHUNK_ROWS):
        end = start + CHUNK_ROWS
        lines = _lines(f.iloc[start:end], conns, flow_ids, payloads, apps, completing[start:end])
        fh.write(json_safe("".join(lines)))
    return len(f)


__all__ = ["OPCODES", "write_eve"]
