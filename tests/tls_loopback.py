"""Real TLS traffic for the crypto tests: a Python `ssl` client and echo server on 127.0.0.1, with a
forwarding proxy between them that records the raw TCP bytes of each direction, and the client's
NSS key log (`keylog_filename`).

TLS 1.3 cipher suites cannot be chosen from Python's `ssl`; OpenSSL reads them from the file named
by OPENSSL_CONF at start-up, so `run_in_subprocess` runs `python -m tests.tls_loopback` with such a
file. Used by tests/test_tls_crypto.py.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: What the client sends, one message at a time (the server echoes each back): small, empty-ish,
#: exactly one full record, and more than two records.
MESSAGES = [b"hello over TLS", b"x", bytes(range(256)) * 64, b"\x00" * 40000 + b"end", b"bye"]
_TIMEOUT = 20.0


@dataclass
class Traffic:
    up: bytes            # client -> server, as on the wire
    down: bytes          # server -> client
    keylog: str
    sent: bytes          # the application data the client sent (the server echoed the same)


def _certificate(directory: Path) -> tuple[str, str]:
    """A throwaway self-signed ECDSA P-256 certificate (fast to make; ECDHE_ECDSA suites)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def _pump(src: socket.socket, dst: socket.socket, record: bytearray) -> None:
    while data := src.recv(65536):
        record += data
        dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _recv_exact(conn: ssl.SSLSocket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        data = conn.recv(size - len(out))
        if not data:
            raise ConnectionError("closed early")
        out += data
    return bytes(out)


def run_session(*, tls_version: str = "TLSv1_3", ciphers: str | None = None, options: int = 0) -> Traffic:
    """One TLS connection through the recording proxy; the server echoes every message.

    Args:
        tls_version: the ssl.TLSVersion member both sides are pinned to.
        ciphers: an OpenSSL cipher string for TLS <= 1.2 (both sides).
        options: extra SSL_OP_* bits for the client (0x80000: no encrypt-then-MAC).
    """
    version = ssl.TLSVersion[tls_version]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cert, key = _certificate(directory)
        keylog = directory / "keys.log"
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        client_ctx.keylog_filename = str(keylog)
        client_ctx.options |= options
        for ctx in (server_ctx, client_ctx):
            with warnings.catch_warnings():          # TLS 1.0/1.1 are deprecated: tested on purpose
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ctx.maximum_version = version
            if ciphers:
                ctx.set_ciphers(ciphers)
        with socket.create_server(("127.0.0.1", 0)) as server_sock, \
                socket.create_server(("127.0.0.1", 0)) as proxy_sock:
            server_sock.settimeout(_TIMEOUT)
            proxy_sock.settimeout(_TIMEOUT)
            up, down = bytearray(), bytearray()
            errors: list[BaseException] = []

            def serve() -> None:
                try:
                    raw, _ = server_sock.accept()
                    raw.settimeout(_TIMEOUT)
                    with server_ctx.wrap_socket(raw, server_side=True) as conn:
                        while data := conn.recv(65536):
                            conn.sendall(data)
                except (OSError, ssl.SSLError) as exc:     # reported by the main thread
                    errors.append(exc)

            def proxy() -> None:
                try:
                    client_side, _ = proxy_sock.accept()
                    server_side = socket.create_connection(server_sock.getsockname()[:2], timeout=_TIMEOUT)
                    client_side.settimeout(_TIMEOUT)
                    pumps = [threading.Thread(target=_pump, args=(client_side, server_side, up)),
                             threading.Thread(target=_pump, args=(server_side, client_side, down))]
                    for t in pumps:
                        t.start()
                    for t in pumps:
                        t.join()
                    client_side.close()
                    server_side.close()
                except OSError as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=serve), threading.Thread(target=proxy)]
            for t in threads:
                t.start()
            raw = socket.create_connection(proxy_sock.getsockname()[:2], timeout=_TIMEOUT)
            with client_ctx.wrap_socket(raw) as conn:
                for message in MESSAGES:
                    conn.sendall(message)
                    if _recv_exact(conn, len(message)) != message:
                        raise AssertionError("the echo differs")
                conn.shutdown(socket.SHUT_WR)
            for t in threads:
                t.join(_TIMEOUT)
            if errors:
                raise errors[0]
        return Traffic(bytes(up), bytes(down), keylog.read_text(), b"".join(MESSAGES))


OPENSSL_CONF = """openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = {suites}
"""


def run_in_subprocess(tls13_suite: str) -> Traffic:
    """run_session for TLS 1.3 with only `tls13_suite` enabled (OpenSSL config in a child process)."""
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "openssl.cnf"
        conf.write_text(OPENSSL_CONF.format(suites=tls13_suite))
        out = Path(tmp) / "traffic.json"
        env = {**os.environ, "OPENSSL_CONF": str(conf)}
        env.pop("SSLKEYLOGFILE", None)
        root = Path(__file__).resolve().parent.parent
        subprocess.run([sys.executable, "-m", "tests.tls_loopback", str(out)], cwd=root, env=env,
                       check=True, timeout=60, capture_output=True)
        data = json.loads(out.read_text())
        return Traffic(bytes.fromhex(data["up"]), bytes.fromhex(data["down"]), data["keylog"],
                       bytes.fromhex(data["sent"]))


if __name__ == "__main__":
    traffic = run_session()
    Path(sys.argv[1]).write_text(json.dumps({"up": traffic.up.hex(), "down": traffic.down.hex(),
                                             "keylog": traffic.keylog, "sent": traffic.sent.hex()}))
