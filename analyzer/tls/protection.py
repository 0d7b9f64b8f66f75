"""Record protection: one direction's TLS records decrypted (and, for tests, encrypted).

TLS 1.3 (RFC 8446 §5.2-5.4): AEAD with the write IV XOR the sequence number, the record header
as additional data, the inner content type after the zero padding. TLS 1.2 AEAD: RFC 5288
(GCM), RFC 6655 (CCM: 4-byte fixed + 8-byte explicit nonce), RFC 7905 (ChaCha20-Poly1305: the
TLS 1.3 nonce), additional data seq_num + type + version + plaintext length. CBC (RFC 5246
§6.2.3.2, RFC 4346, RFC 2246 for TLS 1.0's chained IV): MAC-then-encrypt, or encrypt-then-MAC
(RFC 7366). Constant-time checks do not matter here: we read captures, we hold no secret
an attacker could probe.

Speed: one AEAD object per direction, one call per record. CBC uses one long-lived decryptor
per direction: fed a TLS 1.1+ record whole (explicit IV block first), CBC's chaining makes the
first output block garbage and every later block right, so no cipher object is made per record;
fed TLS 1.0 records, it carries the chained IV by itself.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hmac import HMAC

from analyzer.tls.keys import DirectionKeys
from analyzer.tls.suites import (
    AES_CBC,
    AES_CCM,
    AES_CCM_8,
    AES_GCM,
    CHACHA20_POLY1305,
    CipherSuite,
)

TLS10, TLS11, TLS12, TLS13 = 0x0301, 0x0302, 0x0303, 0x0304
APPLICATION_DATA = 23
#: RFC 5246 §6.2.3: TLSCiphertext.length <= 2^14 + 2048 (RFC 8446 allows less: 2^14 + 256)
MAX_FRAGMENT = (1 << 14) + 2048
_BLOCK = 16

_HEADER = struct.Struct("!BHH")
_AAD12 = struct.Struct("!Q3sH")               # seq_num, type + version (from the header), length
_PADS = [bytes((p,)) * (p + 1) for p in range(256)]   # CBC padding: p+1 bytes of value p

_MAC_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384}

AeadCipher = AESGCM | ChaCha20Poly1305 | AESCCM


class DecryptError(Exception):
    """A record that did not decrypt: authentication failed, bad padding, or too short.
    The message says which, with the lengths; it never holds key bytes."""


def supports(suite: CipherSuite, version: int) -> bool:
    """Whether records of this suite under this negotiated version can be decrypted here."""
    if suite.tls13:
        return version == TLS13
    if suite.cipher == AES_CBC:
        return TLS10 <= version <= TLS12 and (version == TLS12 or suite.mac == "sha1")
    return version == TLS12


class _Protection:
    """What the decryptor and encryptor share: the suite's mode, keys and nonce construction."""

    def __init__(self, suite: CipherSuite, keys: DirectionKeys, *, version: int,
                 encrypt_then_mac: bool = False, seq: int = 0) -> None:
        if not supports(suite, version):
            raise ValueError(f"{suite.name} cannot be used with version 0x{version:04X}")
        self.seq = seq
        self.suite = suite
        self.version = version
        self._tls13 = suite.tls13
        self._tag = suite.tag_len
        self._iv_int = int.from_bytes(keys.iv, "big")
        self._fixed_iv = keys.iv
        self._xor_nonce = suite.cipher == CHACHA20_POLY1305 or suite.tls13
        self._aead: AeadCipher | None = None
        self._cbc_key = b""
        self._mac_base = HMAC(keys.mac_key, _MAC_HASHES[suite.mac]()) if suite.mac else None
        self._mac_len = suite.mac_len
        self._etm = encrypt_then_mac
        self._explicit_iv = version >= TLS11
        cipher = suite.cipher
        if cipher == AES_GCM:
            self._aead = AESGCM(keys.key)
        elif cipher == CHACHA20_POLY1305:
            self._aead = ChaCha20Poly1305(keys.key)
        elif cipher in (AES_CCM, AES_CCM_8):
            self._aead = AESCCM(keys.key, tag_length=self._tag)
        else:
            self._cbc_key = keys.key
            if not self._explicit_iv and len(keys.iv) != _BLOCK:
                raise ValueError("TLS 1.0 CBC needs the 16-byte IV of the key block")

    def _nonce(self, seq: int, fragment: bytes | memoryview) -> bytes:
        if self._xor_nonce:
            return (self._iv_int ^ seq).to_bytes(12, "big")
        return self._fixed_iv + bytes(fragment[:8])

    def _cbc(self, iv: bytes, *, encrypt: bool) -> CipherContext:
        cipher = Cipher(algorithms.AES(self._cbc_key), modes.CBC(iv))
        return cipher.encryptor() if encrypt else cipher.decryptor()

    def _hmac(self, seq: int, header: bytes, data: bytes | memoryview) -> bytes:
        # a copy of an HMAC keyed once: 3x faster than hmac.digest, which looks the hash up per call
        assert self._mac_base is not None
        mac = self._mac_base.copy()
        mac.update(_AAD12.pack(seq, bytes(header[:3]), len(data)))
        mac.update(data)
        return mac.finalize()


class RecordDecryptor(_Protection):
    """One direction's read state: suite + keys + sequence number.

    Raises:
        ValueError: at construction, a suite/version pair `supports` refuses.
    """

    def __init__(self, suite: CipherSuite, keys: DirectionKeys, *, version: int,
                 encrypt_then_mac: bool = False, seq: int = 0) -> None:
        super().__init__(suite, keys, version=version, encrypt_then_mac=encrypt_then_mac, seq=seq)
        self._chain_iv = keys.iv if suite.cipher == AES_CBC and not self._explicit_iv else bytes(_BLOCK)
        self._decryptor = self._cbc(self._chain_iv, encrypt=False) if self._cbc_key else None
        self._opener: Callable[[int, bytes, bytes | memoryview], tuple[int, bytes]]
        if suite.tls13:
            self._opener, self._min_len = self._open_tls13, self._tag + 1
        elif self._aead is not None:
            self._opener, self._min_len = self._open_aead12, self._tag + (0 if self._xor_nonce else 8)
        else:
            # MtE: the IV, then whole blocks holding at least the MAC and a padding byte; EtM: the
            # IV, one block, the MAC
            iv_len = _BLOCK if self._explicit_iv else 0
            least = _BLOCK + self._mac_len if encrypt_then_mac else -(-(self._mac_len + 1) // _BLOCK) * _BLOCK
            self._opener, self._min_len = self._open_cbc, iv_len + least

    def decrypt(self, header: bytes, fragment: bytes | memoryview) -> tuple[int, bytes]:
        """Decrypts one record at the current sequence number.

        Args:
            header: the 5-byte record header as on the wire.
            fragment: the record's body (header[3:5] bytes).
        Returns:
            (content type, plaintext): TLS 1.3's inner type with its padding stripped; else header[0].
        Raises:
            DecryptError: nothing changed (seq stays; a TLS 1.0 IV chain is restored).
        """
        result = self._opener(self.seq, header, fragment)
        self.seq += 1
        return result

    def decrypt_at(self, seq: int, header: bytes, fragment: bytes | memoryview) -> tuple[int, bytes] | None:
        """`decrypt` at sequence number `seq`, None when it fails; on success self.seq = seq + 1."""
        try:
            result = self._opener(seq, header, fragment)
        except DecryptError:
            return None
        self.seq = seq + 1
        return result

    def _check_length(self, size: int) -> None:
        if size > MAX_FRAGMENT:
            raise DecryptError(f"record too long: expected<={MAX_FRAGMENT}, found={size}")
        if size < self._min_len:
            raise DecryptError(f"record too short: expected>={self._min_len}, found={size}")

    def _open_tls13(self, seq: int, header: bytes, fragment: bytes | memoryview) -> tuple[int, bytes]:
        size = len(fragment)
        if not self._min_len <= size <= MAX_FRAGMENT:
            self._check_length(size)
        aead = self._aead
        assert aead is not None
        try:
            plain = aead.decrypt((self._iv_int ^ seq).to_bytes(12, "big"), fragment, header)
        except InvalidTag:
            raise DecryptError(f"authentication failed (record of {size} bytes, seq {seq})") from None
        if plain[-1]:                                      # no padding: the common case
            return plain[-1], plain[:-1]
        end = len(plain.rstrip(b"\x00"))
        if not end:
            raise DecryptError(f"TLS 1.3 record of {size} bytes has no inner content type (all zeros)")
        return plain[end - 1], plain[:end - 1]

    def _open_aead12(self, seq: int, header: bytes, fragment: bytes | memoryview) -> tuple[int, bytes]:
        size = len(fragment)
        if not self._min_len <= size <= MAX_FRAGMENT:
            self._check_length(size)
        aead = self._aead
        assert aead is not None
        if self._xor_nonce:                                # ChaCha20-Poly1305: no explicit nonce
            nonce, explicit = (self._iv_int ^ seq).to_bytes(12, "big"), 0
        else:
            nonce, explicit = self._fixed_iv + bytes(fragment[:8]), 8
            fragment = fragment[8:]
        aad = _AAD12.pack(seq, bytes(header[:3]), size - explicit - self._tag)
        try:
            return header[0], aead.decrypt(nonce, fragment, aad)
        except InvalidTag:
            raise DecryptError(f"authentication failed (record of {size} bytes, seq {seq})") from None

    def _open_cbc(self, seq: int, header: bytes, fragment: bytes | memoryview) -> tuple[int, bytes]:
        size = len(fragment)
        iv_len = _BLOCK if self._explicit_iv else 0
        mac_len = self._mac_len
        enc_len = size - mac_len if self._etm else size
        if not self._min_len <= size <= MAX_FRAGMENT or enc_len % _BLOCK:
            self._check_length(size)
            raise DecryptError(f"bad CBC record length: expected a multiple of {_BLOCK}, found={enc_len}")
        if self._etm:
            if not hmac.compare_digest(self._hmac(seq, header, fragment[:enc_len]), fragment[enc_len:]):
                raise DecryptError(f"bad MAC (encrypt-then-MAC record of {size} bytes, seq {seq})")
            fragment = fragment[:enc_len]
        decryptor = self._decryptor
        assert decryptor is not None
        out = decryptor.update(fragment)
        chain_before = self._chain_iv
        if not self._explicit_iv:
            self._chain_iv = bytes(fragment[-_BLOCK:])
        pad = out[-1]
        end = len(out) - pad - 1
        content_end = end if self._etm else end - mac_len
        try:
            if content_end < iv_len or out[end:] != _PADS[pad]:
                raise DecryptError(f"bad CBC padding (record of {size} bytes, seq {seq})")
            content = out[iv_len:content_end]
            if not self._etm and not hmac.compare_digest(self._hmac(seq, header, content),
                                                         out[content_end:end]):
                raise DecryptError(f"bad MAC (record of {size} bytes, seq {seq})")
        except DecryptError:
            if not self._explicit_iv:                     # put the TLS 1.0 IV chain back
                self._chain_iv = chain_before
                self._decryptor = self._cbc(chain_before, encrypt=False)
            raise
        return header[0], content


class RecordEncryptor(_Protection):
    """The mirror of RecordDecryptor, for tests and the benchmark's capture generator."""

    def __init__(self, suite: CipherSuite, keys: DirectionKeys, *, version: int,
                 encrypt_then_mac: bool = False, seq: int = 0) -> None:
        super().__init__(suite, keys, version=version, encrypt_then_mac=encrypt_then_mac, seq=seq)
        self._encryptor = self._cbc(keys.iv if not self._explicit_iv else bytes(_BLOCK), encrypt=True) \
            if self._cbc_key else None

    def encrypt(self, content_type: int, plaintext: bytes, *, padding: int = 0) -> bytes:
        """A whole record (header included) carrying `plaintext` as `content_type`.

        TLS 1.3: outer type 23, version 0x0303, the inner type and `padding` zero bytes appended.
        TLS 1.2 GCM/CCM: the sequence number as explicit nonce. CBC: a random explicit IV
        (TLS 1.1+), the MAC, and minimal padding plus `padding` extra blocks' worth (<= 255).
        """
        seq = self.seq
        self.seq += 1
        aead = self._aead
        if aead is not None and self._tls13:
            inner = plaintext + bytes((content_type,)) + bytes(padding)
            header = _HEADER.pack(APPLICATION_DATA, TLS12, len(inner) + self._tag)
            return header + aead.encrypt(self._nonce(seq, b""), inner, header)
        version = self.version
        if aead is not None:
            explicit = b"" if self._xor_nonce else seq.to_bytes(8, "big")
            aad = _AAD12.pack(seq, _HEADER.pack(content_type, version, 0)[:3], len(plaintext))
            body = explicit + aead.encrypt(self._nonce(seq, explicit), plaintext, aad)
            return _HEADER.pack(content_type, version, len(body)) + body
        encryptor = self._encryptor
        assert encryptor is not None
        head3 = _HEADER.pack(content_type, version, 0)
        first = os.urandom(_BLOCK) if self._explicit_iv else b""
        data = plaintext if self._etm else plaintext + self._hmac(seq, head3, plaintext)
        pad = _BLOCK - 1 - len(data) % _BLOCK + _BLOCK * padding
        if pad > 255:
            raise ValueError("CBC padding over 255 bytes")
        body = encryptor.update(first + data + _PADS[pad])
        if self._etm:
            body += self._hmac(seq, head3, body)
        return _HEADER.pack(content_type, version, len(body)) + body
