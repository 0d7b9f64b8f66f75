"""Fixed costs of a run (issue 21): what is imported, and how the command exits.

* importing analyzer, analyzer.tls and analyzer.h2 does not import cryptography (TLS) nor hpack /
  hyperframe (HTTP/2); their names load on first use and are the defining modules' objects;
* the console entry (`python -m analyzer`, analyzer.__main__.console) prints exactly what
  cli.main() prints in-process, exits with its status, runs the atexit handlers, and leaves with
  os._exit only after stdout and stderr are flushed.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.__main__ import exit_status
from analyzer.cli import main

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
PLAIN = CAPTURES / "aiohttp_compress.pcap"      # ws:// with permessage-deflate, no TLS, no HTTP/2
HEAVY = ("cryptography", "hpack", "hyperframe")


def _modules_after(code: str) -> dict[str, bool]:
    """Run `code` in a fresh interpreter; which of HEAVY it left in sys.modules."""
    probe = code + f"\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_package_imports_leave_tls_and_h2_libraries_out() -> None:
    loaded = _modules_after("import analyzer, analyzer.tls, analyzer.h2\n"
                            "from analyzer.tls import KeyLog, KeyLogError, looks_like_tls\n"
                            "from analyzer.h2 import H2Data, H2Out, handshake_from_h2")
    assert loaded == {m: False for m in HEAVY}


def test_asking_for_a_session_loads_its_library() -> None:
    assert _modules_after("from analyzer.tls import TlsSession")["cryptography"]
    assert _modules_after("from analyzer.h2 import H2Session")["hpack"]


@pytest.mark.parametrize("package", ["analyzer.tls", "analyzer.h2"])
def test_lazy_names_are_the_defining_modules_objects(package: str) -> None:
    pkg = importlib.import_module(package)
    for name in pkg.__all__:
        value = getattr(pkg, name)
        home = importlib.import_module(f"{package}.{pkg._HOME[name]}")
        assert value is getattr(home, name), name
    with pytest.raises(AttributeError, match="no_such_name"):
        pkg.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec(f"from {package} import no_such_name", {})


def test_submodules_still_import_through_the_package() -> None:
    from analyzer.tls import hello, records

    assert hello.__name__ == "analyzer.tls.hello" and records.looks_like_tls(b"\x16\x03\x01\x00\x05")


def test_console_prints_what_main_prints_and_exits_with_its_status(tmp_path: Path) -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["summary", "--json", str(PLAIN)]) == 0
    out = tmp_path / "summary.json"
    with out.open("wb") as f:       # a file, not a pipe: what is not flushed before os._exit is lost
        proc = subprocess.run([sys.executable, "-m", "analyzer", "summary", "--json", str(PLAIN)],
                              stdout=f, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == buf.getvalue()
    assert json.loads(out.read_text())


def test_console_error_status_and_message() -> None:
    proc = subprocess.run([sys.executable, "-m", "analyzer", "summary", "/nonexistent/x.pcap"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "no such file" in proc.stderr
    usage = subprocess.run([sys.executable, "-m", "analyzer", "--no-such-option"], capture_output=True,
                           text=True, timeout=120)
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_console_runs_atexit_handlers_after_the_output() -> None:
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stdout.write('atexit ran\\n'))\n"
            "from analyzer.__main__ import console\n"
            "console(['--version'])\n"
            "print('not reached')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "atexit ran" and "not reached" not in proc.stdout
    assert len(lines) == 2 and lines[0]       # the version line, then the handler's


def test_console_waits_for_a_running_thread() -> None:
    """A non-daemon thread still running at the end: the ordinary exit, which waits for it."""
    code = ("import threading, time, sys\n"
            "import analyzer.cli\n"
            "def late():\n"
            "    time.sleep(0.3)\n"
            "    sys.stdout.write('thread done\\n')\n"
            "def fake_main(argv=None):\n"
            "    threading.Thread(target=late).start()\n"
            "    return 3\n"
            "import analyzer.__main__ as m\n"
            "m.main = fake_main\n"
            "m.console()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and proc.stdout == "thread done\n"


def test_exit_status_as_the_interpreter() -> None:
    assert exit_status(None) == 0
    assert exit_status(2) == 2
    assert exit_status(256 + 7) == 7
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert exit_status("fatal: bad") == 1
    assert err.getvalue() == "fatal: bad\n"
