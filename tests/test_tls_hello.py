"""hello.py: ClientHello/ServerHello/EncryptedExtensions/NewSessionTicket parsing on the RFC 8448
trace's bytes and on hellos built field by field in tls_helpers; bad bytes give HelloError only."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.tls.hello import (
    HelloError,
    escape_name,
    parse_client_hello,
    parse_encrypted_extensions,
    parse_new_session_ticket,
    parse_server_hello,
)
from tests import tls_helpers as T

# RFC 8448 §3: "{server} construct an EncryptedExtensions handshake message" (supported_groups,
# record_size_limit, server_name: no ALPN).
R8448_EE = bytes.fromhex("080000240022000a00140012001d00170018001901000101010201030104001c0002400100000000")


def test_rfc8448_client_hello() -> None:
    ch = parse_client_hello(T.R8448_CH_REC[9:])
    assert ch.random == T.R8448_CLIENT_RANDOM
    assert ch.session_id == b""
    assert ch.cipher_suites == (0x1301, 0x1303, 0x1302)
    assert ch.sni == "server"
    assert ch.alpn == ()
    assert ch.supported_versions == (0x0304,)
    assert ch.best_version == 0x0304
    assert ch.session_ticket == b""          # the empty SessionTicket extension (00 23 00 00)
    assert not ch.psk and not ch.early_data and not ch.encrypt_then_mac and not ch.extended_master_secret


def test_rfc8448_server_hello() -> None:
    sh = parse_server_hello(T.R8448_SH_REC[9:])
    assert sh.random.hex().startswith("a6af06a4121860dc")
    assert sh.cipher_suite == 0x1301
    assert sh.legacy_version == 0x0303 and sh.selected_version == 0x0304 and sh.version == 0x0304
    assert not sh.is_hrr and sh.alpn is None


def test_rfc8448_encrypted_extensions() -> None:
    assert parse_encrypted_extensions(R8448_EE[4:]) == (None, False)
    ee = T.encrypted_extensions(b"http/1.1", early_data=True)
    assert parse_encrypted_extensions(ee[4:]) == ("http/1.1", True)


def test_built_client_hello_every_field() -> None:
    msg = T.client_hello(b"\x01" * 32, session_id=b"\x05" * 32, suites=(0xC02F, 0x009C), sni=b"ws.example",
                         alpn=(b"h2", b"http/1.1"), versions=(0x0A0A, 0x0303), ticket=b"TICKET",
                         early_data=True, etm=True, ems=True)
    ch = parse_client_hello(msg[4:])
    assert (ch.random, ch.session_id, ch.cipher_suites) == (b"\x01" * 32, b"\x05" * 32, (0xC02F, 0x009C))
    assert (ch.sni, ch.alpn, ch.supported_versions) == ("ws.example", ("h2", "http/1.1"), (0x0A0A, 0x0303))
    assert ch.best_version == 0x0303                        # GREASE 0x0A0A ignored
    assert ch.session_ticket == b"TICKET"
    assert ch.early_data and ch.encrypt_then_mac and ch.extended_master_secret


def test_old_client_hello_without_extensions() -> None:
    body = b"\x03\x01" + b"\x07" * 32 + b"\x00" + b"\x00\x02\x00\x2f" + b"\x01\x00"
    ch = parse_client_hello(body)
    assert ch.best_version == 0x0301 and ch.cipher_suites == (0x002F,) and ch.sni is None


def test_built_server_hello_tls12_and_hrr() -> None:
    sh = parse_server_hello(T.server_hello(b"\x02" * 32, session_id=b"\x09" * 16, suite=0xC030, version=None,
                                           alpn=b"http/1.1", etm=True, ems=True)[4:])
    assert (sh.version, sh.cipher_suite, sh.session_id, sh.alpn) == (0x0303, 0xC030, b"\x09" * 16, "http/1.1")
    assert sh.encrypt_then_mac and sh.extended_master_secret and not sh.is_hrr
    hrr = parse_server_hello(T.server_hello(T.HRR_RANDOM)[4:])
    assert hrr.is_hrr and hrr.version == 0x0304


def test_new_session_ticket() -> None:
    assert parse_new_session_ticket(T.new_session_ticket12(b"opaque-ticket")[4:]) == b"opaque-ticket"
    with pytest.raises(HelloError):
        parse_new_session_ticket(b"\x00\x00\x00\x01\x00\x05abc")


def test_escape_name() -> None:
    assert escape_name(b"a\x00b\x1b[31m\x7f") == "a\\x00b\\x1b[31m\\x7f"
    assert escape_name(b"caf\xc3\xa9\xff") == "caf\u00e9\\xff"
    assert len(escape_name(b"x" * 5000)) == 255
    msg = T.client_hello(sni=b"evil\r\nname", alpn=(b"\x00\x01",))
    ch = parse_client_hello(msg[4:])
    assert ch.sni == "evil\\x0d\\x0aname" and ch.alpn == ("\\x00\\x01",)


@pytest.mark.parametrize("client", [True, False])
def test_every_truncation_is_a_hello_error(client: bool) -> None:
    body = (T.client_hello(ticket=b"t", ems=True) if client else T.server_hello(alpn=b"h2"))[4:]
    for cut in range(len(body)):
        try:
            if client:
                parse_client_hello(body[:cut])
            else:
                parse_server_hello(body[:cut])
        except HelloError:
            continue
        # the only prefix that parses ends exactly before the (optional) extensions block
        assert body[cut:cut + 2] == (len(body) - cut - 2).to_bytes(2, "big")


def test_bad_lengths() -> None:
    with pytest.raises(HelloError, match="session_id"):
        parse_client_hello(b"\x03\x03" + b"\x00" * 32 + b"\x21" + b"\x00" * 33 + b"\x00\x02\x13\x01\x01\x00")
    with pytest.raises(HelloError, match="even"):
        parse_client_hello(b"\x03\x03" + b"\x00" * 32 + b"\x00" + b"\x00\x03\x13\x01\x01\x01\x00")
    # an extension whose length runs past the block
    with pytest.raises(HelloError, match="expected=16 more bytes, found=3"):
        parse_client_hello(T.client_hello(extra=b"\x00\x99\x00\x10abc")[4:])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_gives_hello_error_only(data: bytes) -> None:
    for fn in (parse_client_hello, parse_server_hello, parse_encrypted_extensions, parse_new_session_ticket):
        with contextlib.suppress(HelloError):
            fn(data)  # type: ignore[operator]
