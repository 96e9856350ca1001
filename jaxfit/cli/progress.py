"""Progress of a long batch on stderr: a bar on a terminal, a plain line every few
seconds otherwise. Updated per chunk (never per step), silent for the first second."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(done)`` after each chunk; ``close()`` at the end."""

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        enabled: bool = True,
        delay_s: float = 1.0,
        every_s: float = 5.0,
    ):
        self.total, self.stream = total, stream or sys.stderr
        self.enabled, self.delay_s, self.every_s = enabled and total > 0, delay_s, every_s
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = self.last = time.monotonic()
        self.done, self.shown = 0, False

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100 * self.done / self.total
        return f"{self.done:,}/{self.total:,} fits ({pct:5.1f}%) {rate:,.0f} fits/s, ETA {eta:,.1f} s"

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if not self.enabled or now - self.start < self.delay_s:
            return
        if self.tty:
            width = 30
            filled = int(width * self.done / self.total)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.line()}\x1b[K")
            self.stream.flush()
            self.shown = True
        elif now - self.last >= self.every_s or not self.shown:
            self.stream.write(f"jaxfit: {self.line()}\n")
            self.stream.flush()
            self.last, self.shown = now, True

    def close(self) -> None:
        if self.enabled and self.shown and self.tty:
            self.stream.write(f"\r{self.line()}\x1b[K\n")
            self.stream.flush()
