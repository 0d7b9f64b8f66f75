"""TLS for the benchmark capture (`make_capture.py --tls`): a self-signed certificate made at start,
the servers' ssl context, and the clients' ssl contexts, which write the NSS key log
(`ssl.SSLContext.keylog_filename`, the SSLKEYLOGFILE format tshark and ws-analyzer read).

TLS 1.3 uses OpenSSL's default suites (TLS_AES_256_GCM_SHA384 is what two OpenSSL peers pick);
TLS 1.2 is limited to ECDHE-ECDSA with AES-GCM, the suites of issue 15's speed figure.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

VERSIONS = {"1.3": ssl.TLSVersion.TLSv1_3, "1.2": ssl.TLSVersion.TLSv1_2}
TLS12_CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
SERVER_NAME = "localhost"      # the SNI the clients send (Python sends none for an IP address)


def make_certificate(directory: Path, name: str = SERVER_NAME) -> tuple[Path, Path]:
    """Write a self-signed EC P-256 certificate for `name` and 127.0.0.1 and its key into
    `directory`; returns (certificate path, key path), both PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass(frozen=True)
class TlsSetup:
    """What both sides need: the TLS version ("1.3" or "1.2") and the certificate files."""

    version: str
    cert: Path
    key: Path

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"TLS version {self.version!r}: expected one of {', '.join(VERSIONS)}")

    def _pin(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        ctx.minimum_version = ctx.maximum_version = VERSIONS[self.version]
        if self.version == "1.2":
            ctx.set_ciphers(TLS12_CIPHERS)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return self._pin(ctx)

    def client_context(self, keylog: Path) -> ssl.SSLContext:
        """A verifying client context (the certificate is its only trust anchor) that appends the
        secrets of every connection it makes to `keylog`."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=self.cert)
        ctx.keylog_filename = str(keylog)
        return self._pin(ctx)
