"""Live capture (issue 17): packets from an interface through tcpdump or dumpcap, read as they come.

The capture program writes pcap (tcpdump) or pcapng (dumpcap) to a pipe, one packet at a time
(tcpdump -U, dumpcap's default); the analysis reads that pipe as it reads standard input (a stream,
analyzer.capture). With `save_to`, a thread copies the bytes to the file and on to the analysis, so
the file is exactly what was analysed. Stopping (Ctrl-C, SIGTERM) asks the capture program to stop:
it writes what it holds and exits, the pipe ends, the analysis finishes as at the end of a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from types import FrameType
from typing import IO

__all__ = ["CAPTURE_PROGRAMS", "LiveCapture", "LiveError", "capture_command"]

CAPTURE_PROGRAMS = ("tcpdump", "dumpcap")
_COPY_PIECE = 1 << 16


class LiveError(Exception):
    """The capture program cannot be found or refused to start (one line: its own message)."""


def capture_command(program: str, interface: str, bpf: str | None) -> list[str]:
    """The command line that writes `interface`'s packets (matching `bpf`) to stdout, a packet at a time."""
    if program == "tcpdump":
        # -U: each packet written as it comes; --immediate-mode: not held in the kernel's buffer
        return ["tcpdump", "-i", interface, "-U", "--immediate-mode", "-s", "0", "-w", "-",
                *([bpf] if bpf else [])]
    if program == "dumpcap":
        return ["dumpcap", "-i", interface, "-q", "-s", "0", "-w", "-", *(["-f", bpf] if bpf else [])]
    raise LiveError(f"unknown capture program {program!r}; choose from {', '.join(CAPTURE_PROGRAMS)}")


def _find_program(wanted: str | None) -> str:
    for program in ([wanted] if wanted else CAPTURE_PROGRAMS):
        if shutil.which(program):
            return program
    raise LiveError(f"{wanted or ' or '.join(CAPTURE_PROGRAMS)} not found: install it "
                    "(apt-get install tcpdump) to capture live")


class LiveCapture:
    """A running capture program and the path the analysis reads its packets from (`path`, a
    /dev/fd/N pipe). Use as a context manager; `stop()` ends the capture (the analysis then sees
    the end of its input)."""

    def __init__(self, interface: str, bpf: str | None = None, *, program: str | None = None,
                 save_to: str | None = None, on_message: IO[str] | None = None) -> None:
        self.program = _find_program(program)
        self.command = capture_command(self.program, interface, bpf)
        self.save_to = save_to
        self.on_message = on_message        # where the capture program's own lines go (None: kept)
        self.messages: list[str] = []
        self._relayed = 0                   # messages passed on to on_message (after the start)
        self._relay_lock = threading.Lock()
        self._started = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._read_fd = -1
        self._copier: threading.Thread | None = None
        self._stopping = False
        self.path = ""

    def __enter__(self) -> LiveCapture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()

    def start(self) -> None:
        try:
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise LiveError(f"{self.command[0]}: {exc.strerror or exc}") from None
        assert self._proc.stdout is not None and self._proc.stderr is not None
        threading.Thread(target=self._relay, args=(self._proc.stderr,), daemon=True).start()
        source = self._proc.stdout.fileno()
        if self.save_to is None:
            self._read_fd = os.dup(source)
        else:
            try:
                out = open(self.save_to, "wb")      # noqa: SIM115 - closed by the copier
            except OSError:
                self.stop()
                raise
            self._read_fd, write_fd = os.pipe()
            self._copier = threading.Thread(target=self._copy, args=(source, out, write_fd), daemon=True)
            self._copier.start()
        self.path = f"/dev/fd/{self._read_fd}"

    def _relay(self, stream: IO[bytes]) -> None:
        """The capture program's own lines (listening on…, errors, packets dropped)."""
        for raw in stream:
            with self._relay_lock:
                self.messages.append(raw.decode("utf-8", "replace").rstrip())
                if self._started:
                    self._pass_on()

    def _pass_on(self) -> None:
        """The messages not yet passed on to on_message (once the program has started: before,
        a failure is told in LiveError's one line instead)."""
        for line in self.messages[self._relayed:]:
            if self.on_message is not None and line:
                prefixed = line if line.startswith(f"{self.program}:") else f"{self.program}: {line}"
                self.on_message.write(prefixed + "\n")
                self.on_message.flush()
        self._relayed = len(self.messages)

    def _copy(self, source: int, out: IO[bytes], sink: int) -> None:
        """The capture's bytes into the file and on to the analysis (which may stop reading early)."""
        analysing = True
        try:
            while True:
                piece = os.read(source, _COPY_PIECE)
                if not piece:
                    break
                out.write(piece)
                out.flush()
                if analysing:
                    try:
                        os.write(sink, piece)
                    except OSError:         # the analysis stopped (| head): keep saving the file
                        analysing = False
        finally:
            out.close()
            os.close(sink)

    def stop(self) -> None:
        """Ask the capture program to stop (it writes what it holds first); idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None or self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGINT)

    def wait_started(self) -> None:
        """LiveError when the program exited at once (no such interface, no permission, bad filter)."""
        proc = self._proc
        if proc is None:
            return
        try:
            status = proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            with self._relay_lock:
                self._started = True
                self._pass_on()
            return
        threading.Event().wait(0.1)         # its last lines reach _relay
        said = [m.removeprefix(f"{self.program}: ") for m in self.messages if m][-2:]
        raise LiveError(f"{self.program} failed: {' '.join(said) or f'exit status {status}'}")

    def close(self) -> None:
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._copier is not None:
            self._copier.join(timeout=5)
        if self._read_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._read_fd)
            self._read_fd = -1


def stop_on_signals(capture: LiveCapture, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """The first Ctrl-C (or SIGTERM) stops the capture and lets the analysis finish what it read;
    a second one interrupts at once (KeyboardInterrupt)."""
    seen = {"n": 0}

    def handler(signum: int, frame: FrameType | None) -> None:
        seen["n"] += 1
        if seen["n"] > 1:
            raise KeyboardInterrupt
        capture.stop()

    for sig in signals:
        signal.signal(sig, handler)
