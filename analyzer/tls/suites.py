"""TLS cipher suites: the ones this package decrypts (SUITES), and names for many more.

Names are the IANA registry's (https://www.iana.org/assignments/tls-parameters, "TLS Cipher
Suites"). Record protection parameters: RFC 8446 §5.2-5.3 (TLS 1.3), RFC 5288 (AES-GCM),
RFC 7905 (ChaCha20-Poly1305), RFC 6655 / RFC 7251 (AES-CCM), RFC 5246 §6.2.3 (CBC).
"""

from __future__ import annotations

from dataclasses import dataclass

AES_GCM = "aes-gcm"
CHACHA20_POLY1305 = "chacha20-poly1305"
AES_CCM = "aes-ccm"
AES_CCM_8 = "aes-ccm-8"
AES_CBC = "aes-cbc"

#: cipher -> authentication tag length of the AEADs
TAG_LEN = {AES_GCM: 16, CHACHA20_POLY1305: 16, AES_CCM: 16, AES_CCM_8: 8}
#: HMAC hash -> output length (CBC suites)
MAC_LEN = {"sha1": 20, "sha256": 32, "sha384": 48}


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """What record protection and the key schedule need to know about one suite.

    key_len, fixed_iv_len, record_iv_len follow RFC 5246 §6.3 / RFC 5288 §3: a TLS 1.2 AEAD
    nonce is the fixed IV from the key block plus record_iv_len explicit bytes in each record
    (GCM, CCM: 4 + 8; ChaCha20: 12 + 0, XORed with the sequence number as in TLS 1.3). A CBC
    suite has no fixed IV and a 16-byte explicit IV per record (TLS 1.1 and later).
    """

    code: int
    name: str
    tls13: bool
    cipher: str
    key_len: int
    fixed_iv_len: int
    record_iv_len: int
    mac: str | None
    mac_len: int
    prf_hash: str

    @property
    def aead(self) -> bool:
        return self.mac is None

    @property
    def tag_len(self) -> int:
        """The AEAD tag length (0 for CBC suites)."""
        return TAG_LEN.get(self.cipher, 0)


def _tls13(code: int, name: str, cipher: str, key_len: int, prf_hash: str) -> CipherSuite:
    return CipherSuite(code, name, True, cipher, key_len, 12, 0, None, 0, prf_hash)


def _aead12(code: int, name: str) -> CipherSuite:
    """A TLS 1.2 AEAD suite, its parameters read from its IANA name."""
    if "CHACHA20_POLY1305" in name:
        return CipherSuite(code, name, False, CHACHA20_POLY1305, 32, 12, 0, None, 0, "sha256")
    key_len = 32 if "AES_256" in name else 16
    if "GCM" in name:
        cipher = AES_GCM
    else:
        cipher = AES_CCM_8 if name.endswith("CCM_8") or "CCM_8_" in name else AES_CCM
    prf_hash = "sha384" if name.endswith("SHA384") else "sha256"
    return CipherSuite(code, name, False, cipher, key_len, 4, 8, None, 0, prf_hash)


def _cbc12(code: int, name: str) -> CipherSuite:
    """A TLS 1.2 AES-CBC suite with HMAC, its parameters read from its IANA name."""
    key_len = 32 if "AES_256" in name else 16
    mac = name.rsplit("_", 1)[1].lower()          # SHA -> sha1, SHA256, SHA384
    mac = "sha1" if mac == "sha" else mac
    prf_hash = "sha384" if mac == "sha384" else "sha256"
    return CipherSuite(code, name, False, AES_CBC, key_len, 0, 16, mac, MAC_LEN[mac], prf_hash)


_TLS13 = (
    _tls13(0x1301, "TLS_AES_128_GCM_SHA256", AES_GCM, 16, "sha256"),
    _tls13(0x1302, "TLS_AES_256_GCM_SHA384", AES_GCM, 32, "sha384"),
    _tls13(0x1303, "TLS_CHACHA20_POLY1305_SHA256", CHACHA20_POLY1305, 32, "sha256"),
    _tls13(0x1304, "TLS_AES_128_CCM_SHA256", AES_CCM, 16, "sha256"),
    _tls13(0x1305, "TLS_AES_128_CCM_8_SHA256", AES_CCM_8, 16, "sha256"),
)

_AEAD12 = {
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00A2: "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256",
    0x00A3: "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384",
    0x00A8: "TLS_PSK_WITH_AES_128_GCM_SHA256",
    0x00A9: "TLS_PSK_WITH_AES_256_GCM_SHA384",
    0x00AA: "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256",
    0x00AB: "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384",
    0x00AC: "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256",
    0x00AD: "TLS_RSA_PSK_WITH_AES_256_GCM_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xC09C: "TLS_RSA_WITH_AES_128_CCM",
    0xC09D: "TLS_RSA_WITH_AES_256_CCM",
    0xC09E: "TLS_DHE_RSA_WITH_AES_128_CCM",
    0xC09F: "TLS_DHE_RSA_WITH_AES_256_CCM",
    0xC0A0: "TLS_RSA_WITH_AES_128_CCM_8",
    0xC0A1: "TLS_RSA_WITH_AES_256_CCM_8",
    0xC0A2: "TLS_DHE_RSA_WITH_AES_128_CCM_8",
    0xC0A3: "TLS_DHE_RSA_WITH_AES_256_CCM_8",
    0xC0A4: "TLS_PSK_WITH_AES_128_CCM",
    0xC0A5: "TLS_PSK_WITH_AES_256_CCM",
    0xC0A6: "TLS_DHE_PSK_WITH_AES_128_CCM",
    0xC0A7: "TLS_DHE_PSK_WITH_AES_256_CCM",
    0xC0A8: "TLS_PSK_WITH_AES_128_CCM_8",
    0xC0A9: "TLS_PSK_WITH_AES_256_CCM_8",
    0xC0AA: "TLS_PSK_DHE_WITH_AES_128_CCM_8",
    0xC0AB: "TLS_PSK_DHE_WITH_AES_256_CCM_8",
    0xC0AC: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
    0xC0AD: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
    0xC0AE: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
    0xC0AF: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAB: "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAC: "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAD: "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAE: "TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xD001: "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256",
    0xD002: "TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384",
    0xD003: "TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256",
    0xD005: "TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256",
}

_CBC12 = {
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0032: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0038: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0040: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006A: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x008C: "TLS_PSK_WITH_AES_128_CBC_SHA",
    0x008D: "TLS_PSK_WITH_AES_256_CBC_SHA",
    0x00AE: "TLS_PSK_WITH_AES_128_CBC_SHA256",
    0x00AF: "TLS_PSK_WITH_AES_256_CBC_SHA384",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC035: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA",
    0xC036: "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA",
    0xC037: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
    0xC038: "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384",
}

#: Every suite this package can decrypt, by its code.
SUITES: dict[int, CipherSuite] = {
    **{s.code: s for s in _TLS13},
    **{code: _aead12(code, name) for code, name in _AEAD12.items()},
    **{code: _cbc12(code, name) for code, name in _CBC12.items()},
}

#: Suites seen in the wild that we name but do not decrypt (RC4, 3DES, CAMELLIA, ARIA, NULL, SEED...).
_OTHER_NAMES = {
    0x0000: "TLS_NULL_WITH_NULL_NULL",
    0x0001: "TLS_RSA_WITH_NULL_MD5",
    0x0002: "TLS_RSA_WITH_NULL_SHA",
    0x0004: "TLS_RSA_WITH_RC4_128_MD5",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0013: "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA",
    0x0016: "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0x003B: "TLS_RSA_WITH_NULL_SHA256",
    0x0041: "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
    0x0045: "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
    0x0084: "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
    0x0088: "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    0x008A: "TLS_PSK_WITH_RC4_128_SHA",
    0x008B: "TLS_PSK_WITH_3DES_EDE_CBC_SHA",
    0x0096: "TLS_RSA_WITH_SEED_CBC_SHA",
    0x00BA: "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    0x00BE: "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    0x00C0: "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x5600: "TLS_FALLBACK_SCSV",
    0xC006: "TLS_ECDHE_ECDSA_WITH_NULL_SHA",
    0xC007: "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    0xC008: "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA",
    0xC010: "TLS_ECDHE_RSA_WITH_NULL_SHA",
    0xC011: "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC072: "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256",
    0xC073: "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384",
    0xC076: "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    0xC077: "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384",
    0xC03C: "TLS_RSA_WITH_ARIA_128_CBC_SHA256",
    0xC03D: "TLS_RSA_WITH_ARIA_256_CBC_SHA384",
    0xC048: "TLS_ECDHE_ECDSA_WITH_ARIA_128_CBC_SHA256",
    0xC049: "TLS_ECDHE_ECDSA_WITH_ARIA_256_CBC_SHA384",
    0xC04C: "TLS_ECDHE_RSA_WITH_ARIA_128_CBC_SHA256",
    0xC04D: "TLS_ECDHE_RSA_WITH_ARIA_256_CBC_SHA384",
    0xC050: "TLS_RSA_WITH_ARIA_128_GCM_SHA256",
    0xC051: "TLS_RSA_WITH_ARIA_256_GCM_SHA384",
    0xC05C: "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256",
    0xC05D: "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384",
    0xC060: "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256",
    0xC061: "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384",
    0xC086: "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_GCM_SHA256",
    0xC087: "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_GCM_SHA384",
    0xC08A: "TLS_ECDHE_RSA_WITH_CAMELLIA_128_GCM_SHA256",
    0xC08B: "TLS_ECDHE_RSA_WITH_CAMELLIA_256_GCM_SHA384",
}

_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


def suite_name(code: int) -> str:
    """The IANA name of a cipher suite, or "0x%04X" for one not in our tables (GREASE included)."""
    suite = SUITES.get(code)
    if suite is not None:
        return suite.name
    return _OTHER_NAMES.get(code) or f"0x{code:04X}"


def version_name(version: int) -> str:
    """"TLS 1.3" for 0x0304 ... "SSL 3.0" for 0x0300; other values as "0x%04X"."""
    return _VERSIONS.get(version) or f"0x{version:04X}"
