"""The `ws-analyzer` command: report, summary, frames and export subcommands over analyzer.analyze().

Exit status:
  0    success, also when a reader such as `head` closes our stdout early, and also when a capture
       is damaged but partly readable (cut short, a corrupt record): the output of what was read,
       then one `ws-analyzer: warning: CAPTURE: damaged: …` line on stderr per damaged capture;
  2    bad usage, or a capture with nothing readable (not a capture, empty, missing): one
       `ws-analyzer: error: …` line on stderr, never a traceback;
  1    out of memory (one `ws-analyzer: error: out of memory while …` line), or an internal error
       (one line; the traceback only with WS_ANALYZER_DEBUG=1);
  130  interrupted.
Every message on stderr is one line: control characters and newlines (from file names, captured
text) are shown escaped. Output degrades on a terminal that is not UTF-8: what its encoding cannot
show is written as backslash escapes, the tool's own arrows, quotes and dashes as ASCII.
Heavy modules (pandas, matplotlib, the pipeline) are imported inside the command functions so that
`--help` stays quick.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

PROG = "ws-analyzer"

EPILOG = """\
examples:
  ws-analyzer summary capture.pcapng            headline numbers as text
  ws-analyzer summary --json a.pcap b.pcap.gz   the same as JSON, for two captures
  ws-analyzer frames capture.pcap | less -S     every frame, one line each
  ws-analyzer frames --port 9000 mid.pcap       decode port 9000 as WebSocket without a handshake
  ws-analyzer report capture.pcapng -o out/     out/index.html, figures, CSV and Parquet tables
  ws-analyzer export capture.pcap --format parquet -o tables/

Frame flags: F = FIN, 1 2 3 = RSV1-3, M = MASK ('-' where the bit is clear).
"""


#: problem kinds that mean the capture file itself is damaged (the reader's, not the traffic's)
DAMAGE_KINDS = ("capture-truncated", "capture-unreadable")

#: ASCII stand-ins for the symbols our own text uses, where stdout's encoding lacks them
_SYMBOLS = {"→": "->", "“": '"', "”": '"', "…": "...", "—": "-", "×": "x"}


class UsageError(Exception):
    """A problem with the command line found after parsing (reported like argparse errors)."""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {value}")
    return value


def _size(text: str) -> int:
    """A byte count, with an optional k/M/G suffix (powers of 1024)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    mult = units.get(t[-1:], 1)
    try:
        value = int(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1048576, 512k, 16M)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("--jobs must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    from analyzer import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description="Look inside WebSocket traffic in pcap/pcapng captures: frames, messages, "
                               "close codes, protocol versions; text, tables, plots and an HTML report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap or pcapng file (gzipped or not)")
    common.add_argument("--port", type=_port, action="append", metavar="N", default=[],
                        help="treat TCP port N as WebSocket even with no handshake in the capture "
                             "(repeatable)")
    common.add_argument("--max-message-bytes", type=_size, default=16 << 20, metavar="SIZE",
                        help="largest frame or message buffered/decompressed (default 16M)")
    common.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                        help="worker processes (default: one per core); several captures run side by "
                             "side and a capture of 64 MiB or more is split between them")
    common.add_argument("--no-utf8-check", action="store_true",
                        help="skip UTF-8 validation of text messages and close reasons (faster)")
    common.add_argument("--preview-chars", type=int, default=64, metavar="N",
                        help="characters of message previews kept (0: none, faster; default 64)")
    common.add_argument("-q", "--quiet", action="store_true", help="print nothing but the requested output")
    common.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("report", parents=[common], help="write an HTML report with figures and tables",
                       description="Write DIR/index.html (self-contained), figures as PNG and SVG, and the "
                                   "tables as CSV and Parquet.")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("summary", parents=[common], help="print headline statistics",
                       description="Print headline statistics: connections, frames, messages, close codes, "
                                   "versions, problems, sizes and round-trip times.")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("frames", parents=[common], help="list every frame, one line each",
                       description="List every WebSocket frame: record number, time since the first "
                                   "frame, connection, direction, opcode, flags (F=FIN, 1-3=RSV, M=MASK), "
                                   "payload length, and the close code or the message the frame completes.")
    p.add_argument("--conn", type=int, action="append", metavar="ID", default=[],
                   help="only this connection id (repeatable)")
    p.set_defaults(func=cmd_frames)

    p = sub.add_parser("export", parents=[common], help="write the four tables as CSV, Parquet or JSON",
                       description="Write connections, frames, messages and problems into DIR "
                                   "(or, for --format json, into one FILE.json).")
    p.add_argument("--format", choices=("csv", "parquet", "json"), default="csv", help="default: csv")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (or FILE.json)")
    p.add_argument("--payloads", action="store_true", help="keep whole message payloads (hex in CSV/JSON)")
    p.set_defaults(func=cmd_export)
    return parser


# --- commands -----------------------------------------------------------------------------------

def _analyze(args: argparse.Namespace, payloads: bool = False) -> Any:
    from analyzer.api import analyze
    from analyzer.stats import printable

    seen: set[str] = set()
    captures = []
    for path in args.captures:  # the same file twice would count everything twice
        key = os.path.realpath(path)
        if key in seen:
            if not args.quiet:
                sys.stderr.write(f"{PROG}: note: {printable(path)} given more than once; reading it once\n")
            continue
        seen.add(key)
        captures.append(path)
    a = analyze(captures, ports=args.port or None, max_message_bytes=args.max_message_bytes,
                payloads=payloads, progress=not (args.quiet or args.no_progress), jobs=args.jobs,
                validate_utf8=not args.no_utf8_check, preview_len=max(0, args.preview_chars))
    args.warnings = damage_warnings(a)
    return a


def damage_warnings(a: Any) -> list[str]:
    """One `warning: CAPTURE: damaged: …` line per capture with DAMAGE_KINDS problem rows."""
    from analyzer.stats import printable

    p = a.problems
    damaged = p[p["kind"].astype("object").isin(DAMAGE_KINDS)]
    lines = []
    for capture, rows in damaged.groupby(damaged["capture"].astype("object"), sort=False):
        more = len(rows) - 1
        detail = str(rows["detail"].iloc[0]).removeprefix(f"{capture}: ")
        lines.append(f"{PROG}: warning: {printable(capture)}: damaged: {printable(detail)}"
                     + (f" (and {more:,} more such problem{'s' if more > 1 else ''})" if more else ""))
    return lines


def _symbols(text: str) -> str:
    """`text` with the symbols stdout's encoding cannot show replaced by ASCII (see _SYMBOLS)."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    missing = {}
    for char, ascii_text in _SYMBOLS.items():
        try:
            char.encode(encoding)
        except (UnicodeEncodeError, LookupError):
            missing[ord(char)] = ascii_text
    return text.translate(missing) if missing else text


def cmd_report(args: argparse.Namespace) -> int:
    from analyzer.report import write_report

    a = _analyze(args)
    args.doing = "writing the report"
    index = write_report(a, args.output)
    if not args.quiet:
        print(index)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    import json

    from analyzer.stats import json_safe

    a = _analyze(args)
    args.doing = "computing the summary"
    s = a.summary()
    if not args.json:
        print(_symbols(str(s)))
        return 0
    text = json_safe(json.dumps(s.to_dict(), indent=2, ensure_ascii=False))
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(s.to_dict(), indent=2)  # every non-ASCII character as \uNNNN
    print(text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from analyzer.export import export

    a = _analyze(args, payloads=args.payloads)
    args.doing = "writing the tables"
    paths = export(a, args.output, args.format)
    if not args.quiet:
        print("\n".join(paths))
    return 0


def cmd_frames(args: argparse.Namespace) -> int:
    a = _analyze(args)
    args.doing = "listing the frames"
    out = sys.stdout
    for chunk in frame_lines(a, conns=args.conn, arrow=_symbols("→")):
        out.write(_symbols(chunk))
    return 0


def frame_lines(a: Any, conns: Sequence[int] = (), chunk: int = 5000, arrow: str = "→") -> Any:
    """The `frames` listing as text chunks (header first), columns aligned, control characters escaped.

    `arrow` joins the two ends in the direction column ("->" for a terminal without "→").
    """
    import pandas as pd

    from analyzer.protocol import close_code_name
    from analyzer.stats import _CONTROL

    f = a.frames
    if conns:
        f = f[f["conn_id"].isin(list(conns))]
    if f.empty:
        yield "no WebSocket frames\n"
        return
    m = a.messages[["conn_id", "message_id", "type", "size", "preview", "last_frame_no"]]
    f = f.reset_index(drop=True)
    j = f[["conn_id", "message_id", "frame_no"]].merge(
        m.astype({"message_id": "Int64"}), on=["conn_id", "message_id"], how="left")
    t0 = f["ts"].min()

    def text(s: pd.Series) -> pd.Series:
        return s.astype("string").fillna("").str.translate(_CONTROL)

    def shortened(s: pd.Series, limit: int, more: str = "") -> pd.Series:
        """The first `limit` characters (cut before escaping, so no escape is cut), `more` if cut."""
        raw = s.astype("string").fillna("")
        short = raw.str.slice(0, limit).str.translate(_CONTROL)
        return short.where(raw.str.len() <= limit, short + more)

    def bit(s: pd.Series, char: str) -> pd.Series:
        return s.map({True: char, False: "-"}).astype("string")

    cols: dict[str, pd.Series] = {}
    if len(a.captures) > 1:
        cols["capture"] = text(f["capture"])
    cols["frame"] = f["frame_no"].astype("string")
    cols["time"] = (f["ts"] - t0).dt.total_seconds().map("{:.6f}".format).astype("string")
    cols["conn"] = f["conn_id"].astype("string")
    cols["direction"] = f["sender"].astype("object").map({"client": f"client{arrow}server",
                                                          "server": f"server{arrow}client"}).astype("string")
    cols["opcode"] = f["opcode_name"].astype("string")
    cols["flags"] = bit(f["fin"], "F") + bit(f["rsv1"], "1") + bit(f["rsv2"], "2") + bit(f["rsv3"], "3") \
        + bit(f["masked"], "M")
    cols["length"] = f["payload_len"].astype("string")

    info = pd.Series("", index=f.index, dtype="string")
    is_close = f["opcode"] == 8
    if is_close.any():
        code = f["close_code"]
        names = code.map(lambda c: close_code_name(int(c)) if pd.notna(c) else "").astype("string")
        reason = shortened(f["close_reason"], 60)
        close_txt = (code.astype("string").fillna("no status code") + " " + names).str.strip()
        close_txt = close_txt + reason.where(reason == "", " “" + reason + "”")
        info = info.mask(is_close, close_txt)
    completes = (j["last_frame_no"] == j["frame_no"]).fillna(False).to_numpy(dtype=bool)
    if completes.any():
        short = shortened(j["preview"], 48, "…")
        msg = (j["type"].astype("string") + " message, " + j["size"].astype("Int64").astype("string") + " B: "
               + short.where(j["type"] != "text", "“" + short + "”"))
        info = info.mask(completes, msg)
    fragment = f["message_id"].notna().to_numpy() & ~completes
    if fragment.any():
        info = info.mask(fragment, "fragment of message " + f["message_id"].astype("string"))
    has_rtt = f["rtt"].notna()
    if has_rtt.any():
        info = info.mask(has_rtt, "rtt " + (f["rtt"] * 1000).map("{:.3f}".format).astype("string") + " ms")
    cols["info"] = info

    left = {"capture", "direction", "opcode", "flags", "info"}
    padded = []
    for name, s in cols.items():
        if name == "info":
            padded.append(s)
            continue
        width = max(int(s.str.len().max()), len(name))
        side = "right" if name in left else "left"
        padded.append(s.str.pad(width, side=side))
        cols[name] = pd.Series([name.ljust(width) if side == "right" else name.rjust(width)], dtype="string")
    header = "  ".join(str(c.iloc[0]) if n != "info" else "info" for n, c in cols.items())
    lines = padded[0]
    for s in padded[1:]:
        lines = lines + "  " + s
    lines = lines.str.rstrip()
    yield header + "\n"
    values = lines.tolist()
    for i in range(0, len(values), chunk):
        yield "\n".join(values[i:i + chunk]) + "\n"


# --- entry point --------------------------------------------------------------------------------

def _error(message: str, status: int = 2) -> int:
    """One `ws-analyzer: error:` line; control characters and newlines in `message` are escaped."""
    from analyzer.stats import printable

    sys.stderr.write(f"{PROG}: error: {printable(message)}\n")
    return status


def _tolerant_streams() -> None:
    """Let stdout and stderr write what their encoding cannot show as backslash escapes."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # a stream that cannot change
                reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    _tolerant_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.doing, args.warnings = "analysing the captures", []
    try:
        from analyzer.capture import CaptureError

        try:
            status = args.func(args)
            sys.stdout.flush()
            for line in args.warnings:
                sys.stderr.write(line + "\n")
            return status
        except CaptureError as exc:
            return _error(str(exc))
        except MemoryError:
            return _error(f"out of memory while {args.doing}", 1)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            return _error(f"{where}{exc.strerror or exc}")
    except BrokenPipeError:
        # The reader (head, less…) stopped reading: not an error. Point stdout at /dev/null so the
        # interpreter's final flush does not complain, and leave quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:
        # A bug, not bad input: one line, unless WS_ANALYZER_DEBUG asks for the traceback.
        if os.environ.get("WS_ANALYZER_DEBUG"):
            raise
        from analyzer.stats import printable

        sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}: {printable(exc)} "
                         "(set WS_ANALYZER_DEBUG=1 for the traceback)\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
