"""Coverage-guided fuzzing of one target with atheris (libFuzzer for Python), optional.

    pip install atheris
    python tests/fuzz/atheris_fuzz.py frames -runs=200000 -seed=1
    python tests/fuzz/atheris_fuzz.py capture -runs=50000 -max_len=65536

The corpus starts from the same seeds as campaign.py (written to /tmp/wsfuzz-corpus/<target>).
Failures do not stop the run: each distinct one (exception type + innermost analyzer line) is
printed and its smallest input stored under /tmp/wsfuzz-crashes/<target>/, to be turned into a
regression test under tests/fuzz/crashers/.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

with atheris.instrument_imports(include=["analyzer"]):
    from tests.fuzz.campaign import signature
    from tests.fuzz.targets import TARGETS, seeds


def main() -> None:
    target = sys.argv[1]
    fn = TARGETS[target]
    corpus = os.path.join("/tmp/wsfuzz-corpus", target)
    crashes = os.path.join("/tmp/wsfuzz-crashes", target)
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(crashes, exist_ok=True)
    for data in seeds(target):
        name = hashlib.sha1(data).hexdigest()[:16]
        path = os.path.join(corpus, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
    found: dict[str, int] = {}
    count = [0]

    def one(data: bytes) -> None:
        count[0] += 1
        try:
            fn(data)
        except Exception as exc:   # every failure is recorded
            sig = signature(target, exc)
            if sig not in found or len(data) < found[sig]:
                if sig not in found:
                    print(f"\nNEW after {count[0]} inputs: {sig}", flush=True)
                found[sig] = len(data)
                digest = hashlib.sha1(sig.encode()).hexdigest()[:10]
                with open(os.path.join(crashes, digest + ".bin"), "wb") as f:
                    f.write(data)

    def summary() -> None:   # libFuzzer leaves through exit(): no finally runs
        print(f"\n{target}: {count[0]} inputs, {len(found)} distinct failures", flush=True)
        for sig in found:
            print("  ", sig, flush=True)

    atexit.register(summary)
    atheris.Setup([sys.argv[0], *sys.argv[2:], corpus], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
