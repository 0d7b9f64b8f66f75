"""Finding the decoder for a connection: by the negotiated subprotocol, else by the content of
its first data message with the decoder's stated confidence."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from analyzer.app import protocols
from analyzer.app.base import AppDecoder, WsMessage, registered

__all__ = ["MIN_CONFIDENCE", "by_content", "by_subprotocol", "decoders"]

#: below this, content sniffing chooses no decoder
MIN_CONFIDENCE = 0.5


@cache
def decoders() -> dict[str, type[AppDecoder]]:
    """Every decoder of analyzer/app/protocols/, by name (each module imported once)."""
    for module in pkgutil.iter_modules(protocols.__path__):
        importlib.import_module(f"{protocols.__name__}.{module.name}")
    return registered()


def by_subprotocol(subprotocol: str | None) -> type[AppDecoder] | None:
    """The decoder claiming the negotiated Sec-WebSocket-Protocol value, if any."""
    if not subprotocol:
        return None
    wanted = subprotocol.strip().lower()
    for decoder in decoders().values():
        if wanted in decoder.subprotocols:
            return decoder
    return None


def by_content(msg: WsMessage) -> tuple[type[AppDecoder], float] | None:
    """The decoder most confident that `msg` (a connection's first data message) is its protocol,
    with that confidence; None below MIN_CONFIDENCE. Ties go to the name first in order."""
    best: tuple[type[AppDecoder], float] | None = None
    for name in sorted(decoders()):
        decoder = decoders()[name]
        try:
            confidence = float(decoder.sniff(msg))
        except Exception:       # a sniffer's bug must not stop the analysis
            continue
        if confidence >= MIN_CONFIDENCE and (best is None or confidence > best[1]):
            best = (decoder, confidence)
    return best
