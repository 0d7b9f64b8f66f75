"""TLS as a stream transform (issue 15): TLS records of a connection's two byte streams in,
decrypted application data out, with keys from an NSS key log.

Modules, one job each: keylog.py (the key log), suites.py (cipher suite table), keys.py (TLS 1.2
PRF and TLS 1.3 key schedule), protection.py (record decryption), records.py (the record layer and
handshake message framing), hello.py (ClientHello/ServerHello parsing), session.py (TlsSession:
the per-connection state machine that ties them together).

The names below are loaded from their module on first use: session.py needs `cryptography`
(~0.1 s of imports), which a capture without TLS never has to pay for (issue 21).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzer.lazy import lazy_names

if TYPE_CHECKING:
    from analyzer.tls.keylog import KeyLog, KeyLogError
    from analyzer.tls.records import RecordError, looks_like_tls
    from analyzer.tls.session import PlainGap, ResumptionCache, TlsInfo, TlsOut, TlsSession

__all__ = ["KeyLog", "KeyLogError", "PlainGap", "RecordError", "ResumptionCache", "TlsInfo", "TlsOut",
           "TlsSession", "looks_like_tls"]

#: where each name lives
_HOME = {"KeyLog": "keylog", "KeyLogError": "keylog", "RecordError": "records", "looks_like_tls": "records",
         "PlainGap": "session", "ResumptionCache": "session", "TlsInfo": "session", "TlsOut": "session",
         "TlsSession": "session"}

__getattr__ = lazy_names(__name__, _HOME)
