"""Small helpers shared by the byte-stream decoders of analyzer/app/protocols/ (no decoder here):
bounded id maps, and the AppMalformed that keeps what decoded before the bad part."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from analyzer.app.base import AppMalformed, AppMessage

__all__ = ["MAX_PER_MESSAGE", "BoundedMap", "decoded_or_raise"]

#: most application messages decoded from one WebSocket message (MQTT packets, STOMP frames); a
#: hostile message of 2-byte packets would otherwise make millions of objects
MAX_PER_MESSAGE = 10_000

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    """A dict that forgets its oldest entries past `cap` (request id → topic, alias → topic): a
    connection that never answers cannot make it grow."""

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


def decoded_or_raise(decoded: list[AppMessage], errors: list[str]) -> list[AppMessage]:
    """`decoded` when nothing failed, else an AppMalformed naming the first three failures and
    carrying what did decode in the same WebSocket message (AppMalformed.messages)."""
    if not errors:
        return decoded
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    raise AppMalformed("; ".join(errors[:3]) + more, decoded)
