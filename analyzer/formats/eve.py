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
`payload_base64` (per-frame payloads are not kept).
"""

from __future__ import annotations

import base64
import json
from typing import IO, TYPE_CHECKING

import numpy as np
import pandas as pd

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


def _json_strings(values: pd.Series) -> pd.Series:
    """Each non-null value as a JSON string literal (with the quotes); null stays null."""
    out = pd.Series(pd.NA, index=values.index, dtype="object")
    present = values.notna()
    if present.any():
        out[present] = values[present].astype(str).map(lambda v: json.dumps(v, ensure_ascii=False))
    return out


def _payload_lookup(messages: pd.DataFrame) -> pd.Series | None:
    """Kept message payloads (base64) by (conn_id, last_frame_no); None when none were kept."""
    kept = messages[messages["payload"].notna()]
    if kept.empty:
        return None
    b64 = kept["payload"].map(lambda p: base64.b64encode(bytes(p)).decode("ascii"))
    key = pd.MultiIndex.from_arrays([kept["conn_id"], kept["last_frame_no"]])
    lookup = pd.Series(b64.to_numpy(), index=key)
    return lookup[~lookup.index.duplicated()]


def _payloads(lookup: pd.Series | None, frames: pd.DataFrame) -> pd.Series:
    """Base64 of the message each frame completes (null elsewhere or when payloads were not kept)."""
    if lookup is None:
        return pd.Series(pd.NA, index=frames.index, dtype="object")
    where = pd.MultiIndex.from_arrays([frames["conn_id"], frames["frame_no"]])
    found = lookup.reindex(where)
    return pd.Series(found.to_numpy(), index=frames.index, dtype="object").where(
        frames["message_id"].notna().to_numpy())


def _lines(f: pd.DataFrame, conns: pd.DataFrame, flow_ids: pd.Series,
           payloads: pd.Series | None) -> pd.Series:
    """The EVE lines of one chunk of frames, built column-wise."""
    by_id = conns.set_index("conn_id")
    client = by_id["client"].reindex(f["conn_id"]).to_numpy(dtype=object)
    cport = by_id["client_port"].reindex(f["conn_id"]).to_numpy()
    server = by_id["server"].reindex(f["conn_id"]).to_numpy(dtype=object)
    sport = by_id["server_port"].reindex(f["conn_id"]).to_numpy()
    # per connection, then spread over the frames (JSON-encoding per frame is the slow part)
    cid_json = _json_strings(by_id["community_id"].astype("object"))
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
    line = line + _optional(',"community_id":', cid)
    capture = f["capture"]
    if isinstance(capture.dtype, pd.CategoricalDtype):
        files = _json_strings(pd.Series(capture.cat.categories.astype("object")))
        capture_json = pd.Series(files.to_numpy(dtype=object)[capture.cat.codes.to_numpy()], index=f.index)
    else:
        capture_json = _json_strings(capture.astype("object"))
    line = line + ',"pcap_filename":' + capture_json
    ws = ('{"fin":' + f["fin"].map(flags) + ',"opcode":"' + names + '"'
          + ',"payload_len":' + f["payload_len"].astype(str)
          + ',"masked":' + f["masked"].map(flags) + ',"rsv1":' + f["rsv1"].map(flags)
          + ',"compressed":' + f["compressed"].map(flags))
    codes = f["close_code"]
    ws = ws + _optional(',"close_code":', codes.astype("string").astype("object").where(codes.notna()))
    ws = ws + _optional(',"close_reason":', _json_strings(f["close_reason"]))
    ws = ws + _optional(',"payload_base64":"', _payloads(payloads, f), '"')
    return line + ',"websocket":' + ws + "}}\n"


def _optional(prefix: str, values: pd.Series, suffix: str = "") -> pd.Series:
    """prefix + value + suffix where the value is present, "" where it is null (whatever the
    column's dtype, also when no row of the chunk has a value)."""
    out = pd.Series("", index=values.index, dtype="object")
    present = values.notna().to_numpy()
    if present.any():
        out[present] = prefix + values[present].astype(str) + suffix
    return out


def write_eve(a: Analysis, fh: IO[str]) -> int:
    """One EVE line per frame to `fh`, in frame order; returns the number of lines."""
    f = a.frames
    conns = a.connections
    flow_ids = _flow_ids(conns)
    payloads = _payload_lookup(a.messages)
    for start in range(0, len(f), CHUNK_ROWS):
        fh.write(json_safe("".join(_lines(f.iloc[start:start + CHUNK_ROWS], conns, flow_ids, payloads))))
    return len(f)


__all__ = ["OPCODES", "write_eve"]
