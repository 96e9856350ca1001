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
        self.first: tuple[float, int] | None = None
        """When the first chunk arrived and how many fits it held: the rate counts from
        there (the first chunk's time includes compiling)."""

    def line(self) -> str:
        pct = 100 * self.done / self.total
        head = f"{self.done:,}/{self.total:,} fits ({pct:5.1f}%)"
        now = time.monotonic()
        if self.first is None or self.done <= self.first[1] or now <= self.first[0]:
            return f"{head} in {now - self.start:,.1f} s (compiling and the first chunk)"
        rate = (self.done - self.first[1]) / (now - self.first[0])
        return f"{head} {rate:,.0f} fits/s, ETA {(self.total - self.done) / rate:,.1f} s"

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.first is None:
            self.first = (now, done)
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
