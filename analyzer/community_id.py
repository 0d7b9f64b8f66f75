"""Community ID v1 of TCP connections: the flow hash Zeek, Suricata, Arkime and Zui share.

The hash is computed by the `communityid` package (the reference implementation of the
published spec, corelight/community-id-spec): SHA-1 over the seed, the ordered addresses,
the protocol and the ordered ports, base64, prefixed "1:". The same value comes out whichever
side is given as the source. Connections are few, so this runs once per connection row when
the connections table is made, never per packet.
"""

from __future__ import annotations

from collections.abc import Iterable

import communityid

_PROTO_TCP = communityid.PROTO_TCP


def community_id(src: str, src_port: int, dst: str, dst_port: int, seed: int = 0) -> str | None:
    """The Community ID v1 string of one TCP flow, or None when an address or port is unusable."""
    ids = community_ids([src], [src_port], [dst], [dst_port], seed=seed)
    return ids[0]


def community_ids(src: Iterable[object], src_port: Iterable[object], dst: Iterable[object],
                  dst_port: Iterable[object], seed: int = 0) -> list[str | None]:
    """Community ID v1 strings of TCP flows given as four columns (addresses as text).

    A row whose address is missing or not an IP address, or whose port is missing or out of
    range, gets None (a hash of garbage would join unrelated flows).
    """
    cid = communityid.CommunityID(seed=seed)
    out: list[str | None] = []
    for s, sp, d, dp in zip(src, src_port, dst, dst_port):
        try:
            tpl = communityid.FlowTuple(_PROTO_TCP, str(s), str(d), int(sp), int(dp))  # type: ignore[call-overload]
        except (communityid.Error, TypeError, ValueError):
            out.append(None)
            continue
        value = cid.calc(tpl)
        out.append(value if value else None)
    return out


__all__ = ["community_id", "community_ids"]
