"""analyzer.tls suites, keys and protection against published vectors and round trips.

Vectors: RFC 8448 §3 "Simple 1-RTT Handshake" (TLS_AES_128_GCM_SHA256), and the TLS 1.2 PRF
(P_SHA256) vector posted to the IETF TLS list ("TLS 1.2 Test vectors", 2010), reproduced in the
test suites of Botan, mbedTLS and wolfSSL.
"""

from __future__ import annotations

import hmac
import shutil
import struct
import subprocess

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.tls.keylog import KeyLog
from analyzer.tls.keys import (
    DirectionKeys,
    hkdf_expand_label,
    tls10_prf,
    tls12_keys,
    tls12_prf,
    tls13_keys,
    tls13_next_secret,
)
from analyzer.tls.protection import (
    MAX_FRAGMENT,
    DecryptError,
    RecordDecryptor,
    RecordEncryptor,
    supports,
)
from analyzer.tls.suites import SUITES, suite_name, version_name
from tests.pcapgen import Conversation, write_pcap
from tests.tls_loopback import run_in_subprocess, run_session


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


def test_tls10_prf_published_vector():
    """The TLS 1.0 PRF (MD5 XOR SHA-1) vector of the same mailing-list thread."""
    out = tls10_prf(b"\xab" * 48, b"PRF Testvector", b"\xcd" * 64, 104)
    assert out == h("d3d4d1e349b5d515044666d51de32bab258cb521b6b053463e354832fd976754443bcf9a296519bc"
                    "289abcbc1187e4ebd31e602353776c408aafb74cbc85eff69255f9788faa184cbb957a9819d84a5d"
                    "7eb006eb459d3ae8de9810454b8b2d8f1afbc655a8c9a013")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
@pytest.mark.parametrize("digest", ["sha256", "sha384", "md5-sha1"])
def test_prfs_agree_with_openssl_kdf(digest):
    """`openssl kdf ... TLS1-PRF` as an independent reference (no published SHA-384 vector)."""
    secret, seed = bytes(range(48)), b"\x07" * 64
    ours = (tls10_prf(secret, b"key expansion", seed, 200) if digest == "md5-sha1"
            else tls12_prf(digest, secret, b"key expansion", seed, 200))
    out = subprocess.run(["openssl", "kdf", "-keylen", "200", "-kdfopt", f"digest:{digest.upper()}",
                          "-kdfopt", f"hexsecret:{secret.hex()}", "-kdfopt", "seed:key expansion",
                          "-kdfopt", f"hexseed:{seed.hex()}", "TLS1-PRF"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert bytes.fromhex(out.strip().replace(":", "")) == ours


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


# --- protection: RFC 8448 §3 records ------------------------------------------------------------

# {server} send handshake record: complete record (679 octets): EncryptedExtensions, Certificate,
# CertificateVerify and Finished under the server handshake keys
S_HS_RECORD = h("""
17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3 5e df
78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca 07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78 b1 11
b4 29 ba 91 91 cd 05 d2 a3 89 28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b d9 ae fb
0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79 02 07 16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9 d7 47 76 09
ae e6 e1 22 a4 cf 51 42 73 25 25 0c 7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e d6 5b 0e 3c dd
0c ba e8 bf 2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92 8d 80 98 10 e4 b7
ed 1a 8f d9 91 f0 6a a6 24 82 04 79 7e 36 a6 a7 3b 70 a2 55 9c 09 ea d6 86 94 5b a2 46 ab 66 e5 ed
d8 04 4b 4c 6d e3 fc f2 a8 94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68 45 96 c9 60 bd 59 6e ea
52 0a 56 a8 d6 50 f5 63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f 44 15 cf 95 38 d5 1a 20 0c
27 03 42 72 96 8a 26 4e d6 54 0c 84 83 8d 89 f7 2c 24 46 1a ad 6d 26 f5 9e ca ba 9a cb bb 31 7b 66
d9 02 f4 f2 92 a3 6a c1 b6 39 c6 37 ce 34 31 17 b6 59 62 22 45 31 7b 49 ee da 0c 62 58 f1 00 d7 d9
61 ff b1 38 64 7e 92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e 1b 7a 6c 71 78 af 36 87 90 18 e3 f2
52 10 7f 24 3d 24 3d c7 33 9d 56 84 c8 b0 37 8b f3 02 44 da 8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b
48 05 2c f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4 61 e6 6f 99 88 2b d8 9f c5 08 00 be cc a6
2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be 5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69
18 a3 96 fa 48 a1 81 d6 b6 fa 4f 9d 62 d5 13 af bb 99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb
56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59 77 b7 c7 a6 99 9b bf 10 dc 35 ae 69 f5 51 56 14 63
6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38 eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31
7f c9 fa 66 a7 3f 60 f0 50 4d e9 3b 5b 84 5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78 40 16 e4
b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5 d2 af 93 98 28 fd 4a e3 79 4e 44 f9 4d f5 a6 31 ed e4 2c 17
19 bf da bf 02 53 fe 51 75 be 89 8e 75 0e dc 53 37 0d 2b""")
# {server} construct an EncryptedExtensions handshake message (40 octets), and the Finished (36)
EE = h("08 00 00 24 00 22 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 1c"
       "00 02 40 01 00 00 00 00")
SERVER_FINISHED = h("14 00 00 20 9b 9b 14 1d 90 63 37 fb d2 cb dc e7 1d f4 de da 4a b4 2c 30 95 72 cb 7f"
                    "ff ee 54 54 b7 8f 07 18")
# {client} send handshake record: the client's Finished under the client handshake keys
C_FINISHED_RECORD = h("17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9"
                      "3c 7a 4b fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4"
                      "05 46")
# {client}/{server} send application_data record: 50 bytes 00 01 .. 31 each way
C_APP_RECORD = h("17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66"
                 "bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70"
                 "14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4")
S_APP_RECORD = h("17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82"
                 "aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00"
                 "47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d")
APP_DATA = bytes(range(50))


def rfc_decryptor(secret: bytes, seq: int = 0) -> RecordDecryptor:
    return RecordDecryptor(AES128GCM, tls13_keys(AES128GCM, secret), version=0x0304, seq=seq)


def split(record: bytes) -> tuple[bytes, bytes]:
    return record[:5], record[5:]


def test_rfc8448_server_handshake_flight_decrypts():
    ctype, plain = rfc_decryptor(S_HS_SECRET).decrypt(*split(S_HS_RECORD))
    assert ctype == 22
    assert len(plain) == 40 + 445 + 136 + 36
    assert plain.startswith(EE) and plain.endswith(SERVER_FINISHED)
    # the four handshake messages' own lengths tile the plaintext
    off, kinds = 0, []
    while off < len(plain):
        kinds.append(plain[off])
        off += 4 + int.from_bytes(plain[off + 1:off + 4], "big")
    assert off == len(plain) and kinds == [8, 11, 15, 20]


def test_rfc8448_client_finished_and_application_data():
    ctype, plain = rfc_decryptor(C_HS_SECRET).decrypt(*split(C_FINISHED_RECORD))
    assert ctype == 22 and plain[:4] == b"\x14\x00\x00\x20" and len(plain) == 36
    client = rfc_decryptor(C_AP_SECRET)
    assert client.decrypt(*split(C_APP_RECORD)) == (23, APP_DATA)
    assert client.seq == 1
    # the server's application keys protected a NewSessionTicket first: its data record is seq 1
    server = rfc_decryptor(S_AP_SECRET)
    with pytest.raises(DecryptError, match="authentication failed"):
        server.decrypt(*split(S_APP_RECORD))
    assert server.seq == 0
    assert server.decrypt_at(1, *split(S_APP_RECORD)) == (23, APP_DATA)
    assert server.seq == 2


def test_rfc8448_records_reencrypt_byte_for_byte():
    enc = RecordEncryptor(AES128GCM, tls13_keys(AES128GCM, C_AP_SECRET), version=0x0304)
    assert enc.encrypt(23, APP_DATA) == C_APP_RECORD
    enc = RecordEncryptor(AES128GCM, tls13_keys(AES128GCM, S_AP_SECRET), version=0x0304, seq=1)
    assert enc.encrypt(23, APP_DATA) == S_APP_RECORD


def test_memoryview_fragment_and_wrong_key():
    head, body = split(C_APP_RECORD)
    assert rfc_decryptor(C_AP_SECRET).decrypt(head, memoryview(bytearray(body))) == (23, APP_DATA)
    with pytest.raises(DecryptError):
        rfc_decryptor(S_AP_SECRET).decrypt(head, body)


# --- protection: every suite, round trips and failures ------------------------------------------
def suite_versions():
    for suite in sorted(SUITES.values(), key=lambda s: s.code):
        for version in (0x0304, 0x0303, 0x0302, 0x0301):
            if supports(suite, version):
                etms = (False, True) if suite.cipher == "aes-cbc" else (False,)
                for etm in etms:
                    yield pytest.param(suite, version, etm, id=f"{suite.name}-{version:04x}{'-etm' * etm}")


def pair(suite, version, etm, seq=0):
    """A matching encryptor and decryptor from keys derived the real way."""
    if suite.tls13:
        keys = tls13_keys(suite, bytes(range(64, 64 + (48 if suite.prf_hash == "sha384" else 32))))
    else:
        keys = tls12_keys(suite, bytes(range(48)), b"C" * 32, b"S" * 32, version=version)[0]
    return (RecordEncryptor(suite, keys, version=version, encrypt_then_mac=etm, seq=seq),
            RecordDecryptor(suite, keys, version=version, encrypt_then_mac=etm, seq=seq))


PAYLOADS = [(23, b"hello"), (22, b"\x14\x00\x00\x0c" + bytes(12)), (23, b""), (21, b"\x01\x00"),
            (23, bytes(range(256)) * 64), (23, b"x" * 31), (23, b"y" * 32)]


@pytest.mark.parametrize(("suite", "version", "etm"), list(suite_versions()))
def test_round_trip_every_suite(suite, version, etm):
    enc, dec = pair(suite, version, etm, seq=5)
    records = [enc.encrypt(t, p) for t, p in PAYLOADS]
    for (ctype, plain), record in zip(PAYLOADS, records):
        head = record[:5]
        assert head[0] == (23 if suite.tls13 else ctype)
        assert int.from_bytes(head[1:3], "big") == (0x0303 if suite.tls13 else version)
        assert int.from_bytes(head[3:5], "big") == len(record) - 5 <= MAX_FRAGMENT
        assert dec.decrypt(head, record[5:]) == (ctype, plain)
    assert dec.seq == enc.seq == 5 + len(PAYLOADS)


@pytest.mark.parametrize(("suite", "version", "etm"), list(suite_versions()))
def test_tamper_raises_and_keeps_state(suite, version, etm):
    enc, dec = pair(suite, version, etm)
    first = enc.encrypt(23, b"first record " * 5)
    second = enc.encrypt(23, b"second")
    assert dec.decrypt(first[:5], first[5:]) == (23, b"first record " * 5)
    head, body = second[:5], second[5:]
    for pos in sorted({0, 7, len(body) // 2, len(body) - 17, len(body) - 1}):
        bad = bytearray(body)
        bad[pos] ^= 0x40
        with pytest.raises(DecryptError):
            dec.decrypt(head, bytes(bad))
        assert dec.seq == 1
    with pytest.raises(DecryptError):                              # the header is authenticated
        dec.decrypt(bytes([22]) + head[1:], body)
    with pytest.raises(DecryptError):
        dec.decrypt(head, body + b"\0")                            # length changed
    assert dec.decrypt(head, body) == (23, b"second")            # state was unchanged
    assert dec.seq == 2


@pytest.mark.parametrize(("suite", "version", "etm"), list(suite_versions()))
def test_too_short_records(suite, version, etm):
    _, dec = pair(suite, version, etm)
    for size in (0, 1, 5, 8, 15, 16, 17, 24, 31, 33):
        with pytest.raises(DecryptError):
            dec.decrypt(bytes([23, 3, 3, 0, size]), bytes(size))
    with pytest.raises(DecryptError, match="too long"):
        dec.decrypt(b"\x17\x03\x03\x48\x01", bytes(MAX_FRAGMENT + 1))
    assert dec.seq == 0


@pytest.mark.parametrize(("suite", "version", "etm"),
                         [p for p in suite_versions() if p.values[1] >= 0x0302])
def test_decrypt_at_resynchronises_after_lost_records(suite, version, etm):
    enc, dec = pair(suite, version, etm)
    records = [enc.encrypt(23, b"record %d" % i) for i in range(8)]
    assert dec.decrypt(records[0][:5], records[0][5:]) == (23, b"record 0")
    lost_until = 5                                     # records 1..4 lost in a TCP gap
    head, body = records[lost_until][:5], records[lost_until][5:]
    assert dec.decrypt_at(2, head, body) is None and dec.seq == 1
    found = [s for s in range(1, 9) if dec.decrypt_at(s, head, body) is not None]
    assert found == [5] and dec.seq == 6            # the failed tries after it changed nothing
    assert dec.decrypt(records[6][:5], records[6][5:]) == (23, b"record 6")


def test_tls13_padding_and_inner_type():
    suite = SUITES[0x1303]
    enc, dec = pair(suite, 0x0304, False)
    for ctype, plain, padding in [(23, b"data", 0), (23, b"data\x00\x00", 100), (21, b"\x01\x00", 3),
                                  (22, b"", 1000), (23, b"\x00" * 10, 7)]:
        record = enc.encrypt(ctype, plain, padding=padding)
        assert len(record) == 5 + len(plain) + 1 + padding + 16
        assert dec.decrypt(record[:5], record[5:]) == (ctype, plain)
    # all zeros: no content type (RFC 8446 §5.4) -> an error, seq unchanged
    nonce = (int.from_bytes(dec._fixed_iv, "big") ^ dec.seq).to_bytes(12, "big")
    header = b"\x17\x03\x03\x00\x18"
    body = dec._aead.encrypt(nonce, bytes(8), header)
    with pytest.raises(DecryptError, match="no inner content type"):
        dec.decrypt(header, body)
    assert dec.seq == 5


def _raw_cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


@pytest.mark.parametrize("etm", [False, True])
def test_cbc_bad_padding_and_bad_mac(etm):
    suite = SUITES[0xC013]                                          # AES-128-CBC, HMAC-SHA1
    keys = tls12_keys(suite, bytes(range(48)), b"C" * 32, b"S" * 32)[0]
    dec = RecordDecryptor(suite, keys, version=0x0303, encrypt_then_mac=etm)
    iv = bytes(range(16))
    content = b"sixteen bytes!!!" + b"abc"
    header = b"\x17\x03\x03"

    def mac(data: bytes) -> bytes:
        return hmac.digest(keys.mac_key, struct.pack("!Q3sH", 0, header, len(data)) + data, "sha1")

    def record(padding: bytes, *, good_mac: bool = True) -> tuple[bytes, bytes]:
        if etm:
            body = iv + _raw_cbc(keys.key, iv, content + padding)
            tag = mac(body) if good_mac else bytes(20)
            body += tag
        else:
            tag = mac(content) if good_mac else bytes(20)
            body = iv + _raw_cbc(keys.key, iv, content + tag + padding)
        return header + len(body).to_bytes(2, "big"), body

    pad_len = 16 - (len(content) + (0 if etm else 20)) % 16
    good = bytes([pad_len - 1]) * pad_len
    assert dec.decrypt_at(0, *record(good)) == (23, content)
    dec.seq = 0
    wrong_pad = bytes([pad_len - 1]) * (pad_len - 1) + bytes([pad_len - 2 if pad_len > 1 else 7])
    with pytest.raises(DecryptError, match="bad CBC padding"):
        dec.decrypt(*record(wrong_pad))
    if etm:                       # the MAC covers the ciphertext: a bad padding is seen as such
        with pytest.raises(DecryptError, match="bad CBC padding"):
            dec.decrypt(*record(bytes([200]) * pad_len))
    with pytest.raises(DecryptError, match="bad MAC"):
        dec.decrypt(*record(good, good_mac=False))
    longer = bytes([pad_len + 15]) * (pad_len + 16)                 # longer padding is legal
    assert dec.decrypt(*record(longer)) == (23, content)
    assert dec.seq == 1


def test_tls10_chained_iv_survives_a_failed_record():
    suite = SUITES[0x002F]
    enc, dec = pair(suite, 0x0301, False)
    records = [enc.encrypt(23, b"tls 1.0 record %d" % i * 3) for i in range(3)]
    assert dec.decrypt(records[0][:5], records[0][5:])[1] == b"tls 1.0 record 0" * 3
    bad = bytearray(records[1])
    bad[-1] ^= 1
    with pytest.raises(DecryptError):
        dec.decrypt(bytes(bad[:5]), bytes(bad[5:]))
    for i in (1, 2):
        assert dec.decrypt(records[i][:5], records[i][5:])[1] == b"tls 1.0 record %d" % i * 3


def test_unsupported_pairs_refused():
    assert not supports(SUITES[0x1301], 0x0303)
    assert not supports(SUITES[0xC02F], 0x0304) and not supports(SUITES[0xC02F], 0x0302)
    assert not supports(SUITES[0xC027], 0x0302)                      # SHA-256 CBC is TLS 1.2 only
    assert supports(SUITES[0xC013], 0x0301) and not supports(SUITES[0xC013], 0x0300)
    with pytest.raises(ValueError):
        RecordDecryptor(SUITES[0x1301], DirectionKeys(bytes(16), bytes(12), b""), version=0x0303)


# --- real OpenSSL traffic: python ssl through a recording proxy, decrypted with the key log -----
def tls_records(stream: bytes) -> list[tuple[bytes, bytes]]:
    out, off = [], 0
    while off < len(stream):
        size = int.from_bytes(stream[off + 3:off + 5], "big")
        out.append((stream[off:off + 5], stream[off + 5:off + 5 + size]))
        off += 5 + size
    assert off == len(stream)
    return out


def hello(body: bytes) -> tuple[bytes, int, set[int]]:
    """(random, cipher suite, extension types) of a ClientHello/ServerHello handshake message;
    the suite and extensions only mean something for a ServerHello."""
    random, sid_end = body[6:38], 39 + body[38]
    suite = int.from_bytes(body[sid_end:sid_end + 2], "big")
    off, end, extensions = sid_end + 5, len(body), set()
    while off + 4 <= end:
        extensions.add(int.from_bytes(body[off:off + 2], "big"))
        off += 4 + int.from_bytes(body[off + 2:off + 4], "big")
    return random, suite, extensions


def finished_seen(handshake: bytes) -> bool:
    off = 0
    while off + 4 <= len(handshake):
        if handshake[off] == 20:
            return True
        off += 4 + int.from_bytes(handshake[off + 1:off + 4], "big")
    return False


def decrypt_tls13(recs, suite, hs_secret: bytes, ap_secret: bytes) -> bytes:
    hs = RecordDecryptor(suite, tls13_keys(suite, hs_secret), version=0x0304)
    app = RecordDecryptor(suite, tls13_keys(suite, ap_secret), version=0x0304)
    handshake, data, in_handshake = bytearray(), bytearray(), True
    for head, body in recs:
        if head[0] != 23:                                # the hellos, the compatibility CCS
            continue
        if in_handshake:
            ctype, plain = hs.decrypt(head, body)
            assert ctype == 22
            handshake += plain
            in_handshake = not finished_seen(handshake)
        else:
            ctype, plain = app.decrypt(head, body)
            if ctype == 23:
                data += plain
    return bytes(data)


def decrypt_tls12(recs, suite, keys, version: int, etm: bool) -> bytes:
    dec = RecordDecryptor(suite, keys, version=version, encrypt_then_mac=etm)
    data, encrypted, types = bytearray(), False, []
    for head, body in recs:
        if encrypted:
            ctype, plain = dec.decrypt(head, body)
            types.append(ctype)
            if ctype == 23:
                data += plain
        encrypted = encrypted or head[0] == 20           # everything after ChangeCipherSpec
    assert types[0] == 22                               # Finished, then data (and a close_notify)
    return bytes(data)


def check_traffic(traffic, expect_suite: str, version: int = 0x0304, etm: bool | None = None) -> None:
    log = KeyLog()
    log.add_text(traffic.keylog)
    up, down = tls_records(traffic.up), tls_records(traffic.down)
    client_random = hello(up[0][1])[0]
    server_random, code, extensions = hello(down[0][1])
    suite = SUITES[code]
    assert suite.name == expect_suite
    if version == 0x0304:
        got_up = decrypt_tls13(up, suite, log.secret("CLIENT_HANDSHAKE_TRAFFIC_SECRET", client_random),
                               log.secret("CLIENT_TRAFFIC_SECRET_0", client_random))
        got_down = decrypt_tls13(down, suite, log.secret("SERVER_HANDSHAKE_TRAFFIC_SECRET", client_random),
                                 log.secret("SERVER_TRAFFIC_SECRET_0", client_random))
    else:
        assert (0x16 in extensions) == bool(etm)                # encrypt_then_mac as expected
        client, server = tls12_keys(suite, log.master_secret(client_random), client_random,
                                    server_random, version=version)
        got_up = decrypt_tls12(up, suite, client, version, bool(etm))
        got_down = decrypt_tls12(down, suite, server, version, bool(etm))
    assert got_up == traffic.sent
    assert got_down == traffic.sent


def test_real_tls13_default_suite():
    check_traffic(run_session(), "TLS_AES_256_GCM_SHA384")


@pytest.mark.parametrize("name", ["TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256",
                                  "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"])
def test_real_tls13_each_suite(name):
    check_traffic(run_in_subprocess(name), name)


@pytest.mark.parametrize(("ciphers", "options", "expect", "etm"), [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", 0, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", None),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", 0, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", None),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", 0, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", None),
    ("ECDHE-ECDSA-AES128-CCM", 0, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", None),
    ("ECDHE-ECDSA-AES128-CCM8", 0, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", None),
    ("ECDHE-ECDSA-AES128-SHA", 0, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", True),
    ("ECDHE-ECDSA-AES128-SHA", 0x80000, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", False),
    ("ECDHE-ECDSA-AES256-SHA384", 0, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", True),
    ("ECDHE-ECDSA-AES256-SHA384", 0x80000, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", False),
    ("ECDHE-ECDSA-AES128-SHA256", 0x80000, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", False),
])
def test_real_tls12(ciphers, options, expect, etm):
    check_traffic(run_session(tls_version="TLSv1_2", ciphers=ciphers, options=options), expect, 0x0303, etm)


@pytest.mark.parametrize(("tls_version", "version"), [("TLSv1", 0x0301), ("TLSv1_1", 0x0302)])
@pytest.mark.parametrize("options", [0, 0x80000])
def test_real_tls10_tls11_cbc(tls_version, version, options):
    traffic = run_session(tls_version=tls_version, ciphers="ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0",
                          options=options)
    check_traffic(traffic, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", version, not options)


FUZZ_CASES = [(0x1301, 0x0304, False), (0x1303, 0x0304, False), (0x1305, 0x0304, False),
              (0xC02F, 0x0303, False), (0xCCA8, 0x0303, False), (0xC0AE, 0x0303, False),
              (0xC013, 0x0303, False), (0xC028, 0x0303, True), (0xC013, 0x0301, False)]


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(FUZZ_CASES), header=st.binary(min_size=5, max_size=5),
       body=st.binary(max_size=300), seq=st.integers(0, 2**64 - 1))
def test_garbage_only_raises_decrypterror(case, header, body, seq):
    code, version, etm = case
    _, dec = pair(SUITES[code], version, etm)
    with pytest.raises(DecryptError):
        dec.decrypt(header, body)
    assert dec.decrypt_at(seq, memoryview(header), memoryview(body)) is None
    assert dec.seq == 0


def tshark_plaintext(traffic, tmp_path) -> tuple[bytes, bytes]:
    """What tshark decrypts from the same bytes and key log (`-z follow,tls,raw`): the
    (unindented, indented) sides' application data. The client's first record (the ClientHello)
    goes first, then the server's bytes, then the client's rest: tshark sees both hellos before
    any encrypted record of either side."""
    first = 5 + int.from_bytes(traffic.up[3:5], "big")
    conv = Conversation(server_port=8443)
    conv.handshake()
    for direction, data in ((0, traffic.up[:first]), (1, traffic.down), (0, traffic.up[first:])):
        for off in range(0, len(data), 1400):
            conv.send(direction, data[off:off + 1400])
    pcap, keys = tmp_path / "tls.pcap", tmp_path / "keys.log"
    write_pcap(pcap, conv.packets)
    keys.write_text(traffic.keylog)
    out = subprocess.run(["tshark", "-r", str(pcap), "-o", f"tls.keylog_file:{keys}", "-q",
                          "-z", "follow,tls,raw,0"], capture_output=True, text=True, check=True, timeout=60)
    body = out.stdout.split("\n")
    lines = [line for line in body[body.index(next(x for x in body if x.startswith("Node 1:"))) + 1:]
             if line and not line.startswith("=")]
    plain = "".join(line for line in lines if not line.startswith("\t"))
    indented = "".join(line[1:] for line in lines if line.startswith("\t"))
    return bytes.fromhex(plain), bytes.fromhex(indented)


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize(("tls_version", "ciphers", "options", "expect", "version", "etm"), [
    ("TLSv1_3", None, 0, "TLS_AES_256_GCM_SHA384", 0x0304, None),
    ("TLSv1_2", "ECDHE-ECDSA-CHACHA20-POLY1305", 0, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
     0x0303, None),
    ("TLSv1_2", "ECDHE-ECDSA-AES256-SHA384", 0, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", 0x0303, True),
    ("TLSv1_2", "ECDHE-ECDSA-AES128-SHA", 0x80000, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0x0303, False),
])
def test_real_traffic_agrees_with_tshark(tmp_path, tls_version, ciphers, options, expect, version, etm):
    traffic = run_session(tls_version=tls_version, ciphers=ciphers, options=options)
    check_traffic(traffic, expect, version, etm)                  # ours: both directions == sent
    assert tshark_plaintext(traffic, tmp_path) == (traffic.sent, traffic.sent)
