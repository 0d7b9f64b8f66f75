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
    seed = label + seed
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)                 # A(i) = HMAC(secret, A(i-1))
        out += hmac.digest(secret, a + seed, hash_name)
    return bytes(out[:length])


def tls12_keys(suite: CipherSuite, master_secret: bytes, client_random: bytes,
               server_random: bytes) -> tuple[DirectionKeys, DirectionKeys]:
    """The (client write, server write) keys of a TLS 1.2 connection (RFC 5246 §6.3)."""
    mac_len = suite.mac_len
    key_len = suite.key_len
    iv_len = suite.fixed_iv_len
    block = tls12_prf(suite.prf_hash, master_secret, b"key expansion", server_random + client_random,
                      2 * (mac_len + key_len + iv_len))
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
