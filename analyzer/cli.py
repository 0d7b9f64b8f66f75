"""The `ws-analyzer` command: report, summary, export, and the listings frames, messages, connections,
problems and follow over analyzer.analyze().

The listings share one set of options: `-Y/--filter` (analyzer.filters, on the listing's columns),
the shortcuts --conn, --host, --since, --until, `-t` time formats (analyzer.timefmt), `-T` output
formats and `-e` fields (analyzer.render); the tables they show are built in analyzer.listings.

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

from analyzer.formats import FORMATS

PROG = "ws-analyzer"

EPILOG = """\
examples:
  ws-analyzer summary capture.pcapng            headline numbers as text
  ws-analyzer connections capture.pcapng        one line per WebSocket connection
  ws-analyzer frames capture.pcap | less -S     every frame, one line each, problems among them
  ws-analyzer frames -Y "opcode == 'close' and sender == 'server'" capture.pcap
  ws-analyzer messages --conn 2 -Y "size > 1000" -T jsonl capture.pcap
  ws-analyzer follow --conn 2 --payload json capture.pcapng   one connection as a transcript
  ws-analyzer problems -e frame_no -e kind -T csv capture.pcap
  ws-analyzer frames --decode-as 9000 mid.pcap  decode port 9000 as WebSocket without a handshake
  ws-analyzer report capture.pcapng -o out/     out/index.html, figures, CSV and Parquet tables
  ws-analyzer export capture.pcap --format parquet -o tables/

Frame flags: F = FIN, 1 2 3 = RSV1-3, M = MASK ('-' where the bit is clear).
Filters (-Y): comparisons (== != < <= > >=), in [..], and/or/not (&& || !), contains, matches,
  on the listing's columns (an unknown name lists them); e.g. -Y "kind in ['tcp-gap']".
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

    decoding = argparse.ArgumentParser(add_help=False)      # what every analysis takes
    decoding.add_argument("--decode-as", "--port", dest="port", type=_port, action="append", metavar="PORT",
                          default=[], help="decode TCP port PORT as WebSocket even with no handshake in "
                                           "the capture (repeatable; --port is the old name)")
    decoding.add_argument("--keylog", action="append", metavar="FILE", default=[],
                          help="NSS key log (SSLKEYLOGFILE) to decrypt wss:// / TLS (repeatable; "
                               "$SSLKEYLOGFILE and the secrets a pcapng holds are used too)")
    decoding.add_argument("--max-message-bytes", type=_size, default=16 << 20, metavar="SIZE",
                          help="largest frame or message buffered/decompressed (default 16M)")
    decoding.add_argument("--no-utf8-check", action="store_true",
                          help="skip UTF-8 validation of text messages and close reasons (faster)")
    decoding.add_argument("--preview-chars", type=int, default=64, metavar="N",
                          help="characters of message previews kept (0: none, faster; default 64)")
    decoding.add_argument("-q", "--quiet", action="store_true", help="print nothing but the requested output")

    common = argparse.ArgumentParser(add_help=False, parents=[decoding])    # … of capture files
    common.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap or pcapng file (gzipped or not)")
    common.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                        help="worker processes (default: one per core); several captures run side by "
                             "side and a capture of 64 MiB or more is split between them")
    common.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    common.add_argument("--ring", action=argparse.BooleanOptionalAction, default=None,
                        help="the files are one rotated capture (tcpdump -G/-C, dumpcap -b), read as one "
                             "(default: when the names are one dumpcap ring or one tcpdump -C set)")

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

    listing = _listing_options()
    p = sub.add_parser("frames", parents=[common, listing], help="list every frame, one line each",
                       description="List every WebSocket frame: record number, time since the capture "
                                   "start, connection, direction, opcode, flags (F=FIN, 1-3=RSV, M=MASK), "
                                   "payload length, and the close code or the message the frame completes. "
                                   "Problem lines (TCP gaps, protocol violations) are interleaved in "
                                   "capture order.")
    p.add_argument("--no-problems", action="store_true", help="leave the problem lines out")
    _payload_options(p)
    p.set_defaults(func=cmd_frames, view="frames")

    p = sub.add_parser("messages", parents=[common, listing], help="list every message, one line each",
                       description="List every data message at the frame that completed it: time, "
                                   "connection, message id, direction, type, frames, size and a preview "
                                   "(INCOMPLETE when a TCP gap or the end of the capture cut it).")
    _payload_options(p)
    p.set_defaults(func=cmd_listing, view="messages")

    p = sub.add_parser("connections", parents=[common, listing], help="list the WebSocket connections",
                       description="List every WebSocket connection: id, start, duration, endpoints, "
                                   "draft, HTTP status, messages, close code, how it ended, host and path.")
    p.set_defaults(func=cmd_listing, view="connections")

    p = sub.add_parser("problems", parents=[common, listing], help="list the problems, one line each",
                       description="List every protocol violation and capture defect in capture order.")
    p.set_defaults(func=cmd_listing, view="problems")

    p = sub.add_parser("app", parents=[common, listing],
                       help="list what the applications said (MQTT, STOMP, Socket.IO, GraphQL, JSON-RPC…)",
                       description="List every application message decoded inside the WebSocket messages "
                                   "(the decoder chosen by the negotiated subprotocol, else by content): "
                                   "protocol, type, topic/destination/event/method, correlation id, status "
                                   "and a few decoded fields.")
    p.set_defaults(func=cmd_listing, view="app")

    p = sub.add_parser("exchanges", parents=[common, listing],
                       help="list requests paired with their responses, with latency",
                       description="List every request paired with its response (JSON-RPC ids, Socket.IO "
                                   "acks, MQTT packet ids, STOMP receipts, GraphQL operations, Jupyter "
                                   "replies): method or topic, latency and status; unanswered requests too.")
    p.set_defaults(func=cmd_listing, view="exchanges")

    p = sub.add_parser("follow", parents=[common, listing], help="one connection as a transcript",
                       description="Show one connection (--conn ID) as a transcript, as tshark -z follow and "
                                   "the browser's DevTools show it: time, direction, type, size and the "
                                   "whole payload as text (default), pretty JSON or hex.")
    _payload_options(p, default="text")
    p.set_defaults(func=cmd_follow, view="follow")

    p = sub.add_parser("live", parents=[decoding, listing],
                       help="capture from an interface, rows as they come",
                       description="Capture from an interface with tcpdump (or dumpcap) and list the frames "
                                   "(or --view messages/problems) as packets arrive; a status line on stderr "
                                   "now and then; Ctrl-C stops the capture, the last rows and the summary "
                                   "follow. Capturing needs the rights tcpdump needs (root or CAP_NET_RAW).")
    p.add_argument("-i", "--interface", required=True, metavar="IFACE", help="the interface (as tcpdump -i)")
    p.add_argument("bpf", nargs="*", metavar="FILTER",
                   help="a capture filter as tcpdump takes it, e.g. tcp port 8080")
    p.add_argument("-w", "--write", metavar="FILE",
                   help="also save the capture to FILE (pcap; pcapng with dumpcap)")
    p.add_argument("--view", choices=("frames", "messages", "problems"), default="frames",
                   help="what to list (default frames)")
    p.add_argument("--capture-with", choices=("tcpdump", "dumpcap"), default=None,
                   help="the capture program (default: tcpdump, else dumpcap)")
    p.add_argument("--status-every", type=float, default=10.0, metavar="SECONDS",
                   help="a status line on stderr every SECONDS of capture (0: none; default 10)")
    p.add_argument("--no-problems", action="store_true", help="leave the problem lines out of the frames")
    _payload_options(p)
    p.set_defaults(func=cmd_live, jobs=1, ring=None, host=[], no_progress=True)

    p = sub.add_parser("export", parents=[common],
                       help="write the tables (CSV, Parquet, JSON) or Zeek, Suricata EVE or HAR logs",
                       description="Write connections, frames, messages, problems, app_messages and "
                                   "exchanges into DIR (or, for --format json, into one FILE.json); eve "
                                   "and har write one file into DIR, zeek and zeek-json websocket.log and, "
                                   "when requests were paired, websocket_app.log.")
    p.add_argument("--format", choices=FORMATS, default="csv",
                   help="default: csv; zeek, zeek-json, eve, har: one file in that tool's format")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (or FILE.json)")
    p.add_argument("--payloads", action="store_true", help="keep whole message payloads (hex in CSV/JSON)")
    p.add_argument("--scheduler", metavar="local|ADDRESS",
                   help="analyse the captures on a Dask cluster, one task each (needs the cluster "
                        "extra): local (a cluster of --jobs processes on this machine) or a running "
                        "scheduler's address such as tcp://host:8786, whose workers must see the "
                        "captures, key logs and DIR at the same absolute paths. With --format parquet "
                        "the workers write DIR/TABLE/capture=NAME/part.0.parquet (conn_id numbered "
                        "within each capture); other formats are written here as without it")
    p.add_argument("--out-of-core", action=argparse.BooleanOptionalAction, default=None,
                   help="with --format parquet and one capture file (the default there): write frames "
                        "and messages as Parquet row groups while the capture is read, so memory does "
                        "not grow with the capture (one process, --jobs unused; within a row group "
                        "frames by frame_no, messages by conn_id and message_id); --no-out-of-core: "
                        "analyse in memory first, the tables sorted whole")
    p.set_defaults(func=cmd_export)
    return parser


def _listing_options() -> argparse.ArgumentParser:
    """The options every listing shares: filter, shortcuts, time and output formats, fields."""
    from analyzer.render import FORMATS

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-Y", "--filter", metavar="EXPR",
                   help="show only rows matching EXPR, on the listing's columns, e.g. "
                        "\"opcode_name == 'close' and sender == 'server'\" or \"size > 65536\"")
    p.add_argument("--conn", type=int, action="append", metavar="ID", default=[],
                   help="only this connection id (repeatable; an unknown id is an error)")
    p.add_argument("--host", action="append", metavar="HOST", default=[],
                   help="only connections with this client or server address or Host header (repeatable)")
    p.add_argument("--since", metavar="WHEN",
                   help="only from WHEN: seconds since the capture start, or a UTC date and time")
    p.add_argument("--until", metavar="WHEN", help="only up to WHEN (as --since)")
    p.add_argument("-t", "--time-format", type=_time_mode, default="r", metavar="FORMAT",
                   help="time as r: seconds since the capture's first packet (default), a or u: absolute "
                        "UTC, l: local, d: since the previous line shown, e: epoch seconds")
    p.add_argument("-T", "--output-format", choices=FORMATS, default="text",
                   help="text (aligned columns, default), json, jsonl, csv or tsv")
    p.add_argument("-e", "--field", action="append", metavar="COLUMN", default=[],
                   help="show this column (repeatable, in order); any column -Y can name")
    return p


def _payload_options(p: argparse.ArgumentParser, default: str | None = None) -> None:
    from analyzer.payloads import MODES

    p.add_argument("--payload", choices=MODES, default=default,
                   help="print each message's whole payload as text, pretty JSON or a hex dump"
                        + (f" (default {default})" if default else " under its line"))
    p.add_argument("-x", dest="payload", action="store_const", const="hex",
                   help="payloads as a hex dump (as tshark -x): --payload hex")


def _time_mode(text: str) -> str:
    from analyzer.timefmt import mode

    try:
        return mode(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- commands -----------------------------------------------------------------------------------

def _analyze(args: argparse.Namespace, payloads: bool = False) -> Any:
    from analyzer.api import analyze

    captures = _distinct_captures(args)
    a = analyze(captures, ports=args.port or None, max_message_bytes=args.max_message_bytes,
                payloads=payloads, progress=not (args.quiet or args.no_progress), jobs=args.jobs,
                validate_utf8=not args.no_utf8_check, preview_len=max(0, args.preview_chars),
                keylog=args.keylog or None, ring=args.ring)
    args.warnings = damage_warnings(a) + tls_warnings(a, bool(args.keylog))
    return a


def _distinct_captures(args: argparse.Namespace) -> list[str]:
    """The captures given, each file once (the same file twice would count everything twice)."""
    from analyzer.stats import printable

    seen: set[str] = set()
    captures = []
    for path in args.captures:
        key = os.path.realpath(path)
        if key in seen:
            if not args.quiet:
                sys.stderr.write(f"{PROG}: note: {printable(path)} given more than once; reading it once\n")
            continue
        seen.add(key)
        captures.append(path)
    return captures


def tls_warnings(a: Any, keylog_given: bool) -> list[str]:
    """One `note:` line when TLS connections were not decrypted: how many, why, and what to do."""
    from analyzer.stats import tls_counts

    t = tls_counts(a.connections)
    if not t["not_decrypted"]:
        return []
    why = "; ".join(f"{n} {reason}" for reason, n in t["why_not"].items())
    hint = ("check that the key log belongs to this capture" if keylog_given
            else "give the key log with --keylog FILE (SSLKEYLOGFILE of the client)")
    return [f"{PROG}: note: {t['not_decrypted']} of {t['tls']} TLS connections not decrypted ({why}): "
            f"{hint}; `{PROG} connections` lists them"]


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

    if args.scheduler:
        paths = _export_on_cluster(args)
    elif _out_of_core(args):
        paths = _export_out_of_core(args)
    else:
        a = _analyze(args, payloads=args.payloads)
        args.doing = "writing the tables"
        paths = export(a, args.output, args.format)
    if not args.quiet:
        print("\n".join(paths))
    return 0


def _out_of_core(args: argparse.Namespace) -> bool:
    """export's out-of-core way: asked for, or by default for Parquet from one capture file."""
    single = (len({os.path.realpath(c) for c in args.captures}) == 1 and args.captures[0] != "-"
              and not args.ring)
    if args.out_of_core and (args.format != "parquet" or not single or args.scheduler):
        raise UsageError("--out-of-core writes --format parquet from one capture file (not standard "
                         "input, a ring or --scheduler)")
    return bool(args.out_of_core if args.out_of_core is not None else args.format == "parquet" and single
                and not args.scheduler)


def _export_out_of_core(args: argparse.Namespace) -> list[str]:
    """export --out-of-core (analyzer.outofcore): the tables written while the capture is read."""
    from analyzer.outofcore import export_parquet
    from analyzer.progress import ProgressBar

    path = args.captures[0]
    bar = None if args.quiet or args.no_progress else ProgressBar(os.path.basename(path))
    try:
        written = export_parquet(path, args.output, progress=bar, ports=args.port or None,
                                 max_message_bytes=args.max_message_bytes, payloads=args.payloads,
                                 validate_utf8=not args.no_utf8_check, preview_len=max(0, args.preview_chars),
                                 keylog=args.keylog or None)
    finally:
        if bar is not None:
            bar.close()
    args.warnings = damage_warnings(written) + tls_warnings(written, bool(args.keylog))
    return written.paths


def _export_on_cluster(args: argparse.Namespace) -> list[str]:
    """export --scheduler: the captures analysed on a Dask cluster (analyzer.cluster), one task each;
    parquet written by the workers as a dataset partitioned by capture, the other formats here."""
    import types

    from analyzer.export import export

    try:
        from analyzer.cluster import analyze_many, cluster_client
    except ImportError as exc:
        raise UsageError(f"--scheduler needs Dask: pip install 'ws-analyzer[cluster]' ({exc})") from None
    if args.scheduler != "local" and "://" not in args.scheduler:
        raise UsageError(f"--scheduler: not a scheduler: {args.scheduler!r} (local, or an address "
                         "such as tcp://host:8786)")
    if args.scheduler != "local" and args.jobs is not None:
        raise UsageError("--jobs sets the workers of --scheduler local; a remote cluster has its own")
    if getattr(args, "ring", None):
        raise UsageError("--scheduler reads each file as its own capture: leave --ring out")
    captures = _distinct_captures(args)
    with cluster_client(args.scheduler, args.jobs) as client:
        many = analyze_many(captures, client, ports=args.port or None,
                            max_message_bytes=args.max_message_bytes, payloads=args.payloads,
                            validate_utf8=not args.no_utf8_check,
                            preview_len=max(0, args.preview_chars), keylog=args.keylog or None)
        args.doing = "writing the tables"
        if args.format != "parquet":
            a = many.compute()
            args.warnings = damage_warnings(a) + tls_warnings(a, bool(args.keylog))
            return export(a, args.output, args.format)
        paths = many.to_parquet(args.output)
        seen = types.SimpleNamespace(connections=many.gathered("connections"),
                                     problems=many.gathered("problems"))
    args.warnings = damage_warnings(seen) + tls_warnings(seen, bool(args.keylog))
    return paths


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Analyse, then resolve the shortcuts: (analysis, capture start, Selection)."""
    from analyzer import listings, timefmt

    a = _analyze(args, payloads=bool(getattr(args, "payload", None)))
    args.doing = f"listing the {args.view}"
    if args.conn:
        listings.check_conns(a, args.conn)
    origin = timefmt.capture_start(args.captures, a.connections["start"], a.frames["ts"], a.problems["ts"])
    sel = listings.Selection()
    if args.conn or args.host:
        conns = set(args.conn) if args.conn else None
        if args.host:
            by_host = listings.conns_of_hosts(a, args.host)
            conns = by_host if conns is None else conns & by_host
        sel.conns = conns
    if args.since:
        sel.since = listings.parse_when(args.since, origin)
    if args.until:
        sel.until = listings.parse_when(args.until, origin)
    return a, origin, sel


def _fields(args: argparse.Namespace, view: Any) -> list[str]:
    """The columns to show: -e COLUMN… (aliases allowed), else the view's defaults."""
    if not args.field:
        return list(view.columns)
    try:
        return [view.column(name) for name in args.field]
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


def _terminal_width() -> int | None:
    """The terminal's width when stdout is one (lines are cut to fit); None for pipes and files."""
    import shutil

    try:
        if not sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size().columns


def _emit(args: argparse.Namespace, rows: Any, view: Any, columns: list[str], origin: Any,
          blocks: Any = None, header: str | None = None, cut: bool = True) -> None:
    """Rows out in the chosen format, with the time column shown as -t asks."""
    from analyzer import render, timefmt
    from analyzer.stats import printable

    rows = rows.assign(time=timefmt.show(rows[view.ts], args.time_format, origin))
    out = sys.stdout
    if args.output_format != "text":
        render.write(rows, columns, args.output_format, out)
        return
    if header is not None:
        out.write(_symbols(printable(header)) + "\n")
    width = _terminal_width() if cut else None
    for chunk in render.text_lines(rows, columns, view.labels, max_width=width, blocks=blocks):
        out.write(_symbols(chunk))


def _with_payloads(args: argparse.Namespace, a: Any, rows: Any, keys: Any,
                   columns: list[str]) -> tuple[Any, list[str], Any]:
    """--payload: the payloads of the messages `keys` names, as blocks under the text lines or as a
    `payload` column in the other formats. Returns (rows, columns, blocks)."""
    from analyzer.listings import payload_texts

    if not getattr(args, "payload", None):
        return rows, columns, None
    payload = payload_texts(a, keys, args.payload)
    if args.output_format == "text":
        return rows, columns, payload
    return rows.assign(payload=payload), [*columns, "payload"] if "payload" not in columns else columns, None


def _listing_rows(args: argparse.Namespace, a: Any, origin: Any, sel: Any) -> tuple[Any, Any, list[str], Any]:
    """messages, connections, problems, app or exchanges of `a` as shown: (rows, view, columns,
    payload blocks)."""
    from analyzer import listings

    if args.view == "messages":
        view = listings.messages_view(a, origin, args.preview_chars if args.preview_chars > 0 else None)
        view = sel.apply(view)
    elif args.view == "connections":
        view = sel.apply(listings.connections_view(a, origin), end="end")
    elif args.view in ("app", "exchanges"):
        from analyzer.app.listing import app_view, exchanges_view

        view = sel.apply(app_view(a, origin) if args.view == "app" else exchanges_view(a, origin))
    else:
        view = sel.apply(listings.problems_view(a, origin))
    view = view.filter(args.filter)
    rows, columns, blocks = _with_payloads(args, a, view.rows, view.rows, _fields(args, view))
    return rows, view, columns, blocks


def _frames_rows(args: argparse.Namespace, a: Any, origin: Any, sel: Any) -> tuple[Any, Any, list[str], Any]:
    """The frames of `a` as shown, problem lines among them: (rows, view, columns, payload blocks)."""
    from analyzer import filters, listings

    view = sel.apply(listings.frames_view(a, origin, args.preview_chars if args.preview_chars > 0 else None))
    view = view.filter(args.filter)
    columns = _fields(args, view)
    rows = view.rows
    if args.output_format == "text" and not args.no_problems:
        problems = sel.apply(listings.problem_lines_for_frames(a, origin))
        if args.filter:
            known = set(problems.rows.columns) | set(problems.aliases)
            # a filter problems cannot answer (it names a frame column) hides them
            problems = problems.filter(args.filter) if filters.names(args.filter) <= known \
                else problems.keep(problems.rows.index.to_numpy() < 0)
        rows = listings.interleave(view, problems)
    keys = rows[["conn_id", "message_id"]].astype("Int64").where(rows["ends_message"].fillna(False)
                                                                   .astype(bool))
    rows, columns, blocks = _with_payloads(args, a, rows, keys, columns)
    return rows, view, columns, blocks


def _listing(args: argparse.Namespace, shown_rows: Any) -> int:
    """A listing, streamed where it can be (analyzer.streaming), else made after the analysis."""
    if _streamable(args):
        return _stream_listing(args, shown_rows)
    a, origin, sel = _prepare(args)
    rows, view, columns, blocks = shown_rows(args, a, origin, sel)
    _emit(args, rows, view, columns, origin, blocks)
    return 0


def cmd_listing(args: argparse.Namespace) -> int:
    """messages, connections, problems, app and exchanges."""
    return _listing(args, _listing_rows)


def cmd_frames(args: argparse.Namespace) -> int:
    return _listing(args, _frames_rows)


# --- streamed listings (analyzer.streaming) -------------------------------------------------------

#: seconds without a packet after which a pipe's or a live capture's rows so far are printed
IDLE_FLUSH_S = 0.2


def _streamable(args: argparse.Namespace) -> bool:
    """Listings of frames, messages and problems print their rows as the capture is read, unless
    what they show needs the whole capture first: --host (a connection's Host header may come after
    its first frames), several captures that are not one ring buffer, or --jobs N > 1 asked for."""
    if args.view not in ("frames", "messages", "problems") or args.host \
            or (args.jobs is not None and args.jobs > 1):
        return False
    captures = _distinct_captures(args)
    if len(captures) == 1:
        args.stream_path = captures[0]
        return True
    from analyzer.ring import reading_order, ring_files

    if args.ring is False or (args.ring is None and not ring_files(captures)):
        return False
    args.stream_path = list(reading_order(captures))
    return True


def _is_stream(path: str) -> bool:
    """A pipe or another non-file (standard input, a FIFO): rows are printed after a quiet spell."""
    import stat

    from analyzer.capture import STDIN

    try:
        mode = os.fstat(0).st_mode if path == STDIN else os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode)


def _stream_listing(args: argparse.Namespace, shown_rows: Any, observe: Any = None) -> int:
    """A listing printed as the capture is read: `shown_rows(args, a, origin, sel)` makes the lines of
    each stretch of rows (a Chunk standing in for the analysis) as for the whole analysis;
    `observe(chunk)` sees each stretch first. What is left at the end: args.stream_result."""
    import types

    import pandas as pd

    from analyzer import listings, timefmt
    from analyzer.outofcore import options_for
    from analyzer.render import ChunkedWriter
    from analyzer.streaming import stream_capture

    path = args.stream_path
    first_paths = [path] if isinstance(path, str) else path
    stream = isinstance(path, str) and _is_stream(path)
    origin = None if stream else timefmt.capture_start(first_paths)
    options = options_for(ports=args.port or None, max_message_bytes=args.max_message_bytes,
                          payloads=bool(getattr(args, "payload", None)),
                          preview_len=max(0, args.preview_chars),
                          validate_utf8=not args.no_utf8_check, keylog=args.keylog or None)
    state: dict[str, Any] = {"origin": origin, "sel": None, "writer": None, "last_ts": None}
    args.doing = f"listing the {args.view}"

    def selection(origin: Any) -> Any:
        sel = listings.Selection(set(args.conn) if args.conn else None)
        if args.since:
            sel.since = listings.parse_when(args.since, origin)
        if args.until:
            sel.until = listings.parse_when(args.until, origin)
        return sel

    def on_first(ts_ns: int) -> None:
        if state["origin"] is None:         # a pipe: its first packet, as a file's first record
            state["origin"] = pd.Timestamp(ts_ns, unit="ns", tz="UTC")

    def on_chunk(chunk: Any) -> None:
        if observe is not None:
            observe(chunk)
        if state["sel"] is None:
            state["sel"] = selection(state["origin"])
        a = types.SimpleNamespace(frames=chunk.frames, messages=chunk.messages, problems=chunk.problems,
                                  captures=[None])
        rows, view, columns, blocks = shown_rows(args, a, state["origin"], state["sel"])
        ts = rows[view.ts]
        if args.time_format == "d" and state["last_ts"] is not None and len(ts):
            shown = timefmt.show(pd.concat([pd.Series([state["last_ts"]]), ts], ignore_index=True), "d",
                                 state["origin"]).iloc[1:]
            shown.index = rows.index
        else:
            shown = timefmt.show(ts, args.time_format, state["origin"])
        if len(ts) and ts.notna().any():
            state["last_ts"] = ts.dropna().iloc[-1]
        if state["writer"] is None:
            state["writer"] = ChunkedWriter(args.output_format, columns, view.labels, sys.stdout,
                                            max_width=_terminal_width(), transform=_symbols)
        state["writer"].write(rows.assign(time=shown), blocks)

    tables = ("frames", "messages", "problems") if args.view == "frames" else (args.view,)
    result = stream_capture(path, options, on_chunk, tables=tables, idle=IDLE_FLUSH_S if stream else None,
                            on_first=on_first, capture_name=getattr(args, "stream_name", None))
    args.stream_result = result
    if args.conn:       # an unknown id: an error, and nothing printed if none of the ids had a row
        listings.check_conns(result, args.conn)
    if state["writer"] is not None:
        state["writer"].close()
    args.warnings = damage_warnings(result) + tls_warnings(result, bool(args.keylog))
    if result.ids_differing and not args.quiet:
        args.warnings.append(f"{PROG}: note: {result.ids_differing} connection ids in this listing were "
                             "given before an earlier-opened connection upgraded; `connections` has the "
                             "final ids")
    return 0


class _LiveStatus:
    """What a live capture has shown so far: a status line on stderr every `every` seconds, and
    the frames and messages kept for the summary at the end."""

    def __init__(self, every: float, quiet: bool) -> None:
        import time

        self.every, self.quiet = every, quiet
        self.started = self.last = time.monotonic()
        self.frames: list[Any] = []
        self.messages: list[Any] = []
        self.counts = {"frames": 0, "messages": 0, "problems": 0}
        self.conns: set[int] = set()

    def observe(self, chunk: Any) -> None:
        import time

        self.frames.append(chunk.frames)
        self.messages.append(chunk.messages.drop(columns="payload", errors="ignore"))
        self.counts["frames"] += len(chunk.frames)
        self.counts["messages"] += len(chunk.messages)
        self.counts["problems"] += len(chunk.problems)
        self.conns.update(chunk.frames["conn_id"].astype("int64").tolist())
        now = time.monotonic()
        if self.every > 0 and not self.quiet and now - self.last >= self.every:
            self.last = now
            sys.stderr.write(f"{PROG}: {now - self.started:.0f} s: {len(self.conns):,} connections, "
                             f"{self.counts['frames']:,} frames, {self.counts['messages']:,} messages, "
                             f"{self.counts['problems']:,} problems\n")
            sys.stderr.flush()

    def analysis(self, result: Any) -> Any:
        """The whole capture as an Analysis (for its summary)."""
        import pandas as pd

        from analyzer.api import Analysis

        def stacked(parts: list[Any]) -> Any:
            return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

        return Analysis(connections=result.connections, frames=stacked(self.frames),
                        messages=stacked(self.messages), problems=result.problems, captures=result.captures)


def cmd_live(args: argparse.Namespace) -> int:
    from analyzer.live import LiveCapture, LiveError, stop_on_signals

    status = _LiveStatus(args.status_every, args.quiet)
    try:
        with LiveCapture(args.interface, " ".join(args.bpf) or None, program=args.capture_with,
                         save_to=args.write, on_message=None if args.quiet else sys.stderr) as capture:
            capture.wait_started()
            stop_on_signals(capture)
            args.stream_path = capture.path
            args.stream_name = f"{args.interface} (live)"
            _stream_listing(args, _frames_rows if args.view == "frames" else _listing_rows, status.observe)
    except LiveError as exc:
        raise UsageError(str(exc)) from None
    if not args.quiet:          # the summary on stderr: stdout holds the listing (-T json…)
        args.warnings.append(str(status.analysis(args.stream_result).summary()).rstrip("\n"))
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    from analyzer import listings

    if len(args.conn) != 1:
        raise UsageError("follow shows one connection: give --conn ID (see `ws-analyzer connections`)")
    a, origin, sel = _prepare(args)
    view = sel.apply(listings.follow_view(a, args.conn[0], origin, args.payload))
    view = view.filter(args.filter)
    columns = _fields(args, view)
    rows, blocks = view.rows, None
    if args.output_format == "text" and columns[-1] == "payload":
        text = rows["payload"].astype("string")
        multi = text.str.contains("\n", regex=False).fillna(False)
        blocks = text.where(multi, "")
        rows = rows.assign(payload=text.mask(multi, ""))
    header = listings.follow_header(a, args.conn[0])
    _emit(args, rows, view, columns, origin, blocks, header=header, cut=False)
    return 0


def frame_lines(a: Any, conns: Sequence[int] = (), preview_width: int | None = None) -> Any:
    """The `frames` listing of an analysis as text chunks (header first), with problem lines, time
    since the capture start, control characters escaped; previews cut at `preview_width`."""
    from analyzer import listings, render, timefmt

    origin = timefmt.capture_start([c.path for c in a.captures], a.connections["start"], a.frames["ts"],
                                   a.problems["ts"])
    sel = listings.Selection(set(conns) if conns else None)
    view = sel.apply(listings.frames_view(a, origin, preview_width))
    rows = listings.interleave(view, sel.apply(listings.problem_lines_for_frames(a, origin)))
    rows = rows.assign(time=timefmt.show(rows["ts"], "r", origin))
    yield from render.text_lines(rows, view.columns, view.labels)


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
        from analyzer.filters import FilterError
        from analyzer.listings import SelectionError
        from analyzer.tls import KeyLogError

        try:
            status: int = args.func(args)
            sys.stdout.flush()
            for line in args.warnings:
                sys.stderr.write(line + "\n")
            return status
        except (CaptureError, KeyLogError, UsageError, FilterError, SelectionError) as exc:
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
