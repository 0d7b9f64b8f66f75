"""The handshake messages TlsSession reads (RFC 8446 §4, RFC 5246 §7.4): ClientHello, ServerHello
(HelloRetryRequest included), EncryptedExtensions and TLS 1.2's NewSessionTicket (RFC 5077).

Each parser takes a message body (after the 4-byte handshake header) and returns a frozen value, or
raises HelloError for bytes that do not parse; nothing else escapes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "HRR_RANDOM", "ClientHello", "HelloError", "ServerHello", "escape_name",
    "parse_client_hello", "parse_encrypted_extensions", "parse_new_session_ticket", "parse_server_hello",
]

# RFC 8446 §4 HandshakeType
HELLO_REQUEST = 0
CLIENT_HELLO = 1
SERVER_HELLO = 2
NEW_SESSION_TICKET = 4
END_OF_EARLY_DATA = 5
ENCRYPTED_EXTENSIONS = 8
CERTIFICATE = 11
SERVER_HELLO_DONE = 14
FINISHED = 20
KEY_UPDATE = 24

# Extension types (IANA TLS ExtensionType Values)
EXT_SERVER_NAME = 0                  # RFC 6066 §3
EXT_ALPN = 16                        # RFC 7301
EXT_ENCRYPT_THEN_MAC = 22            # RFC 7366
EXT_EXTENDED_MASTER_SECRET = 23      # RFC 7627
EXT_SESSION_TICKET = 35              # RFC 5077
EXT_PRE_SHARED_KEY = 41              # RFC 8446 §4.2.11
EXT_EARLY_DATA = 42                  # RFC 8446 §4.2.10
EXT_SUPPORTED_VERSIONS = 43          # RFC 8446 §4.2.1

#: RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest (SHA-256 of the string).
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")

MAX_NAME = 255
_U16 = struct.Struct("!H")
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


class HelloError(ValueError):
    """A handshake message that does not parse (message: what and where)."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    sni: str | None = None                       # escaped, at most 255 characters
    alpn: tuple[str, ...] = ()                   # protocols offered, escaped
    supported_versions: tuple[int, ...] = ()     # as sent (GREASE values included)
    session_ticket: bytes | None = None          # the SessionTicket extension's content (b"": none yet)
    psk: bool = False                            # TLS 1.3 pre_shared_key offered
    early_data: bool = False
    encrypt_then_mac: bool = False
    extended_master_secret: bool = False

    @property
    def best_version(self) -> int:
        """The highest version offered (supported_versions when sent, GREASE ignored)."""
        known = [v for v in self.supported_versions if 0x0300 <= v <= 0x0304]
        return max(known) if known else self.legacy_version


@dataclass(frozen=True, slots=True)
class ServerHello:
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    selected_version: int | None = None          # supported_versions (TLS 1.3)
    alpn: str | None = None
    encrypt_then_mac: bool = False
    extended_master_secret: bool = False
    psk: bool = False                            # TLS 1.3: the server accepted a PSK (resumption)

    @property
    def version(self) -> int:
        """The negotiated version."""
        return self.selected_version if self.selected_version is not None else self.legacy_version

    @property
    def is_hrr(self) -> bool:
        return self.random == HRR_RANDOM


def escape_name(raw: bytes) -> str:
    """A name from the wire as printable text: UTF-8 (bad bytes as \\xNN), control characters as
    \\xNN, at most MAX_NAME characters."""
    return raw[:MAX_NAME].decode("utf-8", "backslashreplace").translate(_ESCAPES)[:MAX_NAME]


class _Reader:
    """A cursor over a message body; every read is bounds-checked (HelloError)."""

    __slots__ = ("buf", "end", "off", "what")

    def __init__(self, buf: bytes, what: str, off: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.off = off
        self.end = len(buf) if end is None else end
        self.what = what

    def take(self, n: int) -> bytes:
        if self.end - self.off < n:
            raise HelloError(f"{self.what}: expected={n} more bytes, found={self.end - self.off}")
        start = self.off
        self.off += n
        return self.buf[start:self.off]

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        v: int = _U16.unpack(self.take(2))[0]
        return v

    def vector(self, len_bytes: int) -> _Reader:
        """A sub-reader over a length-prefixed vector (the cursor moves past it)."""
        n = self.u8() if len_bytes == 1 else self.u16()
        start = self.off
        self.take(n)
        return _Reader(self.buf, self.what, start, start + n)

    def rest(self) -> bytes:
        return self.take(self.end - self.off)

    @property
    def left(self) -> int:
        return self.end - self.off


def _extensions(r: _Reader) -> dict[int, bytes]:
    """The extensions block (absent in old hellos: {}); a repeated type keeps the first."""
    out: dict[int, bytes] = {}
    if not r.left:
        return out
    block = r.vector(2)
    while block.left:
        ext_type = block.u16()
        body = block.vector(2).rest()
        out.setdefault(ext_type, body)
    return out


def _u16_list(r: _Reader) -> tuple[int, ...]:
    raw = r.rest()
    return struct.unpack(f"!{len(raw) // 2}H", raw[:len(raw) // 2 * 2])


def _alpn_list(body: bytes, what: str) -> tuple[str, ...]:
    names = _Reader(body, what).vector(2)
    out = []
    while names.left:
        out.append(escape_name(names.vector(1).rest()))
    return tuple(out)


def _sni(body: bytes) -> str | None:
    names = _Reader(body, "ClientHello server_name").vector(2)
    while names.left:
        name_type = names.u8()
        name = names.vector(2).rest()
        if name_type == 0:
            return escape_name(name)
    return None


def _head(r: _Reader) -> tuple[int, bytes, bytes]:
    version = r.u16()
    random = r.take(32)
    session_id = r.vector(1).rest()
    if len(session_id) > 32:
        raise HelloError(f"{r.what}: expected=session_id <= 32 bytes, found={len(session_id)}")
    return version, random, session_id


def parse_client_hello(body: bytes) -> ClientHello:
    """RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2."""
    r = _Reader(body, "ClientHello")
    version, random, session_id = _head(r)
    suites = r.vector(2)
    if suites.left % 2:
        raise HelloError(f"ClientHello: expected=an even cipher_suites length, found={suites.left}")
    cipher_suites = _u16_list(suites)
    r.vector(1)                                  # compression methods
    ext = _extensions(r)
    sni = _sni(ext[EXT_SERVER_NAME]) if EXT_SERVER_NAME in ext else None
    alpn = _alpn_list(ext[EXT_ALPN], "ClientHello ALPN") if EXT_ALPN in ext else ()
    versions: tuple[int, ...] = ()
    if EXT_SUPPORTED_VERSIONS in ext:
        versions = _u16_list(_Reader(ext[EXT_SUPPORTED_VERSIONS], "ClientHello supported_versions").vector(1))
    return ClientHello(
        legacy_version=version, random=random, session_id=session_id, cipher_suites=cipher_suites,
        sni=sni, alpn=alpn, supported_versions=versions, session_ticket=ext.get(EXT_SESSION_TICKET),
        psk=EXT_PRE_SHARED_KEY in ext, early_data=EXT_EARLY_DATA in ext,
        encrypt_then_mac=EXT_ENCRYPT_THEN_MAC in ext,
        extended_master_secret=EXT_EXTENDED_MASTER_SECRET in ext)


def parse_server_hello(body: bytes) -> ServerHello:
    """RFC 8446 §4.1.3 / RFC 5246 §7.4.1.3 (a HelloRetryRequest too: see ServerHello.is_hrr)."""
    r = _Reader(body, "ServerHello")
    version, random, session_id = _head(r)
    suite = r.u16()
    r.u8()                                       # compression method
    ext = _extensions(r)
    selected = None
    if EXT_SUPPORTED_VERSIONS in ext:
        selected = _Reader(ext[EXT_SUPPORTED_VERSIONS], "ServerHello supported_versions").u16()
    alpn = None
    if EXT_ALPN in ext:
        chosen = _alpn_list(ext[EXT_ALPN], "ServerHello ALPN")
        alpn = chosen[0] if chosen else None
    return ServerHello(
        legacy_version=version, random=random, session_id=session_id, cipher_suite=suite,
        selected_version=selected, alpn=alpn, encrypt_then_mac=EXT_ENCRYPT_THEN_MAC in ext,
        extended_master_secret=EXT_EXTENDED_MASTER_SECRET in ext, psk=EXT_PRE_SHARED_KEY in ext)


def parse_encrypted_extensions(body: bytes) -> tuple[str | None, bool]:
    """RFC 8446 §4.3.1: (the ALPN protocol chosen or None, whether early data was accepted)."""
    ext = _extensions(_Reader(body, "EncryptedExtensions"))
    alpn = None
    if EXT_ALPN in ext:
        chosen = _alpn_list(ext[EXT_ALPN], "EncryptedExtensions ALPN")
        alpn = chosen[0] if chosen else None
    return alpn, EXT_EARLY_DATA in ext


def parse_new_session_ticket(body: bytes) -> bytes:
    """RFC 5077 §3.3 (TLS 1.2): the ticket (after the 4-byte lifetime hint)."""
    r = _Reader(body, "NewSessionTicket")
    r.take(4)
    return r.vector(2).rest()
