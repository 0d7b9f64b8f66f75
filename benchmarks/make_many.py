"""Record many small captures of different shapes for the cluster benchmark (benchmarks/cluster_scaling.py).

    python benchmarks/make_many.py [--out /tmp/bench/many] [--per-shape 4] [--packets 20000]

Each capture is real traffic recorded by benchmarks/make_capture.py's record() (websockets and aiohttp
servers and clients on loopback, tcpdump on lo), with the traffic's knobs set per shape and the
clients' random seeds changed per capture:

* mixed:     make_capture's own mix (chat, binary up to 256 KB, pings; 40 % permessage-deflate)
* chat:      90 % small chat messages, every connection with permessage-deflate
* bulk:      binary messages of 256 B-4 KB only, no compression, 20 connections
* streaming: 200 connections each with 16 messages in flight (frames share packets)
* tls:       the mixed traffic over TLS 1.3 (wss://); the key log beside it (<capture>.keylog)

Files are named many-NN-<shape>.pcap (never a ring buffer's names: analyze() reads them as separate
captures). A file already there is kept (delete the folder to record again). Needs root and tcpdump.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

import benchmarks.make_capture as mc  # noqa: E402
from benchmarks.tls_material import TlsSetup, make_certificate  # noqa: E402

#: this benchmark's own ports (make_capture takes the first free ones from here), away from others'
BASE_PORT = 28460

#: per shape, the make_capture globals it changes
SHAPES: dict[str, dict[str, Any]] = {
    "mixed": {},
    "chat": {"MIX": [(90.0, "chat", 0, 0), (8.0, "bin", 2, 512), (2.0, "ping", 4, 16)],
             "DEFLATE_SHARE": 1.0},
    "bulk": {"MIX": [(100.0, "bin", 256, 4096)], "DEFLATE_SHARE": 0.0, "CONNECTIONS": 20},
    "streaming": {"WINDOWS": [(1, 16)], "CONNECTIONS": 200},
    "tls": {},
}


@contextlib.contextmanager
def shaped(shape: str, seed: int) -> Iterator[None]:
    """make_capture's knobs set for `shape`, and its clients' seeds moved by `seed`, for the block
    (the traffic processes are forked, so they see the module as it is here)."""
    changes = {"BASE_PORT": BASE_PORT, **SHAPES[shape]}
    original_clients = mc.run_clients

    def run_clients(n: int, client_seed: int, *rest: Any) -> None:
        original_clients(n, client_seed + 100 * seed, *rest)

    saved = {name: getattr(mc, name) for name in changes}
    try:
        for name, value in changes.items():
            setattr(mc, name, value)
        setattr(mc, "run_clients", run_clients)     # noqa: B010 (a function of another signature)
        yield
    finally:
        for name, value in saved.items():
            setattr(mc, name, value)
        setattr(mc, "run_clients", original_clients)     # noqa: B010


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench/many"))
    ap.add_argument("--per-shape", type=int, default=4)
    ap.add_argument("--packets", type=int, default=20_000)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    number = 0
    with tempfile.TemporaryDirectory(prefix="make-many-") as tmp:
        for k in range(args.per_shape):
            for shape in SHAPES:
                number += 1
                out = args.out / f"many-{number:02}-{shape}.pcap"
                if out.exists():
                    continue
                tls = (TlsSetup("1.3", *make_certificate(Path(tmp))) if shape == "tls" else None)
                print(f"{out.name}: {shape}, seed {k}", flush=True)
                with shaped(shape, k):
                    meta = mc.record(args.packets, out, max_seconds=120, tls=tls)
                print(f"  {meta['tcpdump'].get('captured', 0):,} packets, {out.stat().st_size / 1e6:.1f} MB, "
                      f"dropped {meta['tcpdump'].get('dropped', 0)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
