"""The WebSocket opening handshake: reassembled stream bytes in, HandshakeDone / NotWebSocket /
Problem events out.

This module owns the incremental HTTP/1.x parser for both directions of one TCP connection, the
detection of WebSocket upgrades by content (any port), the version/draft classification (hixie-75,
hixie-76/hybi-00, hybi-01..03, hybi-04..08, RFC 6455), the accept-key and hixie-76 challenge checks,
the subprotocol/extension negotiation fields, and the hand-off of the bytes that follow the
handshake (`HandshakeDone.trailing`) to the frame decoders.

State machine rules (one parser per TCP connection):

Rule 1: roles come from content. The direction whose first bytes are a method (a token that starts
        with a letter) and SP is the client;
        a direction starting ``HTTP/`` is the server. Direction 0 that starts with anything else
        (and no request seen on direction 1) means NotWebSocket at once; direction 1 that starts
        with non-HTTP waits for direction 0 (a server may speak first).
Rule 2: the client side is parsed request by request (bodies skipped by Content-Length or
        chunked coding). After an upgrade request (``Upgrade: websocket``) and its hixie-76 key3,
        the client side holds its bytes until the response arrives.
Rule 3: the server side parses one response per outstanding request (1xx other than 101 do not
        consume a request; HEAD/204/304 have no body). A response framed "until close" means no
        further request can follow: NotWebSocket.
Rule 4: the response to the upgrade request ends the handshake: HandshakeDone. A 101 with its
        upgrade headers is ``upgraded`` and the parser stops (the caller hands later bytes to the
        frame decoder); ``ok`` is the RFC 6455 §4.1 verdict on top (accept key or hixie-76 answer,
        subprotocol and extensions as offered), so an upgraded handshake may still have failed.
        Any other answer is a failed handshake; parsing then goes on with the held client bytes,
        as another request may follow on the same keep-alive connection.
Rule 5: nothing is buffered without a bound (max_header_bytes for a header block, MAX_LINE for a
        start line, MAX_PENDING parsed requests waiting for responses, max_hold for client bytes
        waiting for a response, and budget.SHARED_HANDSHAKE_BUDGET for what all parsers hold together: their
        raw bytes and their parsed, unanswered requests and responses). Over a bound, or on any
        malformed input: Problem(HTTP_MALFORMED) (or HANDSHAKE_FAILED for a budget,
        HTTP_PIPELINE_LIMIT for pipelining) and NotWebSocket. No input raises: only the
        exceptions bad input causes are caught (_Malformed, ValueError of a hixie-76 key), each
        where it arises; any other exception is a bug of ours and propagates out of
        feed/gap/finish, leaving the parser finished with its budget share given back.
Rule 6: after NotWebSocket, or after a successful HandshakeDone, the parser is finished: every
        later call returns [].

Searches remember where they stopped (h11's ReceiveBuffer), so feeding one byte at a time stays
linear; body bytes are skipped by counting, never buffered.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from analyzer.budget import SHARED_HANDSHAKE_BUDGET, PayloadBudget
from analyzer.events import (
    DeflateParams,
    H2cUpgrade,
    Handshake,
    HandshakeDone,
    HandshakeEvent,
    NotWebSocket,
    Problem,
)
from analyzer.protocol import DRAFT_OF_VERSION, WEBSOCKET_GUID, ProblemKind

__all__ = [
    "REDACTED",
    "HandshakeParser",
    "accept_key",
    "classify",
    "deflate_params",
    "hixie76_answer",
    "negotiation_failures",
    "parse_extensions",
    "redact_subprotocols",
    "redact_target",
]

# --- limits (websockets http11.py style: named constants) -------------------------------------

#: Longest request/status line before the parser gives up (websockets MAX_LINE_LENGTH is 8 KiB).
MAX_LINE = 8192
#: Most header fields in one header block (websockets MAX_NUM_HEADERS is 128).
MAX_HEADERS = 256
#: Longest chunk-size line (with extensions) and the most trailer bytes of a chunked body.
MAX_CHUNK_LINE = 1024
MAX_TRAILER_BYTES = 16384
#: Most requests (pipelined) parsed and waiting for their responses; the client's later bytes
#: wait unparsed (and counted) until a response frees a place, up to max_hold of them.
MAX_PENDING = 16
#: What a parsed plain request waiting for its response is charged against the budget: its
#: headers are not kept (only an upgrade request keeps them), this is the object's size.
_PLAIN_REQUEST_COST = 256
#: Most plain (non-upgrade) HTTP exchanges followed before giving up on a connection.
MAX_EXCHANGES = 1000
#: A method token longer than this is not taken for an HTTP request.
MAX_METHOD = 24

# --- grammar (RFC 7230 §3.1, §3.2) ------------------------------------------------------------

_TCHARS = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
# A method is a token; real ones start with a letter (GET, M-SEARCH), which keeps "220 " (SMTP) out.
_METHOD_SP = re.compile(rb"[A-Za-z][" + _TCHARS + rb"]{0,%d} " % (MAX_METHOD - 1))
_TOKEN_PREFIX = re.compile(rb"(?:[A-Za-z][" + _TCHARS + rb"]{0,%d})?" % (MAX_METHOD - 1))
_REQUEST_LINE = re.compile(rb"([" + _TCHARS + rb"]+) +([^ \t\r\n]+) +HTTP/(\d)\.(\d)[ \t]*\r?")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) +(\d{3})(?:[ \t]([^\r\n]*))?\r?")
_HEAD_END = re.compile(rb"\n\r?\n")
_NOT_BLANK = re.compile(rb"[^\r\n]")  # blank lines before a message are skipped (RFC 7230 §3.5)
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?")

# Header values never kept, only their presence (cookies_present); a malformed line that starts
# with one of these names is quoted without its value.
_SENSITIVE = frozenset({"cookie", "cookie2", "set-cookie", "set-cookie2", "authorization",
                        "proxy-authorization"})
_SENSITIVE_LINE = re.compile(r"[ \t]*(?:proxy-)?(?:set-)?(?:cookie2?|authorization)", re.IGNORECASE)

_HIXIE_KEY3_LEN = 8       # draft-hixie-thewebsocketprotocol-76 §4.1 step 40: 8 random bytes
_HIXIE_ANSWER_LEN = 16    # draft-hixie-thewebsocketprotocol-76 §5.2 step 11: 16-byte MD5 digest
_U32 = struct.Struct("!I")

_HYBI_DRAFT_NAMES = {1: "hybi-01", 2: "hybi-02", 3: "hybi-03"}
_DEFLATE_NAMES = ("permessage-deflate", "x-webkit-deflate-frame", "deflate-frame")


# --- public helpers ----------------------------------------------------------------------------

def accept_key(key: str | bytes) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 §4.2.2 step 5.4).

    base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")); the key is used as sent, minus
    surrounding whitespace. hybi-04..08 compute it the same way.
    """
    raw = key.encode("latin-1", "replace") if isinstance(key, str) else bytes(key)
    digest = hashlib.sha1(raw.strip() + WEBSOCKET_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def _hixie_key_number(key: str) -> int:
    """draft-hixie-thewebsocketprotocol-76 §5.2 steps 4-6: digits / spaces, as a 32-bit value."""
    digits = "".join(ch for ch in key if "0" <= ch <= "9")
    spaces = key.count(" ")
    if not digits or spaces == 0 or len(digits) > 20:
        raise ValueError(f"invalid hixie-76 key {key!r}: {len(digits)} digits, {spaces} spaces")
    number = int(digits)
    if number % spaces:
        raise ValueError(f"invalid hixie-76 key {key!r}: {number} is not a multiple of {spaces}")
    quotient = number // spaces
    if quotient > 0xFFFFFFFF:
        raise ValueError(f"invalid hixie-76 key {key!r}: {quotient} exceeds 32 bits")
    return quotient


def hixie76_answer(key1: str, key2: str, key3: bytes) -> bytes:
    """The 16-byte challenge answer of draft-hixie-thewebsocketprotocol-76 (= hybi-00).

    MD5(big-endian uint32(key1 digits / key1 spaces) + the same for key2 + key3).

    Raises:
        ValueError: a key has no digits or no spaces, its number is not a multiple of its spaces,
            the quotient does not fit 32 bits, or key3 is not 8 bytes.
    """
    if len(key3) != _HIXIE_KEY3_LEN:
        raise ValueError(f"key3 must be 8 bytes, got {len(key3)}")
    challenge = _U32.pack(_hixie_key_number(key1)) + _U32.pack(_hixie_key_number(key2)) + bytes(key3)
    return hashlib.md5(challenge).digest()


def _lower_keys(headers: Mapping[str, str] | None) -> dict[str, str]:
    if not headers:
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    first = value.split(",", 1)[0].strip()
    if first.isascii() and first.isdigit() and len(first) <= 9:
        return int(first)
    return None


def classify(request_headers: Mapping[str, str],
             response_headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Classify an upgrade request (and its response, when known) as (version, draft).

    Header names are matched case-insensitively; repeated fields joined with ", ".

    * ``Sec-WebSocket-Version: N`` → (N, "hybi-04".."hybi-08" / "rfc6455"), or (N, "unknown") for
      a number no draft defines; a value that is not a number → (-1, "unknown").
    * ``Sec-WebSocket-Key1`` + ``Key2`` (8-byte key3 body) → version 0, draft "hixie-76" (hybi-00
      is the same wire format), or "hybi-01".."hybi-03" from ``Sec-WebSocket-Draft: 1..3``.
      hybi-01 sent no such field (hybi-02 added it, and hybi-03 still sent 2), so real hybi-01
      requests read as hixie-76 and real hybi-03 requests as hybi-02: the handshake cannot tell.
    * ``Sec-WebSocket-Key`` without a version: hybi-04 when the response carries
      ``Sec-WebSocket-Nonce`` (the only draft that had it), else (-1, "unknown").
    * No key at all (``Upgrade: WebSocket``, ``WebSocket-Protocol``) → (-1, "hixie-75").
    """
    req = _lower_keys(request_headers)
    resp = _lower_keys(response_headers)
    raw_version = req.get("sec-websocket-version")
    if raw_version is not None:
        version = _parse_int(raw_version)
        if version is None:
            return -1, "unknown"
        return version, DRAFT_OF_VERSION.get(version, "unknown")
    if "sec-websocket-key1" in req and "sec-websocket-key2" in req:
        draft_no = _parse_int(req.get("sec-websocket-draft"))
        return 0, _HYBI_DRAFT_NAMES.get(draft_no or 0, "hixie-76")
    if "sec-websocket-key" in req:
        if "sec-websocket-nonce" in resp:
            return 4, "hybi-04"
        return -1, "unknown"
    return -1, "hixie-75"


def _split_commas(value: str | None) -> list[str]:
    """Split a comma-separated field, commas inside quoted strings kept."""
    if not value:
        return []
    items: list[str] = []
    start = 0
    quoted = False
    for match in re.finditer(r'[",]', value):   # per separator, not per byte
        ch = match.group()
        if ch == '"':
            quoted = not quoted
        elif not quoted:
            items.append(value[start:match.start()])
            start = match.end()
    items.append(value[start:])
    return [s.strip() for s in items if s.strip()]


def parse_extensions(value: str | None) -> list[tuple[str, dict[str, str | None]]]:
    """Parse a Sec-WebSocket-Extensions value (RFC 6455 §9.1) into (name, {param: value}).

    Names and parameter names are lower-cased; quoted values unquoted; a bare parameter maps to
    None. Example: ``permessage-deflate; client_max_window_bits`` →
    ``[("permessage-deflate", {"client_max_window_bits": None})]``.
    """
    result: list[tuple[str, dict[str, str | None]]] = []
    for item in _split_commas(value):
        parts = [p.strip() for p in item.split(";")]
        name = parts[0].lower()
        if not name:
            continue
        params: dict[str, str | None] = {}
        for part in parts[1:]:
            if not part:
                continue
            pname, eq, pvalue = part.partition("=")
            pvalue = pvalue.strip()
            if len(pvalue) >= 2 and pvalue[0] == pvalue[-1] == '"':
                pvalue = pvalue[1:-1]
            params[pname.strip().lower()] = pvalue if eq else None
        result.append((name, params))
    return result


def _window_bits(value: str | None) -> int:
    if value is not None and value.isascii() and value.isdigit() and 8 <= int(value) <= 15:
        return int(value)
    return 15


def deflate_params(accepted: str | None) -> DeflateParams | None:
    """The compression parameters from an accepted Sec-WebSocket-Extensions value, or None.

    permessage-deflate (RFC 7692 §7.1): ``server_no_context_takeover``,
    ``client_no_context_takeover``, ``server_max_window_bits=N``, ``client_max_window_bits[=N]``
    (no value, or a value outside 8..15, means the default 15).
    x-webkit-deflate-frame / deflate-frame (draft-tyoshino-hybi-websocket-perframe-deflate): the
    response's ``max_window_bits`` / ``no_context_takeover`` bind the client's compressor, so they
    map to the client_* fields.
    """
    for name, params in parse_extensions(accepted):
        if name == "permessage-deflate":
            return DeflateParams(
                extension=name,
                server_no_context_takeover="server_no_context_takeover" in params,
                client_no_context_takeover="client_no_context_takeover" in params,
                server_max_window_bits=_window_bits(params.get("server_max_window_bits")),
                client_max_window_bits=_window_bits(params.get("client_max_window_bits")),
            )
        if name in ("x-webkit-deflate-frame", "deflate-frame"):
            return DeflateParams(
                extension=name,
                client_no_context_takeover="no_context_takeover" in params,
                client_max_window_bits=_window_bits(params.get("max_window_bits")),
            )
    return None


def _tokens(value: str | None) -> set[str]:
    return {t.lower() for t in _split_commas(value)}


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


# --- credentials (README: cookie and authorization values never reach an output) ----------------
# Browsers cannot set an Authorization header on a WebSocket upgrade, so applications put their
# credentials in the request target's query string (OAuth's access_token, SignalR, presigned AWS
# URLs) or in Sec-WebSocket-Protocol (Kubernetes' base64url.bearer.authorization.k8s.io.<token>,
# Jupyter Server's v1.token.websocket.jupyter.org.<token>, ["access_token", <token>] pairs, JWTs).
# They are redacted where the Handshake is made, so no table, file or report can show them. All
# checks are regular expressions over strings the header bounds already limit (no per-byte loop,
# nothing that backtracks over a whole value more than a constant number of times).

REDACTED = "<redacted>"

#: Query parameter names whose values are credentials (matched whole, case-insensitively, after
#: percent-decoding): token, access_token, X-Amz-Security-Token, client_secret, password,
#: signature, X-Amz-Signature, X-Amz-Credential, api_key, apikey, Ocp-Apim-Subscription-Key,
#: key, sig, auth, jwt, session, sessionid, jsessionid, PHPSESSID, …
_SECRET_PARAM = re.compile(
    r".*(?:token|secret|passw(?:or)?d|passphrase|signature|credentials?|api[-_]?key|sess(?:ion)?[-_]?id)"
    r"|(?:.*[-_.])?(?:auth|authorization|jwt|sig|key|pwd|pass|session|hmac)", re.IGNORECASE)
#: name=value pairs of a query string or fragment, and path parameters (/p;jsessionid=…)
_QUERY_PAIR = re.compile(r"([?&;#])([^=&;#]*)=([^&;#]*)")
_PATH_PAIR = re.compile(r"(;)([^=;/#]*)=([^;/#]*)")
_QUERY_START = re.compile(r"[?#]")
#: a piece every name _SECRET_PARAM matches contains (or %: a percent-encoded name), or a JWT;
#: searched in the lower-cased target (IGNORECASE would make this quick check slow)
_PARAM_HINT = re.compile(r"tok|secret|pass|pwd|sig|credential|key|sess|auth|jwt|hmac|eyj|%")
#: userinfo of an absolute-form request target (ws://user:password@host/)
_USERINFO = re.compile(r"\A([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@]*@")

#: Subprotocol prefixes that carry a credential after them, kept as the scheme
_SUBPROTOCOL_SCHEMES = re.compile(
    r"(base64url\.bearer\.authorization\.k8s\.io\.|base64\.bearer\.authorization\.|"
    r"v1\.token\.websocket\.jupyter\.org\.)(.+)", re.IGNORECASE)
#: generic: <anything><sep>bearer|token|…<sep><value>; the value is redacted if it looks secret
_SUBPROTOCOL_MARKER = re.compile(
    r"((?:.*?[-_.])?(?:bearer|token|access[-_]?token|auth|authorization|jwt|api[-_]?key|secret|"
    r"password)[-_.:=])(.+)", re.IGNORECASE)
#: a subprotocol that is only a marker: the next offered subprotocol is the credential
_SUBPROTOCOL_PAIR_MARKERS = frozenset({"access_token", "accesstoken", "access-token", "bearer", "token",
                                       "authorization", "auth", "jwt", "auth_token", "auth-token",
                                       "x-auth-token", "apikey", "api_key", "api-key"})
_BASE64ISH = re.compile(r"[A-Za-z0-9+/=_\-]{20,}")
_HEXISH = re.compile(r"[0-9A-Fa-f\-]{32,}")
_SECRETISH = re.compile(r"[0-9A-Z+/=_]")
_SHORTEST_SCHEME = len("base64.bearer.authorization.")
_RUN = re.compile(r"[A-Za-z0-9+/=_\-]{8,}")


def _looks_secret(value: str) -> bool:
    """A value after a credential marker: a run of 8+ base64 characters that is not a lower-case
    word (it has a digit, a capital or one of +/=_): "websocket.jupyter.org" is not."""
    return (_SECRETISH.search(value) is not None
            and any(_SECRETISH.search(run) for run in _RUN.findall(value)))


def _looks_random(part: str) -> bool:
    """A dot-separated piece that is a token by its shape alone: a JWT's first segment, 20+
    base64 characters mixing digits, upper and lower case, or 32+ hex digits (a UUID too)."""
    if part.startswith("eyJ") and len(part) >= 8:
        return True
    if _HEXISH.fullmatch(part):
        return len(part.replace("-", "")) >= 32
    if _BASE64ISH.fullmatch(part):
        return (re.search(r"[0-9]", part) is not None and re.search(r"[A-Z]", part) is not None
                and re.search(r"[a-z]", part) is not None)
    return False


def _redact_subprotocol(token: str) -> str:
    """One Sec-WebSocket-Protocol token with its credential, if any, replaced by REDACTED."""
    if len(token) <= _SHORTEST_SCHEME and not _looks_secret(token):
        return token                          # no rule below could redact anything in it
    m = _SUBPROTOCOL_SCHEMES.match(token)
    if m is not None:
        return m.group(1) + REDACTED
    m = _SUBPROTOCOL_MARKER.match(token)
    if m is not None and _looks_secret(m.group(2)):
        return m.group(1) + REDACTED
    parts = token.split(".")
    if not any(_looks_random(p) for p in parts):
        return token
    kept: list[str] = []
    jwt_left = 0                 # the JWT's payload and signature segments after its header
    for p in parts:
        if jwt_left:
            jwt_left -= 1
            continue
        if _looks_random(p):
            jwt_left = 2 if p.startswith("eyJ") else 0
            if not kept or kept[-1] != REDACTED:
                kept.append(REDACTED)
        else:
            kept.append(p)
    return ".".join(kept)


def redact_subprotocols(offered: tuple[str, ...], chosen: str | None
                        ) -> tuple[tuple[str, ...], str | None]:
    """The offered and chosen subprotocols with credentials redacted (the scheme kept): the value
    after a known scheme (``base64url.bearer.authorization.k8s.io.<token>``), after a marker
    (``bearer.``, ``token-`` …) when it looks secret, a JWT or a random-looking token anywhere,
    and the token that follows a bare marker (``access_token, <token>``). The chosen one is
    redacted as the offered one it repeats."""
    shown: list[str] = []
    mapping: dict[str, str] = {}
    after_marker = False
    for token in offered:
        red = REDACTED if after_marker and _looks_secret(token) else _redact_subprotocol(token)
        after_marker = token.lower() in _SUBPROTOCOL_PAIR_MARKERS
        mapping[token] = red
        shown.append(red)
    if chosen is not None:
        chosen = mapping.get(chosen) or _redact_subprotocol(chosen)
    return tuple(shown), chosen


def _redact_pair(m: re.Match[str]) -> str:
    name, value = m.group(2), m.group(3)
    if not value or value == REDACTED:
        return m.group(0)
    if _SECRET_PARAM.fullmatch(unquote_plus(name).strip()) or (value.startswith("eyJ") and "." in value):
        return f"{m.group(1)}{name}={REDACTED}"
    return m.group(0)


_REQUEST_CREDENTIALS = ("cookie", "cookie2", "authorization", "proxy-authorization")
_RESPONSE_CREDENTIALS = ("set-cookie", "set-cookie2")


def credentials_present(request: Mapping[str, str], response: Mapping[str, str]) -> bool:
    """The `cookies_present` column: did the handshake carry a cookie or credentials (their values
    are never kept)? Header names lower-case, as HTTP/1.1 headers are kept and HTTP/2 sends them."""
    return (any(k in request for k in _REQUEST_CREDENTIALS)
            or any(k in response for k in _RESPONSE_CREDENTIALS))


def redact_target(target: str) -> str:
    """A request target with the values of credential query parameters (``token=<redacted>``;
    the other parameters as they are; JWT-looking values whatever their name) and the userinfo
    of an absolute-form target (``ws://<redacted>@host/``) redacted."""
    if "=" in target and _PARAM_HINT.search(target.lower()) is not None:
        m = _QUERY_START.search(target)
        path, query = (target[:m.start()], target[m.start():]) if m else (target, "")
        if ";" in path:
            path = _PATH_PAIR.sub(_redact_pair, path)
        target = path + _QUERY_PAIR.sub(_redact_pair, query)
    if "@" in target:
        target = _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", target, count=1)
    return target


# --- parser internals --------------------------------------------------------------------------

class _Malformed(Exception):
    """A header block or body framing that cannot be parsed (kind HTTP_MALFORMED)."""


def _looks_like(buf: bytearray) -> str:
    """What the first bytes of a message are: 'request', 'response', 'maybe' (too few) or 'no'."""
    head = bytes(buf[:MAX_METHOD + 1])
    if head.startswith(b"HTTP/"):
        return "response"
    if _METHOD_SP.match(head):
        return "request"
    if b"HTTP/".startswith(head[:5]) and len(head) < 5:
        return "maybe"
    prefix = _TOKEN_PREFIX.match(head)
    if prefix is not None and prefix.end() == len(head) and len(head) <= MAX_METHOD:
        return "maybe"
    return "no"


def _parse_fields(lines: list[bytes]) -> dict[str, str]:
    """Header lines → {lower-case name: value}; obs-fold unfolded, repeats joined with ", "."""
    fields: dict[str, list[str]] = {}
    last: list[str] | None = None
    sensitive = False
    count = 0
    for raw in lines:
        line = raw.decode("latin-1")
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            continue
        if line[0] in " \t":                         # obs-fold (RFC 7230 §3.2.4)
            if last is None:
                raise _Malformed("continuation line before any header field")
            if not sensitive:                        # a cookie's folded lines are not kept either
                folded = line.strip(" \t")
                last[-1] = f"{last[-1]} {folded}".strip()
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _FIELD_NAME.fullmatch(name):
            sensitive_start = _SENSITIVE_LINE.match(line)
            shown = f"{sensitive_start.group()} {REDACTED}" if sensitive_start else line[:60]
            raise _Malformed(f"bad header line {shown!r}")
        count += 1
        if count > MAX_HEADERS:
            raise _Malformed(f"more than {MAX_HEADERS} header fields")
        key = name.lower()
        sensitive = key in _SENSITIVE
        last = fields.setdefault(key, [])
        last.append("" if sensitive else value.strip(" \t"))
    return {k: ", ".join(v for v in vs if v) if len(vs) > 1 else vs[0] for k, vs in fields.items()}


def _closes(headers: Mapping[str, str], http_version: tuple[int, int]) -> bool:
    """The message ends the connection after its exchange (RFC 7230 §6.3)."""
    conn = _tokens(headers.get("connection"))
    return "close" in conn or (http_version < (1, 1) and "keep-alive" not in conn)


@dataclass(slots=True)
class _Request:
    """A parsed request waiting for its response. A plain one keeps only what the response's
    framing needs (method, close): its target and headers are dropped (headers={}, target="")."""

    method: str
    target: str
    headers: dict[str, str]
    record_no: int
    ts_ns: int
    close: bool
    cost: int                     # bytes charged against the budget while it waits
    upgrade: bool = False
    hixie76: bool = False
    key3: bytes = b""


@dataclass(slots=True)
class _Response:
    status: int
    reason: str
    http_version: tuple[int, int]
    headers: dict[str, str]
    record_no: int
    ts_ns: int
    answer: bytes = b""
    cost: int = 0                 # bytes charged against the budget while it is held

    @property
    def close(self) -> bool:
        return _closes(self.headers, self.http_version)


@dataclass(slots=True)
class _Body:
    """Skips one message body by counting: Content-Length, chunked coding, or until close."""

    remaining: int = 0
    chunked: bool = False
    until_close: bool = False
    phase: str = "size"          # chunked: size | data | crlf | trailers
    trailer_bytes: int = 0
    done: bool = False

    def consume(self, buf: bytearray) -> int:
        """Consume what it can from the front of buf; returns the count. Raises _Malformed."""
        if self.until_close:
            return len(buf)
        if not self.chunked:
            n = min(self.remaining, len(buf))
            self.remaining -= n
            self.done = self.remaining == 0
            return n
        pos = 0
        while not self.done and pos < len(buf):
            if self.phase == "data":
                n = min(self.remaining, len(buf) - pos)
                pos += n
                self.remaining -= n
                if self.remaining == 0:
                    self.phase = "crlf"
                continue
            limit = MAX_CHUNK_LINE if self.phase != "crlf" else 2
            nl = buf.find(b"\n", pos, pos + limit)
            if nl < 0:
                if len(buf) - pos >= limit:
                    raise _Malformed(f"chunked body: no line end within {limit} bytes")
                break
            line = bytes(buf[pos:nl])
            pos = nl + 1
            if self.phase == "crlf":
                if line not in (b"", b"\r"):
                    raise _Malformed("chunked body: chunk data not followed by CRLF")
                self.phase = "size"
            elif self.phase == "size":
                m = _CHUNK_SIZE.fullmatch(line)
                if m is None:
                    raise _Malformed(f"chunked body: bad chunk-size line {line[:40]!r}")
                self.remaining = int(m.group(1), 16)
                self.phase = "data" if self.remaining else "trailers"
            else:                                   # trailers, up to an empty line
                self.trailer_bytes += len(line) + 1
                if self.trailer_bytes > MAX_TRAILER_BYTES:
                    raise _Malformed("chunked body: trailer section too long")
                if line in (b"", b"\r"):
                    self.done = True
        return pos


def _body_for(headers: Mapping[str, str], *, is_request: bool) -> _Body | None:
    """The framing of a message body (RFC 7230 §3.3.3); None when there is no body."""
    te = headers.get("transfer-encoding")
    if te is not None:
        codings = [c.strip().lower() for c in te.split(",") if c.strip()]
        if codings and codings[-1] == "chunked":
            return _Body(chunked=True)
        if is_request:
            raise _Malformed(f"request Transfer-Encoding {te!r} without final chunked")
        return _Body(until_close=True)
    cl = headers.get("content-length")
    if cl is not None:
        values = {v.strip() for v in cl.split(",")}
        if len(values) != 1:
            raise _Malformed(f"conflicting Content-Length {cl!r}")
        value = values.pop()
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise _Malformed(f"bad Content-Length {cl!r}")
        length = int(value)
        return _Body(remaining=length) if length else None
    return None if is_request else _Body(until_close=True)


@dataclass(slots=True)
class _Side:
    """One direction's receive buffer and parse position."""

    buf: bytearray = field(default_factory=bytearray)
    scan: int = 0                 # where the header-end search resumes
    line_checked: bool = False    # start line validated for the message being parsed
    nl_scan: int = 0              # where the search for the start line's end resumes
    body: _Body | None = None
    first_record: tuple[int, int] | None = None   # (record_no, ts_ns) of the message's first byte

    def consume(self, n: int) -> None:
        if n:
            del self.buf[:n]
        self.scan = 0
        self.nl_scan = 0
        self.line_checked = False


class HandshakeParser:
    """Per TCP connection. Fed each direction's in-order bytes in pieces of ANY size.

    Args:
        max_header_bytes: the largest header block (start line + fields) buffered for one
            message; over it: Problem(HTTP_MALFORMED) + NotWebSocket.
        budget: the bound on the bytes buffered by all parsers together (budget.SHARED_HANDSHAKE_BUDGET).

    Events: HandshakeDone once per upgrade request answered (a failed one may be followed by
    another on the same keep-alive connection), NotWebSocket when the connection cannot carry
    (or no longer can carry) a WebSocket upgrade, and Problem for what is wrong on the way. After
    HandshakeDone(upgraded=True) or NotWebSocket the parser is finished and returns [] to every
    call.
    A NotWebSocket after a failed HandshakeDone only means "stop feeding".

    Order within one returned list: Problems first, then HandshakeDone, then NotWebSocket, so a
    caller may switch to the frame decoders (or stop) at HandshakeDone without losing a Problem.
    """

    def __init__(self, *, max_header_bytes: int = 65536, budget: PayloadBudget | None = None) -> None:
        self._budget = SHARED_HANDSHAKE_BUDGET if budget is None else budget
        self._held = 0                # bytes of the budget this parser holds
        self._parsed = 0              # the cost of the parsed requests and response it holds
        self.max_header_bytes = max(256, int(max_header_bytes))
        self.max_hold = max(4 * self.max_header_bytes, 1 << 20)
        self._sides = (_Side(), _Side())
        self._client: int | None = None
        self._cstate = "head"     # head | body | key3 | hold
        self._sstate = "head"     # head | body | answer
        self._pending: list[_Request] = []
        self._response: _Response | None = None    # the upgrade response awaiting its answer
        self._exchanges = 0
        self._close_after = False     # the exchange being finished said Connection: close
        self._finished = False
        self._out: list[HandshakeEvent] = []
        self._record = (0, 0)

    # --- public API ----------------------------------------------------------------------------

    def feed(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> list[HandshakeEvent]:
        """Add in-order bytes of one direction; returns the events they complete."""
        if self._finished or direction not in (0, 1) or not data:
            return []
        self._record = (record_no, ts_ns)
        side = self._sides[direction]
        if not side.buf and side.first_record is None:
            side.first_record = self._record
        side.buf += data
        return self._settle(self._run)

    def gap(self, direction: int) -> list[HandshakeEvent]:
        """A TCP hole in one direction: the handshake cannot be followed further."""
        if self._finished:
            return []
        return self._settle(lambda: self._give_up(
            f"tcp gap in direction {direction} during the handshake", malformed=False))

    def finish(self) -> list[HandshakeEvent]:
        """The stream ended (both directions, or the capture)."""
        if self._finished:
            return []
        return self._settle(self._end)

    def __del__(self) -> None:
        if self._held:
            self._budget.give(self._held)
            self._held = 0

    def _settle(self, step: Callable[[], None]) -> list[HandshakeEvent]:
        """Run one step of feed/gap/finish, bring the budget share in line, hand out the events.

        Bad input never raises (Rule 5): it becomes Problem events. An exception is a bug of ours
        and propagates (the connection layer reports it as an internal-error problem, STYLE 19),
        but first the parser is finished and gives its budget share back, so the connection
        can go on as given up without holding the bytes of every other connection's budget.
        """
        try:
            step()
        except BaseException:
            self._out.clear()
            self._finished = True
            self._account()
            raise
        self._account()
        return self._take()

    def _end(self) -> None:
        """finish(): an unanswered upgrade request is a failed handshake, anything else not one."""
        upgrade = self._pending[-1] if self._pending and self._pending[-1].upgrade else None
        if upgrade is not None and self._response is None and not self._server_started():
            self._problem(ProblemKind.HANDSHAKE_NO_RESPONSE,
                          f"{upgrade.method} {redact_target(upgrade.target)[:200]}: upgrade request "
                          "without response")
            self._emit_done(upgrade, None, ok=False, accept_valid=None, reasons=["no response"])
            self._finished = True
        elif upgrade is not None:
            self._give_up("stream ended before the handshake completed", malformed=False,
                          kind=ProblemKind.HANDSHAKE_NO_RESPONSE)
        else:
            self._not_websocket("stream ended without a WebSocket upgrade")

    # --- memory ----------------------------------------------------------------------------------

    def _account(self) -> None:
        """Bring this parser's share of the budget in line with what it buffers; a finished parser
        buffers nothing (its HandshakeDone carries copies of the trailing bytes)."""
        sides = self._sides
        if self._finished:
            for side in sides:
                side.buf.clear()
            self._pending.clear()
            self._response = None
            self._parsed = 0
            held = 0
        else:
            held = len(sides[0].buf) + len(sides[1].buf) + self._parsed
            if held > self._held and not self._budget.take(held - self._held):
                self._give_up(f"the handshake buffers of all connections are over their shared budget of "
                              f"{self._budget.limit} bytes ({held} bytes held here)", malformed=False)
                for side in sides:
                    side.buf.clear()
                held = 0
            elif held > self._held:
                self._held = held
                return
        if held < self._held:
            self._budget.give(self._held - held)
            self._held = held

    # --- driver --------------------------------------------------------------------------------

    def _take(self) -> list[HandshakeEvent]:
        out, self._out = self._out, []
        return out

    def _server_started(self) -> bool:
        """The server sent more than blank lines: its response has begun."""
        if self._client is None:
            return False
        side = self._sides[1 - self._client]
        return _NOT_BLANK.search(side.buf) is not None

    def _run(self) -> None:
        if self._client is None and not self._detect_roles():
            return
        progress = True
        while progress and not self._finished:
            progress = self._step_client()
            if not self._finished:
                progress = self._step_server() or progress

    def _detect_roles(self) -> bool:
        """Rule 1. True once the client direction is known."""
        looks = [(_looks_like(s.buf) if s.buf else None) for s in self._sides]
        if looks[0] == "request":
            self._client = 0
        elif looks[1] == "request" or (looks[0] == "response" and looks[1] != "response"):
            self._client = 1
        elif looks[1] == "response" and looks[0] != "response":
            self._client = 0
        elif looks[0] == "response":
            self._not_websocket("both directions start with an HTTP status line")
            return False
        elif looks[0] == "no" and looks[1] in (None, "no"):
            self._not_websocket("not HTTP: the client's first bytes are not a request line")
            return False
        elif looks[1] == "no" and len(self._sides[1].buf) > self.max_header_bytes:
            self._not_websocket("not HTTP: the server spoke first and the client sent nothing")
            return False
        return self._client is not None

    # --- client side ---------------------------------------------------------------------------

    def _step_client(self) -> bool:
        assert self._client is not None
        side = self._sides[self._client]
        if self._cstate == "hold":
            if len(side.buf) > self.max_hold:
                self._give_up(f"client sent {len(side.buf)} bytes after its upgrade request with "
                              "no response", malformed=False, kind=ProblemKind.HANDSHAKE_NO_RESPONSE)
            return False
        if self._cstate == "body":
            if not self._skip_body(side, "request"):
                return False
            self._cstate = "head"
            return True
        if self._cstate == "key3":
            if len(side.buf) < _HIXIE_KEY3_LEN:
                return False
            self._pending[-1].key3 = bytes(side.buf[:_HIXIE_KEY3_LEN])
            del side.buf[:_HIXIE_KEY3_LEN]
            self._cstate = "hold"
            return True
        # head
        if len(self._pending) >= MAX_PENDING:
            # Pipelined past the limit: the bytes wait unparsed (and counted) for responses.
            if len(side.buf) > self.max_hold:
                self._problem(ProblemKind.HTTP_PIPELINE_LIMIT,
                              f"{MAX_PENDING} pipelined requests without a response and "
                              f"{len(side.buf)} bytes more from the client")
                self._give_up(f"{MAX_PENDING} pipelined requests without a response", malformed=False)
            return False
        size = len(side.buf)
        parsed = self._read_head(side, is_request=True)
        if parsed is None:
            return False
        start, fields = parsed
        method, target, major, minor = start
        rec, ts = self._record
        upgrade = "websocket" in _tokens(fields.get("upgrade"))
        close = _closes(fields, (major, minor))
        if upgrade:
            cost = size - len(side.buf)           # the header block it was parsed from
        else:
            target, cost = "", _PLAIN_REQUEST_COST
        request = _Request(method=method, target=target, headers=fields if upgrade else {},
                           record_no=rec, ts_ns=ts, close=close, cost=cost, upgrade=upgrade)
        self._pending.append(request)
        self._parsed += cost
        if request.upgrade:
            request.hixie76 = ("sec-websocket-key1" in fields and "sec-websocket-key2" in fields
                               and "sec-websocket-key" not in fields
                               and "sec-websocket-version" not in fields)
            self._cstate = "key3" if request.hixie76 else "hold"
            return True
        try:
            body = _body_for(fields, is_request=True)
        except _Malformed as exc:
            self._give_up(f"request: {exc}", malformed=True)
            return False
        if body is not None:
            side.body = body
            self._cstate = "body"
        else:
            side.first_record = self._record if side.buf else None
        return True

    def _skip_body(self, side: _Side, message: str) -> bool:
        """Skip what side.buf holds of side.body ("request" or "response" names it in a problem);
        True when the body is complete and the side reads its next message head."""
        assert side.body is not None
        try:
            n = side.body.consume(side.buf)
        except _Malformed as exc:
            self._give_up(f"{message} body: {exc}", malformed=True)
            return False
        if n:
            del side.buf[:n]
        if not side.body.done:
            return False
        side.body = None
        side.first_record = self._record if side.buf else None
        return True

    # --- server side ---------------------------------------------------------------------------

    def _step_server(self) -> bool:
        assert self._client is not None
        side = self._sides[1 - self._client]
        if self._sstate == "body":
            if not self._skip_body(side, "response"):
                return False
            self._sstate = "head"
            return self._after_exchange()
        if self._sstate == "answer":
            assert self._response is not None
            if len(side.buf) < _HIXIE_ANSWER_LEN:
                return False
            self._response.answer = bytes(side.buf[:_HIXIE_ANSWER_LEN])
            del side.buf[:_HIXIE_ANSWER_LEN]
            self._sstate = "head"
            return self._maybe_conclude()
        if self._response is not None:
            return self._maybe_conclude()
        if not self._pending:
            if len(side.buf) > self.max_header_bytes:
                self._give_up("server sent data with no request outstanding", malformed=False)
            return False
        was_first = side.first_record
        size = len(side.buf)
        parsed = self._read_head(side, is_request=False)
        if parsed is None:
            return False
        (status, reason, major, minor), fields = parsed
        rec, ts = was_first or self._record
        response = _Response(status=status, reason=reason, http_version=(major, minor),
                             headers=fields, record_no=rec, ts_ns=ts)
        side.first_record = self._record if side.buf else None
        request = self._pending[0]
        if 100 <= status < 200 and status != 101:
            return True                               # interim response: request still open
        if status == 101 and not request.upgrade:
            if "h2c" in _tokens(fields.get("upgrade")) and not self._finished:
                # HTTP/2 in clear follows (RFC 7540 §3.2): WebSockets may open on it (RFC 8441)
                self._finished = True
                assert self._client is not None
                client_bytes = bytes(self._sides[self._client].buf)
                server_bytes = bytes(side.buf)
                trailing = ((client_bytes, server_bytes) if self._client == 0
                            else (server_bytes, client_bytes))
                self._out.append(H2cUpgrade(self._client, trailing, rec or 0, ts or 0))
                return False
            self._not_websocket(f"switched to another protocol ({fields.get('upgrade', '?')!r})")
            return False
        if request.upgrade:
            self._response = response
            response.cost = size - len(side.buf)
            self._parsed += response.cost
            if status == 101 and request.hixie76:
                self._sstate = "answer"
                return True
            return self._maybe_conclude()
        # A plain exchange: skip the response body.
        self._parsed -= self._pending.pop(0).cost
        self._exchanges += 1
        return self._start_response_body(side, request, response)

    def _start_response_body(self, side: _Side, request: _Request, response: _Response) -> bool:
        if request.method == "HEAD" or response.status in (204, 304) or response.status < 200:
            body = None
        else:
            try:
                body = _body_for(response.headers, is_request=False)
            except _Malformed as exc:
                self._give_up(f"response: {exc}", malformed=True)
                return False
        self._close_after = request.close or response.close
        if body is not None and body.until_close:
            self._not_websocket("response body runs to the end of the connection")
            return False
        if body is not None:
            side.body = body
            self._sstate = "body"
            return True
        return self._after_exchange()

    def _after_exchange(self) -> bool:
        if self._close_after:
            self._not_websocket("HTTP exchange with Connection: close, no upgrade")
            return False
        if self._exchanges >= MAX_EXCHANGES:
            self._not_websocket(f"{MAX_EXCHANGES} plain HTTP exchanges without an upgrade")
            return False
        return True

    # --- conclusion ----------------------------------------------------------------------------

    def _maybe_conclude(self) -> bool:
        """The upgrade response is complete: conclude once the request (key3) is complete too."""
        if self._cstate == "key3":
            return False
        request = self._pending.pop(0)
        response = self._response
        assert response is not None
        self._response = None
        self._parsed -= request.cost + response.cost
        self._exchanges += 1
        upgraded, ok, accept_valid, reasons, problems = self._judge(request, response)
        for kind, detail in problems:
            self._problem(kind, detail)
        self._emit_done(request, response, ok=ok, accept_valid=accept_valid, reasons=reasons,
                        upgraded=upgraded)
        if response.status == 101:
            # Whatever follows a 101 is no longer HTTP (Rule 4).
            self._finished = True
            if not upgraded:
                self._out.append(NotWebSocket("101 without a valid WebSocket upgrade"))
            return False
        # Failed: the held client bytes may hold another request; skip the response body.
        assert self._client is not None
        self._cstate = "head"
        client = self._sides[self._client]
        client.first_record = self._record if client.buf else None
        return self._start_response_body(self._sides[1 - self._client], request, response)

    def _judge(self, request: _Request, response: _Response
               ) -> tuple[bool, bool, bool | None, list[str], list[tuple[ProblemKind, str]]]:
        """(upgraded, ok, accept_valid, failure reasons, problems) for an upgrade's response."""
        req, resp = request.headers, response.headers
        reasons: list[str] = []
        problems: list[tuple[ProblemKind, str]] = []
        status = response.status
        if status != 101:
            reason = f"HTTP {status} {response.reason}".rstrip()
            versions = resp.get("sec-websocket-version")
            if versions:
                reason += f" (server supports versions {versions})"
            reasons.append(reason)
            problems.append((ProblemKind.HANDSHAKE_FAILED, reason))
            return False, False, None, reasons, problems
        upgraded = True
        if "websocket" not in _tokens(resp.get("upgrade")):
            upgraded = False
            reasons.append(f"101 without Upgrade: websocket (Upgrade: {resp.get('upgrade')!r})")
        if "upgrade" not in _tokens(resp.get("connection")):
            upgraded = False
            reasons.append(f"101 without Connection: Upgrade (Connection: {resp.get('connection')!r})")
        if not upgraded:
            problems.append((ProblemKind.HANDSHAKE_FAILED, "; ".join(reasons)))
        accept_valid: bool | None = None
        if request.hixie76:
            try:
                expected = hixie76_answer(req["sec-websocket-key1"], req["sec-websocket-key2"],
                                          request.key3)
            except ValueError as exc:
                problems.append((ProblemKind.HTTP_MALFORMED, str(exc)))
            else:
                accept_valid = expected == response.answer
                if not accept_valid:
                    problems.append((ProblemKind.ACCEPT_KEY_MISMATCH,
                                     f"expected={expected!r}, found={response.answer!r}"))
        elif "sec-websocket-key" in req:
            expected_key = accept_key(req["sec-websocket-key"])
            found = resp.get("sec-websocket-accept")
            accept_valid = found is not None and found.strip() == expected_key
            if not accept_valid:
                found_shown = found if found is not None else "(none)"
                problems.append((ProblemKind.ACCEPT_KEY_MISMATCH,
                                 f"expected={expected_key}, found={found_shown}"))
        if accept_valid is False:
            reasons.append("challenge answer mismatch (a browser would fail the connection)"
                           if request.hixie76 else
                           "Sec-WebSocket-Accept mismatch (a browser would fail the connection)")
        offered, chosen = self._subprotocols(req, resp)
        more_reasons, more_problems = negotiation_failures(
            offered, chosen, req.get("sec-websocket-extensions"), resp.get("sec-websocket-extensions"))
        reasons += more_reasons
        problems += more_problems
        # RFC 6455 §4.1: each reason above makes the client _Fail the WebSocket Connection_; the
        # frames that follow an upgraded 101 are still decoded (the verdict is the client's).
        return upgraded, upgraded and not reasons, accept_valid, reasons, problems

    @staticmethod
    def _subprotocols(req: Mapping[str, str], resp: Mapping[str, str]
                      ) -> tuple[tuple[str, ...], str | None]:
        """(offered, chosen) as sent (see redact_subprotocols); hixie-75 spells the field
        WebSocket-Protocol."""
        raw = req.get("sec-websocket-protocol", req.get("websocket-protocol"))
        if raw is None:
            offered: tuple[str, ...] = ()
        elif "sec-websocket-key" in req:                 # hybi-04+: comma-separated tokens
            offered = tuple(_split_commas(raw))
        else:                                            # hixie: one value, SP-separated in -02/03
            offered = tuple(p for p in re.split(r"[,\s]+", raw) if p)
        chosen = resp.get("sec-websocket-protocol", resp.get("websocket-protocol"))
        chosen = chosen.strip() if chosen is not None and chosen.strip() else None
        return offered, chosen

    def _emit_done(self, request: _Request, response: _Response | None, *, ok: bool,
                   accept_valid: bool | None, reasons: list[str], upgraded: bool = False) -> None:
        req = request.headers
        resp = response.headers if response is not None else {}
        version, draft = classify(req, resp)
        offered, chosen = redact_subprotocols(*self._subprotocols(req, resp))
        accepted_ext = resp.get("sec-websocket-extensions") or None
        versions: tuple[int, ...] = ()
        if response is not None and response.status != 101:
            versions = tuple(int(v) for v in re.findall(r"\d{1,9}", resp.get("sec-websocket-version", "")))
        handshake = Handshake(
            version=version,
            draft=draft,
            ok=ok,
            http_status=response.status if response is not None else None,
            accept_valid=accept_valid,
            host=req.get("host"),
            path=redact_target(request.target),
            origin=req.get("origin", req.get("sec-websocket-origin")),
            user_agent=req.get("user-agent"),
            server=resp.get("server"),
            subprotocols_offered=offered,
            subprotocol=chosen,
            extensions_offered=req.get("sec-websocket-extensions") or None,
            extensions=accepted_ext,
            deflate=deflate_params(accepted_ext) if response is not None and response.status == 101
            else None,
            cookies_present=credentials_present(req, resp),
            versions_supported=versions,
            failure_reason="; ".join(reasons) or None,
            key=req.get("sec-websocket-key") if version == 4 else None,
            server_nonce=resp.get("sec-websocket-nonce") if version == 4 else None,
            request_record_no=request.record_no,
            request_ts_ns=request.ts_ns,
            response_record_no=response.record_no if response is not None else None,
            response_ts_ns=response.ts_ns if response is not None else None,
            upgraded=upgraded,
        )
        assert self._client is not None
        client_bytes = bytes(self._sides[self._client].buf)
        server_bytes = bytes(self._sides[1 - self._client].buf)
        trailing = ((client_bytes, server_bytes) if self._client == 0 else (server_bytes, client_bytes))
        self._out.append(HandshakeDone(handshake=handshake, client_direction=self._client,
                                       trailing=trailing))

    # --- header blocks -------------------------------------------------------------------------

    def _read_head(self, side: _Side, *, is_request: bool
                   ) -> tuple[tuple[Any, Any, int, int], dict[str, str]] | None:
        """Parse one header block from the front of side.buf; None = need more (or gave up).

        Returns ((method, target, major, minor) or (status, reason, major, minor), fields).
        """
        buf = side.buf
        if not side.line_checked:
            not_blank = _NOT_BLANK.search(buf)
            blanks = len(buf) if not_blank is None else not_blank.start()
            if blanks:
                side.consume(blanks)
                side.first_record = self._record if buf else None
            if not buf:
                return None
            looks = _looks_like(buf)
            wanted = "request" if is_request else "response"
            if looks == "maybe":
                return None
            if looks != wanted:
                if is_request and self._exchanges == 0 and not self._pending:
                    self._not_websocket("not HTTP: the client's first bytes are not a request line")
                elif is_request:
                    self._not_websocket("non-HTTP data after an HTTP exchange")
                else:
                    self._give_up(f"server sent non-HTTP data {bytes(buf[:16])!r} in reply",
                                  malformed=bool(self._pending and self._pending[0].upgrade))
                return None
            nl = buf.find(b"\n", side.nl_scan)
            if nl < 0:
                side.nl_scan = len(buf)
                if len(buf) > MAX_LINE:
                    self._give_up(f"start line longer than {MAX_LINE} bytes", malformed=True)
                return None
            line = bytes(buf[:nl])
            pattern = _REQUEST_LINE if is_request else _STATUS_LINE
            if pattern.fullmatch(line) is None:
                if is_request and b"HTTP/" not in line and not self._exchanges and not self._pending:
                    # "EHLO x", "AUTH …": another line-based protocol, not broken HTTP.
                    self._not_websocket("not HTTP: the client's first line is not a request line")
                    return None
                shown = redact_target(line.decode("latin-1"))[:80]
                self._give_up(f"bad {'request' if is_request else 'status'} line {shown!r}",
                              malformed=True)
                return None
            side.line_checked = True
            side.scan = nl
        m = _HEAD_END.search(buf, side.scan)
        if m is None:
            side.scan = max(side.scan, len(buf) - 2)
            if len(buf) > self.max_header_bytes:
                self._give_up(f"header block over {self.max_header_bytes} bytes", malformed=True)
            return None
        end = m.end()
        if end > self.max_header_bytes:
            self._give_up(f"header block over {self.max_header_bytes} bytes", malformed=True)
            return None
        lines = bytes(buf[:m.start()]).split(b"\n")
        first = lines[0]
        side.consume(end)
        try:
            fields = _parse_fields(lines[1:])
        except _Malformed as exc:
            self._give_up(f"{'request' if is_request else 'response'} headers: {exc}", malformed=True)
            return None
        if is_request:
            rm = _REQUEST_LINE.fullmatch(first)
            assert rm is not None
            start = (rm.group(1).decode("latin-1"), rm.group(2).decode("latin-1"),
                     int(rm.group(3)), int(rm.group(4)))
        else:
            sm = _STATUS_LINE.fullmatch(first)
            assert sm is not None
            start = (int(sm.group(3)), (sm.group(4) or b"").decode("latin-1").strip(),
                     int(sm.group(1)), int(sm.group(2)))
        return start, fields

    # --- endings -------------------------------------------------------------------------------

    def _problem(self, kind: ProblemKind, detail: str) -> None:
        rec, ts = self._record
        self._out.append(Problem(kind=kind, detail=detail, record_no=rec or None, ts_ns=ts or None))

    def _not_websocket(self, reason: str) -> None:
        if not self._finished:
            self._finished = True
            self._out.append(NotWebSocket(reason))

    def _give_up(self, reason: str, *, malformed: bool,
                 kind: ProblemKind = ProblemKind.HANDSHAKE_FAILED) -> None:
        """Stop parsing: Problem(kind) and a failed HandshakeDone if an upgrade request is
        unanswered, Problem(HTTP_MALFORMED) when the input was malformed, then NotWebSocket."""
        if self._finished:
            return
        upgrade = self._pending[-1] if self._pending and self._pending[-1].upgrade else None
        failed = upgrade is not None and self._client is not None
        if failed:
            self._problem(kind, reason)
        if malformed:
            self._problem(ProblemKind.HTTP_MALFORMED, reason)
        if failed:
            assert upgrade is not None
            self._emit_done(upgrade, self._response, ok=False, accept_valid=None, reasons=[reason])
        self._not_websocket(reason)
