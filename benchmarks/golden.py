"""Save the four tables of an analysis and compare a later analysis with them, column by column.

Made for refactors that must not change a single value: save the tables with the code before the
change, compare with the code after it. tests/test_golden_tables.py holds the corpus in captures/
to the tables saved in tests/data/golden/; for captures too large for the repository (the
benchmark captures) run it by hand:

    python benchmarks/golden.py save  CAPTURE DIR [--ports 9090] [--payloads]
    python benchmarks/golden.py check CAPTURE DIR [--ports 9090] [--payloads]

Tables are stored as Parquet (one file per table) with their dtypes beside them in JSON. The
comparison runs the current tables through the same Parquet round trip, so both sides have the
same representation, then checks values, column order and dtypes on every saved column. Columns
added since the tables were saved are reported, not failed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

TABLES = ("connections", "frames", "messages", "problems")


def _canonical(df: Any) -> Any:
    """A table after a Parquet round trip, with list columns as tuples (comparable)."""
    import pandas as pd
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    buf.seek(0)
    return _lists_as_tuples(pd.read_parquet(buf))


def _lists_as_tuples(df: Any) -> Any:
    for name in df.columns:
        if df[name].dtype == object:
            df[name] = [tuple(v) if hasattr(v, "__len__") and not isinstance(v, (str, bytes)) else v
                        for v in df[name]]
    return df


def save(analysis: Any, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        df = getattr(analysis, table)
        df.to_parquet(directory / f"{table}.parquet", index=False)
        (directory / f"{table}.dtypes.json").write_text(
            json.dumps({c: str(t) for c, t in df.dtypes.items()}, indent=0) + "\n")


def compare(analysis: Any, directory: Path) -> list[str]:
    """Differences between the analysis's tables and the saved ones (empty: identical)."""
    import pandas as pd
    differences = []
    for table in TABLES:
        saved = _lists_as_tuples(pd.read_parquet(directory / f"{table}.parquet"))
        dtypes = json.loads((directory / f"{table}.dtypes.json").read_text())
        current_df = getattr(analysis, table)
        missing = [c for c in saved.columns if c not in current_df.columns]
        if missing:
            differences.append(f"{table}: columns gone: {missing}")
            continue
        for column, dtype in dtypes.items():
            if str(current_df[column].dtype) != dtype:
                differences.append(f"{table}.{column}: dtype {current_df[column].dtype} (saved {dtype})")
        current = _canonical(current_df)[list(saved.columns)]
        kept_order = [c for c in current_df.columns if c in saved.columns]
        if kept_order != list(saved.columns):
            differences.append(f"{table}: column order {kept_order} (saved {list(saved.columns)})")
        try:
            pd.testing.assert_frame_equal(current, saved, obj=table)
        except AssertionError as exc:
            differences.append(str(exc))
    return differences


def new_columns(analysis: Any, directory: Path) -> dict[str, list[str]]:
    """Columns the current tables have that the saved ones do not."""
    import pandas as pd
    out = {}
    for table in TABLES:
        saved = pd.read_parquet(directory / f"{table}.parquet").columns
        added = [c for c in getattr(analysis, table).columns if c not in saved]
        if added:
            out[table] = added
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("save", "check"))
    parser.add_argument("capture")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--ports", type=int, nargs="*", default=[])
    parser.add_argument("--payloads", action="store_true")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--keylog", action="append", default=None, help="TLS key log (repeatable)")
    args = parser.parse_args(argv)
    import analyzer
    analysis = analyzer.analyze(args.capture, ports=args.ports, payloads=args.payloads, jobs=args.jobs,
                                keylog=args.keylog)
    if args.action == "save":
        save(analysis, args.directory)
        print(f"saved {', '.join(f'{len(getattr(analysis, t))} {t}' for t in TABLES)} to {args.directory}")
        return 0
    differences = compare(analysis, args.directory)
    for line in differences:
        print(line)
    added = new_columns(analysis, args.directory)
    print(f"{'DIFFERENT' if differences else 'identical'}: "
          f"{', '.join(f'{len(getattr(analysis, t))} {t}' for t in TABLES)}"
          + (f"; new columns {added}" if added else ""))
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
