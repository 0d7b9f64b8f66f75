"""JSON inside WebSocket messages, for the decoders of JSON-based application protocols: parse a
payload with every failure turned into AppMalformed, and cut long strings for AppMessage.fields."""

from __future__ import annotations

import json
from typing import Any

from analyzer.app.base import AppMalformed

__all__ = ["FIELD_CHARS", "clip", "load_json"]

#: strings kept in AppMessage.fields and statuses are cut to this many characters
FIELD_CHARS = 200


def load_json(data: bytes, what: str, *, complete: bool = True) -> Any:
    """`data` parsed as JSON (UTF-8, UTF-16 or UTF-32 as json.loads detects it).

    Raises:
        AppMalformed: not JSON, not decodable text, or nested too deeply for the parser; the reason
            names `what` and says when the message was cut by a gap.
    """
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:    # JSONDecodeError and UnicodeDecodeError too
        cut = "" if complete else " (message cut by a gap)"
        raise AppMalformed(f"{what}: not JSON{cut}: {clip(str(exc))}") from None


def clip(value: str, limit: int = FIELD_CHARS) -> str:
    """`value` cut to `limit` characters, with an ellipsis when cut."""
    return value if len(value) <= limit else value[: limit - 1] + "…"
