"""Record keys from key log secrets: the TLS 1.2 PRF key block and the TLS 1.3 traffic keys.

TLS 1.2: RFC 5246 §5 (P_hash PRF) and §6.3 (key block). TLS 1.3: RFC 8446 §7.1
(HKDF-Expand-Label), §7.2 (KeyUpdate) and §7.3 (traffic keys). The HMAC and HKDF primitives
come from `hmac` and `cryptography`; the constructions are ours.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from analyzer.tls.suites import CipherSuite

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}
_HASH_LEN = {"sha256": 32, "sha384": 48}


@dataclass(frozen=True, slots=True)
class DirectionKeys:
    """One direction's record keys. mac_key is b"" for AEAD suites; iv is the fixed IV
    (TLS 1.3: the 12-byte write IV; TLS 1.2 GCM/CCM: 4 bytes; ChaCha20: 12; CBC: b"")."""

    key: bytes
    iv: bytes
    mac_key: bytes

    def __repr__(self) -> str:  # never the key bytes
        return f"DirectionKeys(key=<{len(self.key)} bytes>, iv=<{len(self.iv)} bytes>, " \
               f"mac_key=<{len(self.mac_key)} bytes>)"


def tls12_prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """PRF(secret, label, seed) of RFC 5246 §5: P_<hash>(secret, label + seed), `length` bytes.

    Raises:
        ValueError: an unknown hash name.
    """
    if hash_name not in _HASH_LEN:
        raise ValueError(f"unknown PRF hash {hash_name!r}")
    return _p_hash(hash_name, secret, label + seed, length)


def _p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)                 # A(i) = HMAC(secret, A(i-1))
        out += hmac.digest(secret, a + seed, hash_name)
    return bytes(out[:length])


def tls10_prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """The TLS 1.0/1.1 PRF (RFC 2246 §5): P_MD5 on the secret's first half XOR P_SHA1 on its second."""
    half = (len(secret) + 1) // 2
    md5 = _p_hash("md5", secret[:half], label + seed, length)
    sha1 = _p_hash("sha1", secret[len(secret) - half:], label + seed, length)
    return (int.from_bytes(md5, "big") ^ int.from_bytes(sha1, "big")).to_bytes(length, "big")


def tls12_keys(suite: CipherSuite, master_secret: bytes, client_random: bytes,
               server_random: bytes, *, version: int = 0x0303) -> tuple[DirectionKeys, DirectionKeys]:
    """The (client write, server write) keys of a TLS 1.2 connection (RFC 5246 §6.3).

    version 0x0301/0x0302 gives TLS 1.0/1.1 keys (RFC 2246 §6.3, RFC 4346 §6.3): the MD5/SHA-1
    PRF, and in TLS 1.0 a 16-byte CBC IV per direction from the key block.
    """
    mac_len = suite.mac_len
    key_len = suite.key_len
    iv_len = suite.fixed_iv_len
    seed = server_random + client_random
    if version >= 0x0303:
        block = tls12_prf(suite.prf_hash, master_secret, b"key expansion", seed,
                          2 * (mac_len + key_len + iv_len))
    else:
        iv_len = 16 if version == 0x0301 and suite.cipher == "aes-cbc" else iv_len
        block = tls10_prf(master_secret, b"key expansion", seed, 2 * (mac_len + key_len + iv_len))
    o = 2 * mac_len
    k = o + 2 * key_len
    client = DirectionKeys(block[o:o + key_len], block[k:k + iv_len], block[:mac_len])
    server = DirectionKeys(block[o + key_len:k], block[k + iv_len:k + 2 * iv_len], block[mac_len:o])
    return client, server


def hkdf_expand_label(hash_name: str, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """HKDF-Expand-Label of RFC 8446 §7.1 ("tls13 " is prefixed to `label` here).

    Raises:
        ValueError: an unknown hash name, or a label/context/length the HkdfLabel cannot encode.
    """
    algorithm = _HASHES.get(hash_name)
    if algorithm is None:
        raise ValueError(f"unknown HKDF hash {hash_name!r}")
    full = b"tls13 " + label
    if len(full) > 255 or len(context) > 255 or not 0 < length <= 0xFFFF:
        raise ValueError("HkdfLabel out of range")
    info = struct.pack("!HB", length, len(full)) + full + bytes((len(context),)) + context
    return HKDFExpand(algorithm(), length, info).derive(secret)


def tls13_keys(suite: CipherSuite, traffic_secret: bytes) -> DirectionKeys:
    """The write key and IV of one TLS 1.3 traffic secret (RFC 8446 §7.3)."""
    h = suite.prf_hash
    return DirectionKeys(hkdf_expand_label(h, traffic_secret, b"key", b"", suite.key_len),
                         hkdf_expand_label(h, traffic_secret, b"iv", b"", suite.fixed_iv_len), b"")


def tls13_next_secret(suite: CipherSuite, traffic_secret: bytes) -> bytes:
    """application_traffic_secret_N+1 after a KeyUpdate (RFC 8446 §7.2)."""
    h = suite.prf_hash
    return hkdf_expand_label(h, traffic_secret, b"traffic upd", b"", _HASH_LEN[h])
