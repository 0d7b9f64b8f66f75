"""Ids made up per connection where another tool's format wants one (Zeek uid, Suricata flow_id)."""

from __future__ import annotations

import hashlib

import pandas as pd


def connection_digests(connections: pd.DataFrame) -> list[bytes]:
    """A SHA-1 per connection row from (capture, conn_id, first_packet): stable across runs and
    processes, and different for two connections that reuse one 4-tuple (which share a
    Community ID)."""
    keys = zip(connections["capture"].astype("object"), connections["conn_id"], connections["first_packet"])
    return [hashlib.sha1(f"{cap}\x00{cid}\x00{first}".encode("utf-8", "surrogatepass")).digest()
            for cap, cid, first in keys]
