"""A progress bar on stderr (tqdm) counting bytes of the capture file read, shown only on a terminal."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from typing_extensions import Never  # typing.Never is 3.11+


class ProgressBar:
    """Callable as a pipeline progress callback: (bytes read, file size)."""

    def __init__(self, name: str) -> None:
        self._bar: tqdm[Never] | None = None
        self._name = name

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = tqdm(total=total, desc=self._name, unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, leave=False, disable=not sys.stderr.isatty())
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
