"""TLS as a stream transform (issue 15): TLS records of a connection's two byte streams in,
decrypted application data out, with keys from an NSS key log.

Modules, one job each: keylog.py (the key log), suites.py (cipher suite table), keys.py (TLS 1.2
PRF and TLS 1.3 key schedule), protection.py (record decryption), records.py (the record layer and
handshake message framing), hello.py (ClientHello/ServerHello parsing), session.py (TlsSession:
the per-connection state machine that ties them together).
"""

from __future__ import annotations

from analyzer.tls.keylog import KeyLog, KeyLogError
from analyzer.tls.records import RecordError, looks_like_tls
from analyzer.tls.session import PlainGap, ResumptionCache, TlsInfo, TlsOut, TlsSession

__all__ = ["KeyLog", "KeyLogError", "PlainGap", "RecordError", "ResumptionCache", "TlsInfo", "TlsOut",
           "TlsSession", "looks_like_tls"]
