"""analyzer.tls suites, keys and protection against published vectors and round trips.

Vectors: RFC 8448 §3 "Simple 1-RTT Handshake" (TLS_AES_128_GCM_SHA256), and the TLS 1.2 PRF
(P_SHA256) vector posted to the IETF TLS list ("TLS 1.2 Test vectors", 2010), reproduced in the
test suites of Botan, mbedTLS and wolfSSL.
"""

from __future__ import annotations

import pytest

from analyzer.tls.keys import (
    DirectionKeys,
    hkdf_expand_label,
    tls12_keys,
    tls12_prf,
    tls13_keys,
    tls13_next_secret,
)
from analyzer.tls.suites import SUITES, suite_name, version_name


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- RFC 8448 §3 -------------------------------------------------------------------------------
C_HS_SECRET = h("b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e"
                "27 a5 5a 21")
S_HS_SECRET = h("b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59"
                "d3 91 ad 38")
C_AP_SECRET = h("9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7"
                "c1 75 04 a5")
S_AP_SECRET = h("a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f"
                "cb 63 16 43")
S_HS_KEY = h("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
S_HS_IV = h("5d 31 3e b2 67 12 76 ee 13 00 0b 30")
C_HS_KEY = h("db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01")
C_HS_IV = h("5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f")
C_AP_KEY = h("17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51")
C_AP_IV = h("5b 78 92 3d ee 08 57 90 33 e5 23 d9")
S_AP_KEY = h("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56")
S_AP_IV = h("cf 78 2b 88 dd 83 54 9a ad f1 e9 84")
S_FINISHED_KEY = h("00 8d 3b 66 f8 16 ea 55 9f 96 b5 37 e8 85 c3 1f c0 68 bf 49 2c 65 2f 01 f2 88 a1 d8"
                   "cd c1 9f c8")
# {server} derive secret "tls13 c ap traffic": PRK (the master secret), hash (the transcript)
MASTER = h("18 df 06 84 3d 13 a0 8b f2 a4 49 84 4c 5f 8a 47 80 01 bc 4d 4c 62 79 84 d5 a4 1d a8 d0 40"
           "29 19")
TRANSCRIPT = h("96 08 10 2a 0f 1c cc 6d b6 25 0b 7b 7e 41 7b 1a 00 0e aa da 3d aa e4 77 7a 76 86 c9 ff"
               "83 df 13")

AES128GCM = SUITES[0x1301]


@pytest.mark.parametrize(("secret", "key", "iv"), [
    (S_HS_SECRET, S_HS_KEY, S_HS_IV),
    (C_HS_SECRET, C_HS_KEY, C_HS_IV),
    (C_AP_SECRET, C_AP_KEY, C_AP_IV),
    (S_AP_SECRET, S_AP_KEY, S_AP_IV),
], ids=["server-hs", "client-hs", "client-ap", "server-ap"])
def test_rfc8448_traffic_keys(secret, key, iv):
    assert tls13_keys(AES128GCM, secret) == DirectionKeys(key, iv, b"")


def test_rfc8448_expand_label_with_context_and_finished_key():
    assert hkdf_expand_label("sha256", MASTER, b"c ap traffic", TRANSCRIPT, 32) == C_AP_SECRET
    assert hkdf_expand_label("sha256", MASTER, b"s ap traffic", TRANSCRIPT, 32) == S_AP_SECRET
    assert hkdf_expand_label("sha256", S_HS_SECRET, b"finished", b"", 32) == S_FINISHED_KEY


def test_key_update_secret_is_expand_label_traffic_upd():
    # RFC 8446 §7.2: application_traffic_secret_N+1 =
    #     HKDF-Expand-Label(application_traffic_secret_N, "traffic upd", "", Hash.length)
    nxt = tls13_next_secret(AES128GCM, C_AP_SECRET)
    assert nxt == hkdf_expand_label("sha256", C_AP_SECRET, b"traffic upd", b"", 32)
    assert len(nxt) == 32 and nxt != C_AP_SECRET
    assert len(tls13_next_secret(SUITES[0x1302], bytes(48))) == 48


def test_expand_label_rejects_what_hkdflabel_cannot_encode():
    with pytest.raises(ValueError):
        hkdf_expand_label("md5", MASTER, b"key", b"", 16)
    with pytest.raises(ValueError):
        hkdf_expand_label("sha256", MASTER, b"k" * 250, b"", 16)
    with pytest.raises(ValueError):
        hkdf_expand_label("sha256", MASTER, b"key", b"c" * 256, 16)


# --- TLS 1.2 PRF ----------------------------------------------------------------------------------
PRF_OUT = h("e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e"
            "db 5a 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97"
            "c0 56 4b ab 4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e"
            "5a 51 10 ff f7 01 87 34 7b 66")


def test_tls12_prf_sha256_published_vector():
    secret = h("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35")
    seed = h("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c")
    assert tls12_prf("sha256", secret, b"test label", seed, 100) == PRF_OUT
    assert tls12_prf("sha256", secret, b"test label", seed, 7) == PRF_OUT[:7]
    with pytest.raises(ValueError):
        tls12_prf("md5", secret, b"test label", seed, 10)


def test_tls12_key_block_layout():
    """RFC 5246 §6.3: client MAC, server MAC, client key, server key, client IV, server IV."""
    ms, cr, sr = bytes(range(48)), b"c" * 32, b"s" * 32
    for code, (mac, key, iv) in {0xC02F: (0, 16, 4), 0xC030: (0, 32, 4), 0xCCA8: (0, 32, 12),
                                 0xC013: (20, 16, 0), 0xC027: (32, 16, 0), 0xC028: (48, 32, 0)}.items():
        suite = SUITES[code]
        block = tls12_prf(suite.prf_hash, ms, b"key expansion", sr + cr, 2 * (mac + key + iv))
        client, server = tls12_keys(suite, ms, cr, sr)
        assert client.mac_key + server.mac_key + client.key + server.key + client.iv + server.iv == block
        assert (len(client.mac_key), len(client.key), len(client.iv)) == (mac, key, iv)
    assert SUITES[0xC030].prf_hash == "sha384" and SUITES[0xC02F].prf_hash == "sha256"


# --- suites -------------------------------------------------------------------------------------
def test_suite_table():
    assert {s.name for s in SUITES.values() if s.tls13} == {
        "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"}
    s = SUITES[0xC02F]
    assert (s.cipher, s.key_len, s.fixed_iv_len, s.record_iv_len, s.mac, s.tag_len) == \
        ("aes-gcm", 16, 4, 8, None, 16)
    s = SUITES[0xCCA9]
    assert (s.name, s.cipher, s.fixed_iv_len, s.record_iv_len) == \
        ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "chacha20-poly1305", 12, 0)
    s = SUITES[0xC014]
    assert (s.cipher, s.key_len, s.mac, s.mac_len, s.prf_hash, s.record_iv_len) == \
        ("aes-cbc", 32, "sha1", 20, "sha256", 16)
    s = SUITES[0xC024]
    assert (s.mac, s.mac_len, s.prf_hash) == ("sha384", 48, "sha384")
    assert (SUITES[0xC0AE].cipher, SUITES[0xC0AE].tag_len) == ("aes-ccm-8", 8)
    assert (SUITES[0xD003].cipher, SUITES[0xC09D].cipher, SUITES[0xC09D].key_len) == \
        ("aes-ccm-8", "aes-ccm", 32)
    for code, suite in SUITES.items():
        assert suite.code == code and suite_name(code) == suite.name


def test_names():
    assert suite_name(0x1302) == "TLS_AES_256_GCM_SHA384"
    assert suite_name(0x000A) == "TLS_RSA_WITH_3DES_EDE_CBC_SHA"          # named, not decryptable
    assert 0x000A not in SUITES
    assert suite_name(0x0A0A) == "0x0A0A"                                 # GREASE
    assert [version_name(v) for v in (0x0304, 0x0303, 0x0302, 0x0301, 0x0300)] == \
        ["TLS 1.3", "TLS 1.2", "TLS 1.1", "TLS 1.0", "SSL 3.0"]
    assert version_name(0x7F1C) == "0x7F1C"
