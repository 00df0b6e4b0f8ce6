"""A one-line live progress bar for tuning trials. Pure: no mlflow, no optuna.

Drawn only when the stream is a terminal; in a log file or a CI job it writes nothing, so
logs stay readable. Thread-safe: results arrive from trial threads and from the thread
that drains worker processes. While it is drawn, a daemon thread redraws it every
``REFRESH_SECONDS``, so the clock and the running trials' times move during a long trial,
not only when one finishes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

REFRESH_SECONDS = 0.5  # the clock shows whole seconds: redraw twice as often
SHOWN_RUNNING = 3  # running trials listed by number; more are counted


class TrialProgress:
    """``tune [######------] 12/30  ok 10  pruned 1  failed 1  best 0.7431  0:42  running #12 0:07``"""

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
        self.running: dict[int, float] = {}  # trial number -> its start (seconds since the epoch)
        self._resumed = 0
        self._drawn = False
        self._last = ""
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def start(self, total: int, already_done: int = 0) -> None:
        """``total`` trials to run now; ``already_done`` were finished by an earlier attempt."""
        with self._lock:
            self.total = total
            self._resumed = already_done
            self._started = time.monotonic()
            self._draw()
        if self.enabled and self._refresher is None:
            self._refresher = threading.Thread(target=self._refresh, name="mlcycle-progress", daemon=True)
            self._refresher.start()

    def trial_started(self, number: int, started_at: float | None = None) -> None:
        """Trial ``number`` began at ``started_at`` (seconds since the epoch; now if None)."""
        with self._lock:
            self.running[number] = time.time() if started_at is None else started_at
            self._draw()

    def update(self, state: str, value: float | None, number: int | None = None) -> None:
        """A trial finished: COMPLETE (with its value), PRUNED, or FAIL."""
        with self._lock:
            if number is not None:
                self.running.pop(number, None)
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
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(timeout=5)
            self._refresher = None
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
        resumed = f"  (+{self._resumed} earlier)" if self._resumed else ""
        return (
            f"tune [{bar}] {self.done}/{total}  ok {self.complete}  pruned {self.pruned}  "
            f"failed {self.failed}  best {best}  {_clock(time.monotonic() - self._started)}{resumed}{self._running()}"
        )

    def _running(self) -> str:
        if not self.running:
            return ""
        now = time.time()
        numbers = sorted(self.running)
        shown = " ".join(f"#{n} {_clock(now - self.running[n])}" for n in numbers[:SHOWN_RUNNING])
        more = f" +{len(numbers) - SHOWN_RUNNING}" if len(numbers) > SHOWN_RUNNING else ""
        return f"  running {shown}{more}"

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            with self._lock:
                self._draw(only_changed=True)

    def _draw(self, only_changed: bool = False) -> None:
        if not self.enabled or self._stop.is_set():
            return
        line = self.line()
        if columns := _columns(self._stream):  # a wrapped line could not be redrawn with "\r"
            line = line[: columns - 1]
        if only_changed and line == self._last:
            return
        self._stream.write("\r" + line + "\x1b[K")
        self._stream.flush()
        self._drawn, self._last = True, line


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _columns(stream: TextIO) -> int:
    """The terminal's width; 0 when unknown (a pseudo-terminal nobody sized)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
