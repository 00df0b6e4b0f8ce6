"""A one-line live progress bar for tuning trials. Pure: no mlflow, no optuna.

Drawn only when the stream is a terminal; in a log file or a CI job it writes nothing, so
logs stay readable. Thread-safe: results arrive from trial threads and from the thread
that drains worker processes.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class TrialProgress:
    """``tune [######------] 12/30  ok 10  pruned 1  failed 1  best 0.7431  0:42``"""

    def __init__(self, maximize: bool, *, enabled: bool = True, stream: TextIO | None = None, width: int = 24):
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and _isatty(self._stream)
        self._maximize = maximize
        self._width = width
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.total = 0
        self.done = self.complete = self.pruned = self.failed = 0
        self.best: float | None = None
        self._resumed = 0
        self._drawn = False

    def start(self, total: int, already_done: int = 0) -> None:
        """``total`` trials to run now; ``already_done`` were finished by an earlier attempt."""
        with self._lock:
            self.total = total
            self._resumed = already_done
            self._started = time.monotonic()
            self._draw()

    def update(self, state: str, value: float | None) -> None:
        with self._lock:
            self.done += 1
            if state == "COMPLETE":
                self.complete += 1
                if value is not None and (
                    self.best is None or (value > self.best if self._maximize else value < self.best)
                ):
                    self.best = value
            elif state == "PRUNED":
                self.pruned += 1
            else:
                self.failed += 1
            self._draw()

    def close(self) -> None:
        with self._lock:
            if self.enabled and self._drawn:
                self._stream.write("\n")
                self._stream.flush()
            self._drawn = False

    def line(self) -> str:
        total = max(self.total, self.done)
        filled = int(self._width * self.done / total) if total else self._width
        bar = "#" * filled + "-" * (self._width - filled)
        best = f"{self.best:.4f}" if self.best is not None else "-"
        elapsed = int(time.monotonic() - self._started)
        resumed = f"  (+{self._resumed} earlier)" if self._resumed else ""
        return (
            f"tune [{bar}] {self.done}/{total}  ok {self.complete}  pruned {self.pruned}  "
            f"failed {self.failed}  best {best}  {elapsed // 60}:{elapsed % 60:02d}{resumed}"
        )

    def _draw(self) -> None:
        if not self.enabled:
            return
        self._stream.write("\r" + self.line() + "\x1b[K")
        self._stream.flush()
        self._drawn = True


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
