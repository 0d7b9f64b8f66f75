"""Record decryption cost per suite: microseconds per record for 100-byte and 16 KiB records.

Records are made by analyzer.tls.protection.RecordEncryptor and decrypted in sequence by one
RecordDecryptor, the way a TLS session does it; the best of --repeat runs is reported, as
µs/record and MB/s of plaintext. Runs in a few seconds.

    python benchmarks/tls_records.py
    python benchmarks/tls_records.py --repeat 7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analyzer.tls.keys import DirectionKeys, tls12_keys, tls13_keys  # noqa: E402  (needs ROOT on the path)
from analyzer.tls.protection import RecordDecryptor, RecordEncryptor  # noqa: E402
from analyzer.tls.suites import SUITES, CipherSuite  # noqa: E402

#: (suite, version, encrypt_then_mac)
CASES = [
    (0x1301, 0x0304, False), (0x1302, 0x0304, False), (0x1303, 0x0304, False), (0x1304, 0x0304, False),
    (0xC02F, 0x0303, False), (0xC030, 0x0303, False), (0xCCA8, 0x0303, False), (0xC0AC, 0x0303, False),
    (0xC013, 0x0303, False), (0xC013, 0x0303, True), (0xC027, 0x0303, True), (0xC028, 0x0303, False),
    (0xC028, 0x0303, True), (0xC013, 0x0301, False),
]
SIZES = {100: 4000, 16384: 500}     # record size -> records decrypted per run


def _keys(suite: CipherSuite, version: int) -> DirectionKeys:
    if suite.tls13:
        return tls13_keys(suite, bytes(48 if suite.prf_hash == "sha384" else 32))
    return tls12_keys(suite, bytes(48), bytes(32), bytes(32), version=version)[0]


def per_record(suite: CipherSuite, version: int, etm: bool, size: int, count: int, repeat: int) -> float:
    """Best seconds per record over `repeat` runs of `count` records of `size` bytes."""
    keys = _keys(suite, version)
    enc = RecordEncryptor(suite, keys, version=version, encrypt_then_mac=etm)
    records = [(r[:5], r[5:]) for r in (enc.encrypt(23, bytes(size)) for _ in range(count))]
    best = float("inf")
    for _ in range(repeat):
        dec = RecordDecryptor(suite, keys, version=version, encrypt_then_mac=etm)
        decrypt = dec.decrypt
        start = time.perf_counter()
        for header, fragment in records:
            decrypt(header, fragment)
        best = min(best, (time.perf_counter() - start) / count)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'suite':46} {'version':8} {'100 B µs':>9} {'16 KiB µs':>10} {'16 KiB MB/s':>12}")
    for code, version, etm in CASES:
        suite = SUITES[code]
        small, large = (per_record(suite, version, etm, size, count, args.repeat)
                        for size, count in SIZES.items())
        name = suite.name + (" EtM" if etm else "")
        rate = 16384 / large / 1e6
        print(f"{name:46} 0x{version:04X}   {small * 1e6:9.1f} {large * 1e6:10.1f} {rate:12.0f}")


if __name__ == "__main__":
    main()
