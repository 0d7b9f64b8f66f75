"""Writers of other tools' formats, from the DataFrames: Zeek's websocket.log (zeek.py), Suricata
EVE JSON lines (eve.py) and HAR 1.2 with Chrome's `_webSocketMessages` (har.py).

Each module turns an Analysis into text written to an open file; analyzer.export opens the
files (open_output: never through a link) and picks the names. This package's own import is
light (no pandas), so the command line can list the formats without loading the analysis.
"""

from __future__ import annotations

#: formats of the four tables (a file per table) …
TABLE_FORMATS = ("csv", "parquet", "json")
#: … and other tools' formats: one file, with its usual name when given a directory
TOOL_FORMATS = {"zeek": "websocket.log", "zeek-json": "websocket.log", "eve": "eve.json",
                "har": "websocket.har"}
#: every `export --format` choice
FORMATS = TABLE_FORMATS + tuple(TOOL_FORMATS)

__all__ = ["FORMATS", "TABLE_FORMATS", "TOOL_FORMATS"]
