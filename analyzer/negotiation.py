"""RFC 6455 §4.1's subprotocol and extension checks on an answered WebSocket opening handshake,
the same for HTTP/1.1 (handshake.py) and HTTP/2 extended CONNECT (h2/connect.py): each failure is
a reason the client would _Fail the WebSocket Connection_ and a problem row."""

from __future__ import annotations

from analyzer.handshake import parse_extensions, redact_subprotocols
from analyzer.protocol import ProblemKind

__all__ = ["negotiation_failures"]


def negotiation_failures(offered: tuple[str, ...], chosen: str | None, extensions_offered: str | None,
                         extensions: str | None) -> tuple[list[str], list[tuple[ProblemKind, str]]]:
    """(reasons, problems) for a chosen subprotocol that was not offered, none chosen although some
    were offered, and an accepted extension that was not offered. Subprotocols as sent (they are
    redacted here, in the details)."""
    reasons: list[str] = []
    problems: list[tuple[ProblemKind, str]] = []
    if chosen is not None and chosen not in offered:
        shown, shown_chosen = redact_subprotocols(offered, chosen)
        problems.append((ProblemKind.SUBPROTOCOL_NOT_OFFERED,
                         f"expected one of {list(shown)}, found={shown_chosen}"))
        reasons.append(f"subprotocol {shown_chosen!r} was not offered")
    elif chosen is None and offered:
        shown, _ = redact_subprotocols(offered, chosen)
        problems.append((ProblemKind.SUBPROTOCOL_NOT_SELECTED,
                         f"expected one of {list(shown)}, found=(none)"))
        reasons.append("no subprotocol selected although the client offered some "
                       "(a browser would fail the connection)")
    offered_ext = {name for name, _ in parse_extensions(extensions_offered)}
    for name, _ in parse_extensions(extensions):
        if name not in offered_ext:
            problems.append((ProblemKind.EXTENSION_NOT_OFFERED,
                             f"expected one of {sorted(offered_ext)}, found={name}"))
            reasons.append(f"extension {name!r} was not offered")
    return reasons, problems
