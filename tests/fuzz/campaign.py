"""A plain random-mutation fuzz campaign over every stage (no coverage guidance, reproducible).

    python tests/fuzz/campaign.py --inputs 100000 --seed 1            # all targets, weighted
    python tests/fuzz/campaign.py --inputs 5000 --target frames --save

Each input is a seed from tests/fuzz/targets.py (real bytes from the repository's captures)
mutated the way Wireshark's fuzz-test.sh does with `editcap -E` (random byte errors), plus
inserts, deletions, duplications, splices, interesting integers and truncation. A failure (an
exception escaping a stage, or a broken invariant) is reported once per (target, exception type,
innermost analyzer line); with --save its input goes to tests/fuzz/crashers/<target>/.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from tests.fuzz.targets import CRASHERS, TARGETS, seeds  # noqa: E402

#: Relative share of the inputs per target (whole-pipeline targets are slower per input).
WEIGHTS = {"handshake": 12, "frames": 14, "hixie": 8, "messages": 12, "inflate": 8, "reassembler": 12,
           "packets": 12, "capture": 8, "pipeline": 12, "analyze": 2}

_INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\x7e", b"\xff\xff", b"\x00\x00",
                b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x00\x00\x00",
                b"\x7f\xff\xff\xff\xff\xff\xff\xff", b"\r\n", b"\r\n\r\n", b"\n--8<--\n")


def mutate(data: bytes, rng: random.Random, pool: tuple[bytes, ...]) -> bytes:
    """1-8 random edits; byte errors dominate, as in editcap -E."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        op = rng.random()
        n = len(buf)
        if op < 0.35 and n:                                   # editcap -E: random byte errors
            for _ in range(rng.choice((1, 1, 2, 4, 16))):
                buf[rng.randrange(n)] = rng.randrange(256)
        elif op < 0.45 and n:                                 # bit flip
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op < 0.55:                                       # interesting values
            v = rng.choice(_INTERESTING)
            i = rng.randrange(n + 1)
            if rng.random() < 0.5:
                buf[i:i + len(v)] = v
            else:
                buf[i:i] = v
        elif op < 0.65:                                       # insert random bytes
            i = rng.randrange(n + 1)
            buf[i:i] = rng.randbytes(rng.choice((1, 2, 4, 16, 200)))
        elif op < 0.75 and n:                                 # delete a range
            i = rng.randrange(n)
            del buf[i:i + rng.choice((1, 2, 4, 16, 300))]
        elif op < 0.82 and n:                                 # duplicate a range
            i = rng.randrange(n)
            j = min(n, i + rng.choice((4, 16, 100, 2000)))
            k = rng.randrange(n + 1)
            buf[k:k] = buf[i:j]
        elif op < 0.88 and pool:                              # splice with another seed
            other = rng.choice(pool)
            if other:
                i = rng.randrange(len(other))
                k = rng.randrange(n + 1)
                buf[k:] = other[i:i + rng.randrange(1, 4000)] + buf[k:]
        elif n:                                               # truncate
            del buf[rng.randrange(n):]
    return bytes(buf)


def signature(target: str, exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inner = [f for f in frames if "/analyzer/" in f.filename] or frames[-1:]
    where = f"{os.path.basename(inner[-1].filename)}:{inner[-1].lineno}" if inner else "?"
    return f"{target}: {type(exc).__name__} at {where}: {str(exc)[:120]}"


def run(total: int, seed: int, targets: list[str], save: bool, report_every: float = 30.0) -> int:
    rng = random.Random(seed)
    pools = {t: seeds(t) for t in targets}
    weights = [WEIGHTS.get(t, 1) for t in targets]
    found: dict[str, tuple[str, bytes]] = {}
    counts = dict.fromkeys(targets, 0)
    start = last = time.monotonic()
    for i in range(total):
        target = rng.choices(targets, weights)[0]
        pool = pools[target]
        data = mutate(rng.choice(pool), rng, pool) if pool else rng.randbytes(rng.randrange(200))
        counts[target] += 1
        try:
            TARGETS[target](data)
        except Exception as exc:   # the point of the campaign
            sig = signature(target, exc)
            if sig not in found or len(data) < len(found[sig][1]):
                if sig not in found:
                    print(f"[{i}] NEW {sig}", flush=True)
                found[sig] = (target, data)
        now = time.monotonic()
        if now - last > report_every:
            last = now
            print(f"... {i + 1}/{total} inputs, {len(found)} distinct failures, {now - start:.0f}s",
                  flush=True)
    print(f"done: {total} inputs in {time.monotonic() - start:.0f}s, per target {counts}")
    print(f"{len(found)} distinct failures")
    for sig, (target, data) in sorted(found.items()):
        print(f"  {sig}  ({len(data)} bytes)")
        if save:
            folder = os.path.join(CRASHERS, target)
            os.makedirs(folder, exist_ok=True)
            name = hashlib.sha1(data).hexdigest()[:12] + ".bin"
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target", action="append", choices=sorted(TARGETS))
    ap.add_argument("--save", action="store_true", help="store each failure's input under crashers/")
    args = ap.parse_args(argv)
    return run(args.inputs, args.seed, args.target or sorted(TARGETS), args.save)


if __name__ == "__main__":
    sys.exit(main())
