"""TlsSession: one TCP connection's TLS, both directions, as a stream transform (sans-IO): the
reassembled bytes of each direction in, the plaintext of its application_data records out, with
keys from an NSS key log (or, for a resumed TLS 1.2 session, from an earlier handshake of the
same analysis).

Each direction ("side") is in one epoch (the allowed changes: the `_NEXT` table, applied by `_enter`):

  PLAIN      records are plaintext (before the keys change). A ClientHello starts the handshake;
             any other first record means the capture began after the handshake (mid-stream:
             every side OPAQUE, not_decrypted "no handshake seen", one tls-key-missing problem).
  EARLY      client only, TLS 1.3 0-RTT: records under CLIENT_EARLY_TRAFFIC_SECRET until
             EndOfEarlyData (or until one opens under the handshake keys: early data rejected).
  HANDSHAKE  TLS 1.3: records under the side's *_HANDSHAKE_TRAFFIC_SECRET, until its Finished.
  APP        application keys: TLS 1.3 *_TRAFFIC_SECRET_0 (KeyUpdate: the next secret); TLS 1.2
             the key block of the master secret, from the side's ChangeCipherSpec on.
  OPAQUE     encrypted and not decryptable (no key, unsupported suite, failed authentication,
             renegotiation, a gap during the handshake): records are counted, nothing is output.
  DEAD       the framing is lost (a header that cannot be TLS, or no resynchronisation after a
             gap): bytes are ignored.

Problems come once per cause per side (tls-key-missing once per connection); nothing that did not
authenticate is ever output. Only one partial record (and one bounded handshake message) is held
per side, plus a bounded resynchronisation window after a gap.
"""

from __future__ import annotations

import re
import struct
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum
from hashlib import sha256
from typing import NamedTuple, Union

from analyzer.events import Problem
from analyzer.protocol import ProblemKind
from analyzer.tls import hello as H
from analyzer.tls.keylog import KeyLog
from analyzer.tls.keys import tls12_keys, tls13_keys, tls13_next_secret
from analyzer.tls.protection import DecryptError, RecordDecryptor, supports
from analyzer.tls.records import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    HEADER_LEN,
    MAX_RECORD,
    HandshakeReader,
    RecordError,
    RecordReader,
)
from analyzer.tls.suites import SUITES, CipherSuite, suite_name, version_name

__all__ = ["PlainGap", "ResumptionCache", "TlsInfo", "TlsOut", "TlsSession"]

TLS12 = 0x0303
TLS13 = 0x0304
#: After a gap: how far to search for the next record header, and how many (record, sequence
#: number) decryptions to try, before giving the side up.
RESYNC_WINDOW = 64 * 1024
RESYNC_TRIES = 1024
#: 0-RTT plaintext held until the server accepts or rejects it (past it, passed on at once)
MAX_EARLY_HELD = 64 * 1024
#: The smallest protected record on the wire (header + 1-byte inner type + 16-byte tag).
_MIN_PROTECTED = HEADER_LEN + 17
_HEADER = struct.Struct("!BHH")
_CANDIDATE = re.compile(rb"[\x14-\x17]\x03[\x01-\x03]")
_PROTECTED_CANDIDATE = re.compile(rb"[\x15-\x17]\x03[\x01-\x03]")
_NAMES = ("client", "server")

# RFC 8446 §6 / RFC 5246 §7.2 AlertDescription
ALERT_NAMES = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
    22: "record_overflow", 30: "decompression_failure", 40: "handshake_failure", 41: "no_certificate",
    42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error", 60: "export_restriction",
    70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
    86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation", 109: "missing_extension",
    110: "unsupported_extension", 111: "certificate_unobtainable", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 114: "bad_certificate_hash_value", 115: "unknown_psk_identity",
    116: "certificate_required", 120: "no_application_protocol",
}

Chunk = tuple[int, bytes, int, int]              # direction, plaintext, record_no, ts_ns


class PlainGap(NamedTuple):
    """Plaintext of `direction` was lost (a TCP gap under it; its size is unknown)."""

    direction: int
    record_no: int
    ts_ns: int


TlsOut = Union[Chunk, PlainGap, tuple[int, Problem]]


@dataclass(slots=True)
class TlsInfo:
    """What the connections row shows about the TLS of one connection."""

    version: str | None = None          # negotiated ("TLS 1.3"); until ServerHello the best offered
    cipher: str | None = None           # IANA suite name
    sni: str | None = None              # escaped, at most 255 characters
    alpn: str | None = None             # chosen (ServerHello or EncryptedExtensions)
    alpn_offered: str | None = None     # comma-joined
    decrypted: bool = False             # some application data was decrypted
    not_decrypted: str | None = None    # why not, or why it stopped (the first cause)
    resumed: bool = False
    records: int = 0                    # TLS records seen, both directions


class ResumptionCache:
    """TLS 1.2 master secrets of the full handshakes seen in an analysis, by session id and by
    ticket (tickets are keyed by their SHA-256), for the abbreviated handshakes that resume them.
    Least recently used entries go past `limit`."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._secrets: OrderedDict[bytes, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._secrets)

    def _put(self, key: bytes, master_secret: bytes) -> None:
        self._secrets[key] = master_secret
        self._secrets.move_to_end(key)
        if len(self._secrets) > self._limit:
            self._secrets.popitem(last=False)

    def remember(self, session_id: bytes, ticket: bytes | None, master_secret: bytes) -> None:
        if session_id:
            self._put(b"i" + session_id, master_secret)
        if ticket:
            self._put(b"t" + sha256(ticket).digest(), master_secret)

    def lookup(self, session_id: bytes, ticket: bytes | None) -> bytes | None:
        keys = (b"t" + sha256(ticket).digest() if ticket else b"", b"i" + session_id if session_id else b"")
        for key in keys:
            if key and key in self._secrets:
                self._secrets.move_to_end(key)
                return self._secrets[key]
        return None


class Epoch(IntEnum):
    PLAIN = 0
    EARLY = 1
    HANDSHAKE = 2
    APP = 3
    OPAQUE = 4
    DEAD = 5


_PLAIN, _EARLY, _HANDSHAKE, _APP, _OPAQUE, _DEAD = Epoch

#: The epochs a side may go to from each (staying is always allowed). Rule: a side's epoch changes
#: only in `_enter`, along this table; anything else is a bug of ours (an internal-error row).
_NEXT: dict[Epoch, frozenset[Epoch]] = {
    _PLAIN: frozenset({_EARLY, _HANDSHAKE, _APP, _OPAQUE, _DEAD}),
    # (back to PLAIN after a HelloRetryRequest; APP: the server chose TLS 1.2 after a 0-RTT offer)
    _EARLY: frozenset({_PLAIN, _HANDSHAKE, _APP, _OPAQUE, _DEAD}),
    _HANDSHAKE: frozenset({_APP, _OPAQUE, _DEAD}),
    _APP: frozenset({_OPAQUE, _DEAD}),
    _OPAQUE: frozenset({_DEAD}),
    _DEAD: frozenset(),
}


class IllegalEpoch(RuntimeError):
    """An epoch change the table does not allow: a bug of ours."""


def _enter(side: _Side, epoch: Epoch) -> None:
    if epoch is not side.epoch and epoch not in _NEXT[side.epoch]:
        raise IllegalEpoch(f"the {side.name}'s TLS epoch {side.epoch.name} -> {epoch.name}")
    side.epoch = epoch


class _Resync:
    """A side looking for its record boundary after a gap."""

    __slots__ = ("buf", "lost", "scanned", "seq0", "tries", "unknown")

    def __init__(self, lost: int, unknown: bool, seq0: int) -> None:
        self.buf = bytearray()
        self.lost = lost            # bytes lost before the search window (partial record + gap)
        self.unknown = unknown      # the gap's size is not known
        self.scanned = 0            # bytes of the window dropped so far
        self.seq0 = seq0            # the sequence number the first lost record had
        self.tries = RESYNC_TRIES


class _Side:
    """One direction's state."""

    __slots__ = ("causes", "dec", "direction", "done", "early_secret", "epoch", "hs", "missing", "name",
                 "next_dec", "reader", "records", "renegotiating", "resync", "secret", "skip", "special",
                 "wire_bytes")

    def __init__(self, direction: int, name: str) -> None:
        self.direction = direction
        self.name = name
        self.reader = RecordReader()
        self.hs = HandshakeReader()
        self.epoch = _PLAIN
        self.dec: RecordDecryptor | None = None
        self.next_dec: RecordDecryptor | None = None    # TLS 1.3 client: handshake keys after 0-RTT
        self.secret: bytes | None = None                # TLS 1.3: the current traffic secret
        self.early_secret: bytes | None = None
        self.missing: str | None = None                 # the key log label we lacked (OPAQUE)
        self.records = 0
        self.wire_bytes = 0
        self.done = False                               # its Finished was seen
        self.renegotiating = False
        self.causes: set[str] = set()                   # problems reported (one per cause)
        self.skip = 0                                   # bytes of a record cut by a gap to drop
        self.resync: _Resync | None = None
        self.special = False                            # skip, resync or DEAD: the slow feed path


class TlsSession:
    """A StreamTransform: TLS records of both directions in, plaintext application data out."""

    def __init__(self, keylog: KeyLog, client_dir: int, resumption: ResumptionCache | None = None) -> None:
        self.info = TlsInfo()
        self.keylog = keylog
        self.resumption = resumption
        self.client_dir = client_dir
        self._sides = (_Side(0, _NAMES[0 if client_dir == 0 else 1]),
                       _Side(1, _NAMES[1 if client_dir == 0 else 0]))
        self._ch: H.ClientHello | None = None
        self._sh: H.ServerHello | None = None
        self._hrr = False
        self._tls13 = False
        self._version = 0
        self._suite: CipherSuite | None = None
        self._ticket: bytes | None = None               # TLS 1.2 NewSessionTicket
        self._master: bytes | None = None
        self._hello_done = False                        # TLS 1.2 ServerHelloDone seen (a full handshake)
        self._early_accepted: bool | None = None
        # 0-RTT plaintext waits for the server's EncryptedExtensions: passed on when it accepted the
        # early data, dropped when it rejected it (the client sends it again under 1-RTT keys)
        self._early_held: list[TlsOut] = []
        self._early_held_bytes = 0
        self._key_missing_told = False
        self._hello_failed = False                      # the ClientHello did not parse (tls-malformed)

    # --- the transform -------------------------------------------------------------------------

    def feed(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> list[TlsOut]:
        side = self._sides[direction]
        if side.special:
            return self._special_feed(side, data, record_no, ts_ns)
        try:
            records = side.reader.feed(data)
        except RecordError as exc:
            return self._lost_framing(side, f"the {side.name}'s record framing is lost: {exc}", record_no,
                                      ts_ns)
        side.wire_bytes += len(data)
        if not records:
            return []
        dec = side.dec
        if len(records) == 1 and side.epoch is _APP and dec is not None:
            # the steady state: one record under the application keys (the only per-record work
            # is the decryption; anything unusual takes _records)
            header, fragment = records[0]
            if header[0] == APPLICATION_DATA or not self._tls13:
                try:
                    ctype, plain = dec.decrypt(header, fragment)
                except DecryptError:
                    return self._records(side, records, record_no, ts_ns)   # (seq unchanged: retried there)
                side.records += 1
                self.info.records += 1
                if ctype == APPLICATION_DATA:
                    self.info.decrypted = True
                    return [(direction, plain, record_no, ts_ns)]
                out: list[TlsOut] = []
                self._content(side, ctype, plain, out, record_no, ts_ns)
                return out
        return self._records(side, records, record_no, ts_ns)

    def gap(self, direction: int, size: int, record_no: int, ts_ns: int) -> list[TlsOut]:
        """`size` bytes of `direction` are missing (-1: an unknown number)."""
        side = self._sides[direction]
        if side.epoch is _DEAD:
            return []
        out: list[TlsOut] = [PlainGap(direction, record_no, ts_ns)]
        reader = side.reader
        total, buffered = reader.pending_total, reader.buffered
        reader.reset()
        side.hs.reset()
        if side.skip:                                    # a gap while skipping the rest of a cut record
            if 0 <= size < side.skip:
                side.skip -= size
                return out
            buffered, total = -side.skip, 0
            side.skip = 0
        if side.epoch in (_EARLY, _HANDSHAKE):
            self._stop(side, _OPAQUE, "gap in the TLS stream")
            self._problem(out, side, ProblemKind.TLS_GAP, f"a gap of {max(size, 0)} bytes in the "
                          f"{side.name}'s handshake: its later records are not decrypted", record_no, ts_ns)
        if size >= 0 and total and buffered + size < total:
            # The gap ends inside the record being read: the next one starts right after it.
            side.skip = total - buffered - size
            side.special = True
            if side.dec is not None and side.epoch is _APP:
                side.dec.seq += 1
                self._problem(out, side, ProblemKind.TLS_GAP, f"a gap of {size} bytes inside a record of the "
                              f"{side.name}: 1 record lost", record_no, ts_ns, once=False)
            return out
        old = side.resync
        if old is not None:                              # a gap while searching: count from the same start
            lost = old.lost + old.scanned + len(old.buf) + max(size, 0)
            side.resync = _Resync(lost, old.unknown or size < 0, old.seq0)
            side.resync.tries = old.tries
        else:
            seq0 = side.dec.seq if side.dec is not None else 0
            side.resync = _Resync(max(buffered + size, 0), size < 0, seq0)
        side.special = True
        return out

    def finish(self, record_no: int, ts_ns: int) -> list[TlsOut]:
        """The capture ended: a record left incomplete (or a search still on) is a problem; 0-RTT
        data whose fate the capture did not show is passed on."""
        out: list[TlsOut] = self._early_release()
        for side in self._sides:
            if side.reader.buffered and side.epoch is not _DEAD:
                self._problem(out, side, ProblemKind.TLS_RECORD_CUT, f"the stream of the {side.name} ends "
                              f"inside a record: {side.reader.buffered} of "
                              f"{side.reader.pending_total or '?'} bytes",
                              record_no, ts_ns)
            elif side.resync is not None:
                self._problem(out, side, ProblemKind.TLS_GAP, f"could not resynchronise the {side.name} "
                              "after a gap before the end of the capture", record_no, ts_ns)
            side.reader.reset()
        if not self.info.decrypted and self.info.not_decrypted is None:
            self.info.not_decrypted = "no application data"
        return out

    # --- records -----------------------------------------------------------------------------

    def _records(self, side: _Side, records: list[tuple[bytes, bytes | memoryview]], record_no: int,
                 ts_ns: int) -> list[TlsOut]:
        out: list[TlsOut] = []
        parts: list[bytes] = []
        first = side.records
        side.records = first + len(records)
        self.info.records += len(records)
        tls13 = self._tls13
        for index, (header, fragment) in enumerate(records, first + 1):
            dec = side.dec
            if dec is not None and (header[0] == APPLICATION_DATA or not tls13):
                try:
                    ctype, plain = dec.decrypt(header, fragment)
                except DecryptError as exc:
                    opened = self._decrypt_failed(side, index, header, fragment, exc, out, parts, record_no,
                                                  ts_ns)
                    if opened is None:
                        continue
                    ctype, plain = opened
                if ctype == APPLICATION_DATA and side.epoch is _APP:
                    parts.append(plain)
                    continue
                if parts:
                    out.append(self._chunk(side, parts, record_no, ts_ns))
                self._content(side, ctype, plain, out, record_no, ts_ns)
            else:
                if parts:
                    out.append(self._chunk(side, parts, record_no, ts_ns))
                self._clear(side, header, fragment, out, record_no, ts_ns)
            tls13 = self._tls13
            if side.epoch is _DEAD:
                break
        if parts:
            out.append(self._chunk(side, parts, record_no, ts_ns))
        return out

    def _chunk(self, side: _Side, parts: list[bytes], record_no: int, ts_ns: int) -> Chunk:
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self.info.decrypted = True
        return (side.direction, data, record_no, ts_ns)

    def _clear(self, side: _Side, header: bytes, fragment: bytes | memoryview, out: list[TlsOut],
               record_no: int, ts_ns: int) -> None:
        """A record not under the side's current keys: plaintext, or one we cannot decrypt."""
        ctype = header[0]
        epoch = side.epoch
        if epoch is _OPAQUE and (not self._tls13 or ctype == APPLICATION_DATA):
            self._opaque(side, out, record_no, ts_ns)
            return
        if self._ch is None and not (ctype == HANDSHAKE and (side.hs.partial or (
                len(fragment) > 0 and fragment[0] == H.CLIENT_HELLO))):
            self._mid_stream(side, out, record_no, ts_ns)
            return
        if ctype == HANDSHAKE:
            if self._tls13 and epoch in (_HANDSHAKE, _APP):
                # TLS 1.3 sends every handshake message after the ServerHello encrypted: a plaintext
                # one is not authentic and must not move the key state nor the message reassembly
                self._problem(out, side, ProblemKind.TLS_MALFORMED, f"a plaintext handshake record from "
                              f"the {side.name} after its keys changed: ignored", record_no, ts_ns)
                return
            self._handshake(side, side.hs.feed(fragment), False, out, record_no, ts_ns)
        elif ctype == CHANGE_CIPHER_SPEC:
            if not self._tls13:
                self._change_cipher_spec(side, out, record_no, ts_ns)
        elif ctype == ALERT:
            self._alert(side, bytes(fragment), out, record_no, ts_ns)
        elif ctype == APPLICATION_DATA:
            if epoch is _EARLY:
                self._early(side, header, fragment, out, record_no, ts_ns)
            elif epoch in (_HANDSHAKE, _APP):     # (a key for this epoch was missing: dec is None)
                self._opaque(side, out, record_no, ts_ns)
            else:
                self._problem(out, side, ProblemKind.TLS_MALFORMED, f"application data from the {side.name} "
                              "before its keys changed: not decrypted", record_no, ts_ns)

    def _content(self, side: _Side, ctype: int, plain: bytes, out: list[TlsOut], record_no: int,
                 ts_ns: int) -> None:
        """A decrypted record that is not application data under application keys."""
        if ctype == HANDSHAKE:
            self._handshake(side, side.hs.feed(plain), True, out, record_no, ts_ns)
        elif ctype == ALERT:
            self._alert(side, plain, out, record_no, ts_ns)
        elif ctype == APPLICATION_DATA:
            if side.epoch is _EARLY:
                chunk = (side.direction, plain, record_no, ts_ns)
                if self._early_accepted is None and self._early_held_bytes + len(plain) <= MAX_EARLY_HELD:
                    self._early_held.append(chunk)
                    self._early_held_bytes += len(plain)
                elif self._early_accepted is not False:
                    out.extend(self._early_release())
                    out.append(chunk)
                    self.info.decrypted = True
            else:
                self._problem(out, side, ProblemKind.TLS_MALFORMED, f"application data from the {side.name} "
                              "under handshake keys: not passed on", record_no, ts_ns)
        elif ctype == CHANGE_CIPHER_SPEC and side.renegotiating:
            self._stop(side, _OPAQUE, "renegotiation")

    def _decrypt_failed(self, side: _Side, index: int, header: bytes, fragment: bytes | memoryview,
                        exc: DecryptError, out: list[TlsOut], parts: list[bytes], record_no: int,
                        ts_ns: int) -> tuple[int, bytes] | None:
        """A record that did not authenticate: 0-RTT rejected (it opens under the handshake keys),
        else a problem and the side stops decrypting."""
        if side.epoch is _EARLY:
            opened = self._handshake_keys_open(side, header, fragment)
            if opened is not None:
                return opened
        if parts:
            out.append(self._chunk(side, parts, record_no, ts_ns))
        seq = side.dec.seq if side.dec is not None else 0
        self._problem(out, side, ProblemKind.TLS_DECRYPT_FAILED, f"record {index} of the {side.name} "
                      f"(TLS sequence number {seq}) did not decrypt: {exc}; its later records are not "
                      "decrypted",
                      record_no, ts_ns)
        self._stop(side, _OPAQUE, "decryption failed (wrong key?)")
        return None

    # --- handshake ---------------------------------------------------------------------------

    def _handshake(self, side: _Side, messages: list[tuple[int, bytes | None, int]], encrypted: bool,
                   out: list[TlsOut], record_no: int, ts_ns: int) -> None:
        for msg_type, body, _length in messages:
            try:
                self._message(side, msg_type, body, encrypted, out, record_no, ts_ns)
            except H.HelloError as exc:
                self._problem(out, side, ProblemKind.TLS_MALFORMED, str(exc), record_no, ts_ns)
                if msg_type == H.CLIENT_HELLO and self._ch is None:
                    self._hello_failed = True
                    self._stop(side, side.epoch, "malformed ClientHello")
            if side.epoch in (_OPAQUE, _DEAD):
                return

    def _message(self, side: _Side, msg_type: int, body: bytes | None, encrypted: bool, out: list[TlsOut],
                 record_no: int, ts_ns: int) -> None:
        if msg_type == H.CLIENT_HELLO and not encrypted and body is not None:
            self._client_hello(side, H.parse_client_hello(body), out, record_no, ts_ns)
        elif msg_type == H.SERVER_HELLO and not encrypted and body is not None and self._ch is not None:
            self._server_hello(side, H.parse_server_hello(body), out, record_no, ts_ns)
        elif msg_type in (H.CLIENT_HELLO, H.HELLO_REQUEST) and encrypted and not self._tls13:
            if not side.renegotiating:
                for s in self._sides:
                    s.renegotiating = True
                self._problem(out, side, ProblemKind.TLS_RENEGOTIATION, f"renegotiation started by the "
                              f"{side.name}: records after the new handshake's ChangeCipherSpec are not "
                              "decrypted", record_no, ts_ns)
        elif msg_type == H.FINISHED and encrypted:
            side.done = True
            if self._tls13 and side.epoch is _HANDSHAKE:
                label = "CLIENT_TRAFFIC_SECRET_0" if side.name == "client" else "SERVER_TRAFFIC_SECRET_0"
                self._tls13_keys(side, _APP, label)
            elif not self._tls13:
                self._remember()
        elif msg_type == H.ENCRYPTED_EXTENSIONS and encrypted and body is not None:
            alpn, early = H.parse_encrypted_extensions(body)
            self._early_accepted = early
            if early:
                out.extend(self._early_release())
            else:
                self._early_held, self._early_held_bytes = [], 0
            if alpn is not None:
                self.info.alpn = alpn
        elif msg_type == H.KEY_UPDATE and encrypted and self._tls13 and side.epoch is _APP and side.secret \
                and self._suite:
            side.secret = tls13_next_secret(self._suite, side.secret)
            side.dec = RecordDecryptor(self._suite, tls13_keys(self._suite, side.secret), version=TLS13)
        elif msg_type == H.END_OF_EARLY_DATA and encrypted and side.epoch is _EARLY:
            side.dec, side.next_dec = side.next_dec, None
            _enter(side, _HANDSHAKE if side.dec is not None else _OPAQUE)
        elif msg_type == H.NEW_SESSION_TICKET and not self._tls13 and body is not None:
            self._ticket = H.parse_new_session_ticket(body)
        elif msg_type == H.SERVER_HELLO_DONE:
            self._hello_done = True

    def _client_hello(self, side: _Side, ch: H.ClientHello, out: list[TlsOut], record_no: int,
                      ts_ns: int) -> None:
        if self._ch is not None:
            if not self._hrr or self._sh is not None:
                self._problem(out, side, ProblemKind.TLS_MALFORMED, "a second ClientHello in plaintext "
                              "(not after a HelloRetryRequest): ignored", record_no, ts_ns)
                return
            if ch.random != self._ch.random:
                self._problem(out, side, ProblemKind.TLS_MALFORMED, "the ClientHello after the "
                              "HelloRetryRequest has another random: the first one's keys are looked up",
                              record_no, ts_ns)
            if side.epoch is _EARLY:                  # 0-RTT is abandoned after a HelloRetryRequest
                side.dec, side.early_secret = None, None
                _enter(side, _PLAIN)
            return
        if side.direction != self.client_dir:
            self.client_dir = side.direction
            for s in self._sides:
                s.name = _NAMES[0 if s.direction == side.direction else 1]
        self._ch = ch
        info = self.info
        info.sni = ch.sni
        info.alpn_offered = ",".join(ch.alpn) or None
        info.version = version_name(ch.best_version)
        if ch.early_data and ch.best_version == TLS13:
            self._tls13 = True
            _enter(side, _EARLY)
            side.early_secret = self.keylog.secret("CLIENT_EARLY_TRAFFIC_SECRET", ch.random)

    def _server_hello(self, side: _Side, sh: H.ServerHello, out: list[TlsOut], record_no: int,
                      ts_ns: int) -> None:
        info = self.info
        info.cipher = suite_name(sh.cipher_suite)
        info.version = version_name(sh.version)
        if sh.is_hrr:
            self._hrr = True
            self._tls13 = True
            return
        if self._sh is not None:
            return
        self._sh = sh
        self._version = version = sh.version
        self._tls13 = version == TLS13
        if sh.alpn is not None:
            info.alpn = sh.alpn
        info.resumed = sh.psk and self._tls13           # TLS 1.3: the server took a pre-shared key
        suite = SUITES.get(sh.cipher_suite)
        if suite is None or suite.tls13 != self._tls13 or not supports(suite, version):
            what = (f"cipher suite {info.cipher}" if suite is None or suite.tls13 != self._tls13
                    else f"cipher suite {info.cipher} under {info.version}")
            self._problem(out, side, ProblemKind.TLS_UNSUPPORTED_CIPHER, f"{what} cannot be decrypted: the "
                          "connection's records are counted only", record_no, ts_ns)
            if info.not_decrypted is None:
                info.not_decrypted = f"unsupported {what}"
            for s in self._sides:
                if self._tls13 or s.epoch is _EARLY:
                    self._stop(s, _OPAQUE, "")
            return
        self._suite = suite
        if not self._tls13:
            return
        server = side
        client = self._sides[1 - side.direction]
        self._tls13_keys(server, _HANDSHAKE, "SERVER_HANDSHAKE_TRAFFIC_SECRET")
        if client.epoch is _EARLY:
            secret = self.keylog.secret("CLIENT_HANDSHAKE_TRAFFIC_SECRET", self._ch.random)  # type: ignore[union-attr]
            if secret is not None:
                client.next_dec = RecordDecryptor(suite, tls13_keys(suite, secret), version=TLS13)
        else:
            self._tls13_keys(client, _HANDSHAKE, "CLIENT_HANDSHAKE_TRAFFIC_SECRET")

    def _tls13_keys(self, side: _Side, epoch: Epoch, label: str) -> None:
        """The side's records from now on are under this secret (OPAQUE when the key log lacks it).
        A side that already stopped (OPAQUE, DEAD) stays stopped."""
        if side.epoch is _OPAQUE or side.epoch is _DEAD:
            return
        suite, ch = self._suite, self._ch
        secret = self.keylog.secret(label, ch.random) if ch is not None and suite is not None else None
        if secret is None or suite is None:
            side.dec, side.secret, side.missing = None, None, label
            _enter(side, _OPAQUE)
            return
        side.secret = secret
        side.dec = RecordDecryptor(suite, tls13_keys(suite, secret), version=TLS13)
        _enter(side, epoch)

    def _change_cipher_spec(self, side: _Side, out: list[TlsOut], record_no: int, ts_ns: int) -> None:
        """TLS <= 1.2: the side's records are encrypted from here on."""
        ch, sh, suite = self._ch, self._sh, self._suite
        if ch is not None and sh is None and ch.best_version == TLS13:
            return                                      # (RFC 8446 D.4: the middlebox-compatibility CCS)
        if ch is None or sh is None:
            self._problem(out, side, ProblemKind.TLS_MALFORMED, f"ChangeCipherSpec from the {side.name} "
                          "before the ServerHello", record_no, ts_ns)
            self._stop(side, _OPAQUE, "no ServerHello seen")
            return
        if suite is None:                               # unsupported: said at the ServerHello
            _enter(side, _OPAQUE)
            return
        if not self._hello_done and (ch.session_ticket or (sh.session_id and sh.session_id == ch.session_id)):
            self.info.resumed = True                    # the abbreviated handshake: no ServerHelloDone
        master = self._master
        if master is None:
            master = self.keylog.master_secret(ch.random)
            if master is None and self.info.resumed and self.resumption is not None:
                master = self.resumption.lookup(sh.session_id, ch.session_ticket)
            self._master = master
        if master is None:
            side.dec, side.missing = None, "CLIENT_RANDOM"
            _enter(side, _OPAQUE)
            return
        keys = tls12_keys(suite, master, ch.random, sh.random, version=self._version)
        etm = sh.encrypt_then_mac and not suite.aead
        index = 0 if side.name == "client" else 1
        side.dec = RecordDecryptor(suite, keys[index], version=self._version, encrypt_then_mac=etm)
        _enter(side, _APP)

    def _early_release(self) -> list[TlsOut]:
        held, self._early_held, self._early_held_bytes = self._early_held, [], 0
        if held:
            self.info.decrypted = True
        return held

    def _remember(self) -> None:
        """After a TLS 1.2 Finished decrypted: its master secret is good for later resumptions."""
        if self.resumption is None or self._master is None or self._sh is None:
            return
        self.resumption.remember(self._sh.session_id, self._ticket, self._master)

    def _early(self, side: _Side, header: bytes, fragment: bytes | memoryview, out: list[TlsOut],
               record_no: int, ts_ns: int) -> None:
        """The first 0-RTT record: its suite is one the client offered (the PSK's), found by trying."""
        ch = self._ch
        opened = self._handshake_keys_open(side, header, fragment)
        if opened is not None:
            self._content(side, opened[0], opened[1], out, record_no, ts_ns)
            return
        if side.early_secret is None or ch is None:
            if "early" not in side.causes:
                side.causes.add("early")
                self._problem(out, side, ProblemKind.TLS_KEY_MISSING, "no CLIENT_EARLY_TRAFFIC_SECRET in the "
                              f"key log for client random {ch.random.hex() if ch else '?'}: 0-RTT records "
                              "skipped",
                              record_no, ts_ns)
            return
        for code in ch.cipher_suites:
            suite = SUITES.get(code)
            if suite is None or not suite.tls13:
                continue
            dec = RecordDecryptor(suite, tls13_keys(suite, side.early_secret), version=TLS13)
            opened = dec.decrypt_at(0, header, fragment)
            if opened is not None:
                side.dec = dec
                self._content(side, opened[0], opened[1], out, record_no, ts_ns)
                return
        side.early_secret = None
        self._problem(out, side, ProblemKind.TLS_DECRYPT_FAILED, "the first 0-RTT record did not decrypt "
                      "with CLIENT_EARLY_TRAFFIC_SECRET under any offered TLS 1.3 suite: 0-RTT records "
                      "skipped",
                      record_no, ts_ns)

    @staticmethod
    def _handshake_keys_open(side: _Side, header: bytes,
                             fragment: bytes | memoryview) -> tuple[int, bytes] | None:
        """TLS 1.3 client in 0-RTT: a record that opens under its handshake keys ends the early data
        (after EndOfEarlyData, or at once when the server rejected it)."""
        nxt = side.next_dec
        opened = nxt.decrypt_at(nxt.seq, header, fragment) if nxt is not None else None
        if opened is not None:
            side.dec, side.next_dec = nxt, None
            _enter(side, _HANDSHAKE)
        return opened

    def _alert(self, side: _Side, body: bytes, out: list[TlsOut], record_no: int, ts_ns: int) -> None:
        if len(body) < 2:
            self._problem(out, side, ProblemKind.TLS_MALFORMED, f"an alert of {len(body)} bytes from the "
                          f"{side.name}", record_no, ts_ns)
            return
        level, description = body[0], body[1]
        handshake_over = side.done                      # (the sender's Finished was seen)
        if level == 2 or not handshake_over:
            name = ALERT_NAMES.get(description, f"alert {description}")
            kind = "fatal" if level == 2 else "warning" if level == 1 else f"level-{level}"
            when = "" if handshake_over else " during the handshake"
            self._problem(out, side, ProblemKind.TLS_ALERT, f"{kind} alert {name} ({description}) from the "
                          f"{side.name}{when}", record_no, ts_ns)

    # --- what cannot be decrypted -------------------------------------------------------------

    def _opaque(self, side: _Side, out: list[TlsOut], record_no: int, ts_ns: int) -> None:
        """An encrypted record we have no key for: say so once per connection."""
        if side.missing is None or self._key_missing_told:
            return
        self._key_missing_told = True
        ch = self._ch
        self._problem(out, side, ProblemKind.TLS_KEY_MISSING, f"no {side.missing} line in the key log for "
                      f"client random {ch.random.hex() if ch else '?'}: the records are not decrypted",
                      record_no, ts_ns)
        if self.info.not_decrypted is None:
            self.info.not_decrypted = "no key for the client random"

    def _mid_stream(self, side: _Side, out: list[TlsOut], record_no: int, ts_ns: int) -> None:
        """A record before any ClientHello: the capture began after the handshake."""
        for s in self._sides:
            if s.epoch is not _DEAD:
                _enter(s, _OPAQUE)
        if not self._key_missing_told and not self._hello_failed:
            self._key_missing_told = True
            self.info.not_decrypted = "no handshake seen"
            self._problem(out, side, ProblemKind.TLS_KEY_MISSING, "no TLS handshake seen (the capture began "
                          "after it): the records cannot be decrypted", record_no, ts_ns)

    def _stop(self, side: _Side, epoch: Epoch, why: str) -> None:
        if side.epoch is _DEAD:
            return
        _enter(side, epoch)
        side.dec = side.next_dec = None
        side.missing = None
        if self.info.not_decrypted is None:
            self.info.not_decrypted = why

    def _lost_framing(self, side: _Side, detail: str, record_no: int, ts_ns: int) -> list[TlsOut]:
        out: list[TlsOut] = []
        self._problem(out, side, ProblemKind.TLS_MALFORMED, detail + "; its later bytes are ignored",
                      record_no, ts_ns)
        self._dead(side)
        return out

    def _dead(self, side: _Side) -> None:
        self._stop(side, _DEAD, "malformed TLS records")
        side.special = True
        side.resync = None
        side.reader.reset()
        side.hs.reset()

    def _problem(self, out: list[TlsOut], side: _Side, kind: ProblemKind, detail: str, record_no: int,
                 ts_ns: int, *, once: bool = True) -> None:
        if once:
            if kind in side.causes:
                return
            side.causes.add(kind)
        out.append((side.direction, Problem(kind, detail, record_no, ts_ns)))

    # --- after a gap ---------------------------------------------------------------------------

    def _special_feed(self, side: _Side, data: bytes, record_no: int, ts_ns: int) -> list[TlsOut]:
        if side.epoch is _DEAD:
            return []
        if side.skip:
            n = min(side.skip, len(data))
            side.skip -= n
            data = data[n:]
            if side.skip:
                return []
            side.special = side.resync is not None
            return self.feed(side.direction, data, record_no, ts_ns) if data else []
        return self._resync(side, data, record_no, ts_ns)

    def _resync(self, side: _Side, data: bytes, record_no: int, ts_ns: int) -> list[TlsOut]:
        """Search the bytes after a gap for a record header the side's keys open (or, without
        keys, one whose length leads to another plausible header)."""
        rs = side.resync
        assert rs is not None
        out: list[TlsOut] = []
        buf = rs.buf
        buf += data
        decrypting = side.dec is not None and side.epoch is _APP
        pattern = _PROTECTED_CANDIDATE if decrypting else _CANDIDATE
        pos = 0
        while True:
            m = pattern.search(buf, pos)
            if m is None or rs.scanned + m.start() > RESYNC_WINDOW:
                if m is None and rs.scanned + len(buf) <= RESYNC_WINDOW:
                    keep = max(len(buf) - 2, 0)
                    rs.scanned += keep
                    del buf[:keep]
                    return out
                return self._give_up(side, out, record_no, ts_ns)
            p = m.start()
            if len(buf) - p < HEADER_LEN:
                break
            _ctype, _version, length = _HEADER.unpack_from(buf, p)
            end = p + HEADER_LEN + length
            if length > MAX_RECORD or (decrypting and HEADER_LEN + length < _MIN_PROTECTED) or length == 0:
                pos = p + 1
                continue
            if end > len(buf):
                break
            if decrypting:
                found = self._try_sequences(side, rs, bytes(buf[p:p + HEADER_LEN]),
                                            bytes(buf[p + HEADER_LEN:end]), rs.lost + rs.scanned + p)
                if found is None:
                    if rs.tries <= 0:
                        return self._give_up(side, out, record_no, ts_ns)
                    pos = p + 1
                    continue
                lost_records, opened = found
                rest = bytes(buf[end:])
                self._resynced(side, out, rs.lost + rs.scanned + p, lost_records, record_no, ts_ns)
                side.records += 1
                self.info.records += 1
                if opened[0] == APPLICATION_DATA:
                    out.append((side.direction, opened[1], record_no, ts_ns))
                    self.info.decrypted = True
                else:
                    self._content(side, opened[0], opened[1], out, record_no, ts_ns)
                if rest:
                    out += self.feed(side.direction, rest, record_no, ts_ns)
                return out
            if end + 3 <= len(buf):
                if not pattern.match(buf, end):
                    pos = p + 1
                    continue
            elif end != len(buf):
                break                                    # wait for the next header's first bytes
            rest = bytes(buf[p:])
            lost = None if rs.unknown else rs.lost + rs.scanned + p
            self._resynced(side, out, lost, None, record_no, ts_ns)
            return out + self.feed(side.direction, rest, record_no, ts_ns)
        # need more bytes: keep from the candidate on
        rs.scanned += p
        del buf[:p]
        if rs.scanned > RESYNC_WINDOW:
            return self._give_up(side, out, record_no, ts_ns)
        return out

    def _try_sequences(self, side: _Side, rs: _Resync, header: bytes, fragment: bytes,
                       lost: int) -> tuple[int, tuple[int, bytes]] | None:
        """Decrypt one candidate record at the sequence numbers the lost bytes allow, the likeliest
        first (lost bytes / the side's mean record size); (records lost, (type, plaintext))."""
        dec = side.dec
        assert dec is not None
        if rs.unknown:
            low, high, guess = 0, RESYNC_TRIES, 1
        else:
            low = -(-lost // (HEADER_LEN + MAX_RECORD))
            high = lost // _MIN_PROTECTED + 1
            mean = side.wire_bytes / side.records if side.records and side.wire_bytes else 0
            guess = round(lost / mean) if mean else low
        guess = min(max(guess, low), high)
        for step in range(2 * (high - low) + 2):
            k = guess + (step + 1) // 2 * (1 if step % 2 else -1)
            if k < low or k > high:
                continue
            if rs.tries <= 0:
                return None
            rs.tries -= 1
            opened = dec.decrypt_at(rs.seq0 + k, header, fragment)
            if opened is not None:
                return k, opened
        return None

    def _resynced(self, side: _Side, out: list[TlsOut], lost: int | None, records: int | None, record_no: int,
                  ts_ns: int) -> None:
        side.resync = None
        side.special = False
        what = f"{lost} bytes" if lost is not None else "a gap of unknown size"
        lost_records = f", {records} records lost" if records is not None else ""
        self._problem(out, side, ProblemKind.TLS_GAP, f"the {side.name} resynchronised after {what}"
                      f"{lost_records}", record_no, ts_ns, once=False)

    def _give_up(self, side: _Side, out: list[TlsOut], record_no: int, ts_ns: int) -> list[TlsOut]:
        self._problem(out, side, ProblemKind.TLS_GAP, f"could not resynchronise the {side.name} after a gap: "
                      "its later records are not read", record_no, ts_ns, once=False)
        self._stop(side, _DEAD, "gap in the TLS stream")
        side.resync = None
        side.special = True
        return out
