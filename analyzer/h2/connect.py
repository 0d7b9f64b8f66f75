"""RFC 8441 extended CONNECT: the header lists of a WebSocket stream's request and answer → the
Handshake the connections row shows (the same fields and checks as an HTTP/1.1 upgrade, with
HTTP/1.1's redaction and negotiation rules imported from handshake.py).

Only the fields a Handshake needs are kept from a header list (values capped at MAX_VALUE
characters); cookie and authorization values never are, only that they were present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from analyzer.events import Handshake
from analyzer.handshake import (
    credentials_present,
    deflate_params,
    negotiation_failures,
    redact_subprotocols,
    redact_target,
)
from analyzer.protocol import ProblemKind

__all__ = ["MAX_VALUE", "handshake_from_h2", "is_websocket_connect", "kept_fields", "status_of"]

#: Longest value kept of one field (HTTP/1.1's handshake parser bounds a line at 8 KiB too).
MAX_VALUE = 8192

#: The fields kept from a request or answer; the sensitive ones only as present ("").
_KEPT = frozenset({":method", ":protocol", ":scheme", ":path", ":authority", ":status", "origin",
                   "user-agent", "server", "sec-websocket-version", "sec-websocket-protocol",
                   "sec-websocket-extensions"})
_SENSITIVE = frozenset({"cookie", "cookie2", "authorization", "proxy-authorization", "set-cookie",
                        "set-cookie2"})

Record = tuple[int, int]                       # record_no, ts_ns


def kept_fields(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """A decoded header list (raw bytes, as hpack gives it with raw=True) → {name: value} of the
    kept fields, repeats joined with ", " (HTTP/2 splits cookies over fields: all are "")."""
    fields: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name in _SENSITIVE:
            fields[name] = ""
        elif name in _KEPT:
            value = raw_value[:MAX_VALUE].decode("latin-1").strip(" \t")
            old = fields.get(name)
            fields[name] = value if old is None else f"{old}, {value}"[:MAX_VALUE]
    return fields


def is_websocket_connect(request: Mapping[str, str]) -> bool:
    """An extended CONNECT (RFC 8441 §4) for the "websocket" protocol."""
    return request.get(":method") == "CONNECT" and request.get(":protocol", "").lower() == "websocket"


def status_of(answer: Mapping[str, str]) -> int | None:
    """The :status of an answer as a number, None when it is not three digits."""
    status = answer.get(":status", "")
    return int(status) if len(status) == 3 and status.isascii() and status.isdigit() else None


def _subprotocols(request: Mapping[str, str], answer: Mapping[str, str]
                  ) -> tuple[tuple[str, ...], str | None]:
    """(offered, chosen) as sent: RFC 6455 §4.1 subprotocols are tokens, so commas separate them."""
    offered = tuple(t for t in (p.strip() for p in request.get("sec-websocket-protocol", "").split(","))
                    if t)
    chosen = answer.get("sec-websocket-protocol", "").strip() or None
    return offered, chosen


def handshake_from_h2(request: Mapping[str, str], answer: Mapping[str, str] | None, *,
                      connect_enabled: bool, request_at: Record, answer_at: Record | None,
                      unanswered_why: str | None = None
                      ) -> tuple[Handshake, list[tuple[ProblemKind, str]]]:
    """The Handshake of one RFC 8441 WebSocket stream and the problems its answer shows.

    Args:
        request: kept_fields of the client's extended CONNECT.
        answer: kept_fields of the server's final answer, or None (no answer seen).
        connect_enabled: the server sent SETTINGS_ENABLE_CONNECT_PROTOCOL=1 (before the answer,
            or before the capture ended when unanswered).
        request_at, answer_at: (record_no, ts_ns) of the packets with the request and the answer.
        unanswered_why: why no answer was seen (the failure reason), when answer is None.
    """
    reasons: list[str] = []
    problems: list[tuple[ProblemKind, str]] = []
    resp = answer if answer is not None else {}
    status = status_of(resp) if answer is not None else None
    upgraded = status is not None and 200 <= status < 300
    if not connect_enabled:
        reason = "server did not enable extended CONNECT (no SETTINGS_ENABLE_CONNECT_PROTOCOL=1)"
        reasons.append(reason)
        problems.append((ProblemKind.H2_CONNECT_NOT_ENABLED, reason))
    missing = [p for p in (":scheme", ":path", ":authority") if p not in request]
    if missing:
        reasons.append(f"extended CONNECT without {', '.join(missing)}")
    if answer is None:
        reasons.append(unanswered_why or "no answer to the extended CONNECT")
    elif not upgraded:
        shown = resp.get(":status", "(none)")[:16]
        reason = f"HTTP/2 :status {shown}"
        reasons.append(reason)
        problems.append((ProblemKind.H2_CONNECT_REFUSED, reason))
    offered, chosen = _subprotocols(request, resp)
    if upgraded:
        more_reasons, more_problems = negotiation_failures(
            offered, chosen, request.get("sec-websocket-extensions"), resp.get("sec-websocket-extensions"))
        reasons += more_reasons
        problems += more_problems
    shown_offered, shown_chosen = redact_subprotocols(offered, chosen)
    extensions = resp.get("sec-websocket-extensions") or None
    handshake = Handshake(
        version=13,
        draft="rfc6455",
        ok=upgraded and not reasons,
        http_status=status,
        accept_valid=None,                     # RFC 8441 §5: no Sec-WebSocket-Key/Accept
        host=request.get(":authority"),
        path=redact_target(request[":path"]) if ":path" in request else None,
        origin=request.get("origin"),
        user_agent=request.get("user-agent"),
        server=resp.get("server"),
        subprotocols_offered=shown_offered,
        subprotocol=shown_chosen,
        extensions_offered=request.get("sec-websocket-extensions") or None,
        extensions=extensions,
        deflate=deflate_params(extensions) if upgraded else None,
        cookies_present=credentials_present(request, resp),
        failure_reason="; ".join(reasons) or None,
        request_record_no=request_at[0],
        request_ts_ns=request_at[1],
        response_record_no=answer_at[0] if answer_at is not None else None,
        response_ts_ns=answer_at[1] if answer_at is not None else None,
        upgraded=upgraded,
    )
    return handshake, problems
