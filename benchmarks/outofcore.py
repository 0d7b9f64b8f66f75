"""Peak memory of the out-of-core Parquet export against analyze() + export() (issue 18).

Each measurement runs in a fresh child process (one analysis process, jobs=1, for both ways) that
reports its own peak RSS (ru_maxrss) and times; the output directory is removed afterwards.

    python3 benchmarks/outofcore.py /tmp/bench/bench-100k.pcap /tmp/bench/bench.pcap /tmp/ooc/bench-x4.pcap
    python3 benchmarks/outofcore.py FILE --only out-of-core      # one way only

A bigger capture from bench.pcap: copies appended, each shifted in time and with its own
addresses (copy k: 127.0.k.1 both ways), so that the analyzer sees k times the connections:
    python3 benchmarks/outofcore.py --make-big 4 /tmp/bench/bench.pcap /tmp/ooc/bench-x4.pcap
(`editcap -t` + `mergecap -a` copies keep the 5-tuples and sequence numbers: on four such copies
the analyzer found 1,422 TCP connections (two copies' worth) and 1,922,924 frames of 4 x 942,059.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time

WAYS = ("out-of-core", "in-memory")


def child(way: str, path: str, out: str) -> None:
    """One export in this process; prints a JSON line: seconds, peak RSS, rows written."""
    start = time.perf_counter()
    import pyarrow.parquet as pq

    import analyzer
    from analyzer.export import export
    from analyzer.outofcore import export_parquet
    imported_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if way == "out-of-core":
        paths = export_parquet(path, out).paths
    else:
        paths = export(analyzer.analyze(path, jobs=1), out, "parquet")
    rows = {os.path.basename(p).split(".")[0]: pq.ParquetFile(p).metadata.num_rows for p in paths}
    print(json.dumps({"seconds": time.perf_counter() - start, "import_rss_kb": imported_rss,
                      "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "rows": rows}))


def make_big(copies: int, source: str, target: str, shift_s: int = 200) -> None:
    """`copies` copies of an Ethernet/IPv4 pcap (microsecond) one after another (see the doc)."""
    record = struct.Struct("<IIII")
    with open(target, "wb") as out:
        for k in range(copies):
            with open(source, "rb") as f:
                header = f.read(24)
                if struct.unpack_from("<IH", header) != (0xA1B2C3D4, 2) or header[20:24] != b"\x01\0\0\0":
                    raise SystemExit(f"{source}: not a microsecond Ethernet pcap")
                if k == 0:
                    out.write(header)
                while head := f.read(16):
                    sec, usec, incl, orig = record.unpack(head)
                    packet = bytearray(f.read(incl))
                    if k and len(packet) >= 34 and packet[12:14] == b"\x08\x00":
                        packet[28] = packet[32] = k       # 127.0.0.1 → 127.0.k.1
                        packet[24:26] = b"\0\0"
                        words = sum(struct.unpack_from("!10H", packet, 14))
                        while words >> 16:
                            words = (words & 0xFFFF) + (words >> 16)
                        struct.pack_into("!H", packet, 24, ~words & 0xFFFF)
                    out.write(record.pack(sec + k * shift_s, usec, incl, orig))
                    out.write(packet)


def measure(way: str, path: str) -> dict[str, object]:
    out = tempfile.mkdtemp(prefix="ooc-bench-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        done = subprocess.run([sys.executable, __file__, "--child", way, path, out], capture_output=True,
                              text=True, check=True)
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--only", choices=WAYS)
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--make-big", type=int, metavar="N", help="write N copies of FILE into FILE2")
    args = parser.parse_args()
    if args.make_big:
        make_big(args.make_big, *args.files)
        return
    if args.child:
        child(args.child, *args.files)
        return
    print("| capture | size | frames | way | seconds | peak RSS (MB) |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for path in args.files:
        size = os.path.getsize(path) / 1e9
        for way in [args.only] if args.only else WAYS:
            r = measure(way, path)
            rows = r["rows"]
            assert isinstance(rows, dict)
            print(f"| {os.path.basename(path)} | {size:.2f} GB | {rows['frames']:,} | {way} | "
                  f"{r['seconds']:.0f} | {int(r['peak_rss_kb']) / 1024:.0f} |", flush=True)


if __name__ == "__main__":
    main()
