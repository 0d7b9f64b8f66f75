"""HTTP/2 as a stream transform (issue 20, RFC 8441 WebSockets over HTTP/2): the two byte streams
of one HTTP/2 connection (cleartext h2c, or the plaintext of TLS with ALPN h2) in, its WebSocket
streams out.

Modules, one job each: session.py (H2Session: framing, HPACK per direction, the streams' state),
connect.py (the extended CONNECT and its answer → a Handshake), events.py (what comes out).

The names below are loaded from their module on first use: session.py needs `hpack` and
`hyperframe`, which a capture without HTTP/2 never has to pay for (issue 21).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzer.lazy import lazy_names

if TYPE_CHECKING:
    from analyzer.h2.connect import handshake_from_h2
    from analyzer.h2.events import H2Data, H2Out, H2Problem, H2StreamEnd, H2WebSocket
    from analyzer.h2.session import PREFACE, H2Session, error_name, looks_like_h2

__all__ = ["PREFACE", "H2Data", "H2Out", "H2Problem", "H2Session", "H2StreamEnd", "H2WebSocket",
           "error_name", "handshake_from_h2", "looks_like_h2"]

#: where each name lives
_HOME = {"handshake_from_h2": "connect", "H2Data": "events", "H2Out": "events", "H2Problem": "events",
         "H2StreamEnd": "events", "H2WebSocket": "events", "PREFACE": "session", "H2Session": "session",
         "error_name": "session", "looks_like_h2": "session"}

__getattr__ = lazy_names(__name__, _HOME)
