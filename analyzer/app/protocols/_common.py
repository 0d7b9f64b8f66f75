"""Small helpers shared by the decoders of analyzer/app/protocols/ (no decoder here): short field
values, bounded id maps, and the AppMalformed that keeps what decoded before the bad part."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, TypeVar

from analyzer.app.base import AppMalformed, AppMessage

__all__ = ["MAX_TEXT", "BoundedMap", "PartialMalformed", "clip", "decoded_or_raise", "short"]

#: longest string kept in AppMessage.fields or .channel (app_conv: "cut long strings at ~200 chars")
MAX_TEXT = 200

K = TypeVar("K")
V = TypeVar("V")


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short(value: Any) -> Any:
    """A JSON-able, short version of a decoded value: strings clipped, bytes as their length,
    lists cut to 20 items, dicts to 20 keys (recursively)."""
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (list, tuple)):
        return [short(v) for v in value[:20]]
    if isinstance(value, dict):
        return {clip(str(k), 60): short(v) for k, v in list(value.items())[:20]}
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return clip(repr(value))


class BoundedMap(Generic[K, V]):
    """A dict that forgets its oldest entries past `cap` (request id → method, alias → topic):
    a connection that never answers cannot make it grow."""

    __slots__ = ("_cap", "_data")

    def __init__(self, cap: int = 4096) -> None:
        self._cap = cap
        self._data: OrderedDict[K, V] = OrderedDict()

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._cap:
            self._data.popitem(last=False)

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


class PartialMalformed(AppMalformed):
    """AppMalformed raised when part of a WebSocket message did not parse but other application
    messages in it did: those are in `decoded` (in order) so that a framework aware of it can keep
    them; the reason names what failed."""

    def __init__(self, reason: str, decoded: list[AppMessage]) -> None:
        super().__init__(reason)
        self.decoded = decoded


def decoded_or_raise(decoded: list[AppMessage], errors: list[str]) -> list[AppMessage]:
    """`decoded` when nothing failed, else a PartialMalformed naming the first three failures."""
    if not errors:
        return decoded
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    raise PartialMalformed("; ".join(errors[:3]) + more, decoded)
