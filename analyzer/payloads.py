"""A message payload as the listings show it: text, pretty JSON or a hex dump (tshark's `-x` layout).

Captured bytes are never trusted: text is decoded with backslash escapes for what is not UTF-8,
and the caller escapes control characters before printing.
"""

from __future__ import annotations

import json

MODES = ("text", "json", "hex")
_ASCII = bytes(range(0x20, 0x7F))
_DOTS = bytes(c if c in _ASCII else 0x2E for c in range(256))


def hex_dump(data: bytes) -> str:
    """16 bytes a line: offset, the bytes in hex (a gap after 8), and the printable ASCII, as tshark -x."""
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        hexes = chunk.hex(" ")
        if len(chunk) > 8:
            hexes = hexes[:23] + " " + hexes[23:]
        lines.append(f"{off:04x}  {hexes:<48}  {chunk.translate(_DOTS).decode('ascii')}")
    return "\n".join(lines)


def as_text(data: bytes, binary: bool) -> str:
    """Text messages (and binary ones that are valid UTF-8) as text; other binary data as a hex dump."""
    if binary:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return hex_dump(data)
    return data.decode("utf-8", errors="backslashreplace")


def render(data: bytes, binary: bool, mode: str) -> str:
    """`data` shown as `mode` ("text", "json": pretty when it parses, else as text; "hex")."""
    if mode == "hex":
        return hex_dump(data)
    text = as_text(data, binary)
    if mode == "json" and text and text.lstrip()[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            return text
    return text


__all__ = ["MODES", "as_text", "hex_dump", "render"]
