"""The NSS key log: TLS secrets by client random, read from files or text.

Format (https://udn.realityripple.com/docs/Mozilla/Projects/NSS/Key_Log_Format and
draft-ietf-tls-keylogfile): one `LABEL <client_random hex> <secret hex>` per line, `#` comments.
Only what this package decrypts with is kept: CLIENT_RANDOM (the TLS <= 1.2 master secret) and
the TLS 1.3 traffic secrets. Other known labels (EXPORTER_SECRET, RSA, ...) are read and ignored;
malformed lines, unknown labels and lines over 1 KiB are skipped and counted in `bad_lines`.
A key log is trusted for nothing: a wrong secret only makes decryption fail later.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

#: A longer line is skipped (the longest real line, a TLS 1.3 SHA-384 secret, is ~160 bytes).
MAX_LINE = 1024
#: Bytes read from a file at once (lines are never held longer than MAX_LINE).
_CHUNK = 1 << 20
_RANDOM_LEN = 32

#: label -> accepted secret lengths (TLS 1.3: the suite's hash length, 32 or 48)
_KEPT: dict[str, frozenset[int]] = {
    "CLIENT_RANDOM": frozenset((48,)),
    "CLIENT_EARLY_TRAFFIC_SECRET": frozenset((32, 48)),
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": frozenset((32, 48)),
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": frozenset((32, 48)),
    "CLIENT_TRAFFIC_SECRET_0": frozenset((32, 48)),
    "SERVER_TRAFFIC_SECRET_0": frozenset((32, 48)),
}
#: Labels written by NSS, OpenSSL, BoringSSL or Wireshark that carry nothing we decrypt with.
_IGNORED = frozenset((
    "EXPORTER_SECRET", "EARLY_EXPORTER_SECRET", "RSA", "PMS_CLIENT_RANDOM",
    "CLIENT_RANDOM_EARLY", "ECH_SECRET", "ECH_CONFIG",
))


class KeyLogError(Exception):
    """A key log file that cannot be read (the message is one line, naming the file)."""


class KeyLog:
    """NSS key log secrets, looked up by client random.

    Memory is one small bytes object per kept line (about twice the line's length); the input is
    read in chunks, never whole. When a client random appears twice with the same label, the
    later line wins.
    """

    def __init__(self) -> None:
        self.bad_lines = 0
        self.generation = 0
        self._secrets: dict[str, dict[bytes, bytes]] = {label: {} for label in _KEPT}
        self._randoms = 0

    def __len__(self) -> int:
        """How many distinct client randoms have at least one secret."""
        return self._randoms

    def __repr__(self) -> str:  # never the secrets
        return f"KeyLog(client_randoms={self._randoms}, bad_lines={self.bad_lines})"

    def master_secret(self, client_random: bytes) -> bytes | None:
        """The TLS <= 1.2 master secret (CLIENT_RANDOM line) for this client random, if known."""
        return self._secrets["CLIENT_RANDOM"].get(bytes(client_random))

    def secret(self, label: str, client_random: bytes) -> bytes | None:
        """A TLS 1.3 secret by its key log label (e.g. "SERVER_TRAFFIC_SECRET_0"), if known."""
        table = self._secrets.get(label)
        return None if table is None else table.get(bytes(client_random))

    def add_text(self, text: bytes | str) -> int:
        """Adds key log lines (a whole file's text, or a pcapng Decryption Secrets Block).

        Returns:
            How many lines were kept (comments, blank lines and ignored labels are not counted).
        """
        if isinstance(text, str):
            text = text.encode("utf-8", "replace")
        return self._add_lines(text.splitlines())

    def add_file(self, path: str | os.PathLike[str]) -> int:
        """Adds the lines of a key log file, read in chunks.

        Raises:
            KeyLogError: the file cannot be opened or read.
        """
        taken = 0
        rest = b""
        skipping = False      # inside a line already longer than MAX_LINE
        try:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    lines = (rest + chunk).split(b"\n")
                    rest = lines.pop()
                    if skipping and lines:
                        del lines[0]               # the end of the overlong line
                        self.bad_lines += 1
                        skipping = False
                    if len(rest) > MAX_LINE:
                        skipping, rest = True, b""
                    taken += self._add_lines(lines)
        except OSError as exc:
            raise KeyLogError(f"cannot read key log {os.fsdecode(path)!r}: {exc.strerror or exc}") from None
        if skipping:
            self.bad_lines += 1
        elif rest:
            taken += self._add_lines([rest])
        return taken

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]], *, environ: bool = True) -> KeyLog:
        """A key log from these files, plus $SSLKEYLOGFILE when `environ` and it names a readable file.

        Raises:
            KeyLogError: one of `paths` cannot be read (a missing $SSLKEYLOGFILE is not an error).
        """
        log = cls()
        for path in paths:
            log.add_file(path)
        env = os.environ.get("SSLKEYLOGFILE") if environ else None
        if env:
            with contextlib.suppress(KeyLogError):
                log.add_file(env)
        return log

    def _add_lines(self, lines: Iterable[bytes]) -> int:
        taken = 0
        secrets = self._secrets
        for line in lines:
            if len(line) > MAX_LINE:            # before splitting it: it may be megabytes
                self.bad_lines += 1
                continue
            fields = line.split()
            if not fields or fields[0].startswith(b"#"):
                continue
            if len(fields) != 3:
                self.bad_lines += 1
                continue
            label = fields[0].decode("ascii", "replace")
            lengths = _KEPT.get(label)
            if lengths is None:
                if label not in _IGNORED:
                    self.bad_lines += 1
                continue
            try:
                client_random = bytes.fromhex(fields[1].decode("ascii"))
                secret = bytes.fromhex(fields[2].decode("ascii"))
            except ValueError:       # UnicodeDecodeError is one
                self.bad_lines += 1
                continue
            if len(client_random) != _RANDOM_LEN or len(secret) not in lengths:
                self.bad_lines += 1
                continue
            table = secrets[label]
            if table.get(client_random) == secret:
                continue
            if not any(client_random in t for t in secrets.values()):
                self._randoms += 1
            table[client_random] = secret
            taken += 1
        if taken:
            self.generation += 1
        return taken
