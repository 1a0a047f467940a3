"""Progress of long commands on stderr: tqdm on a terminal, periodic lines otherwise.

A command that can run for more than a couple of seconds (verify, fit, ``sample --fit-steps``,
``conditions``/``check`` at high order, ``derive``, ``registry build``) ticks a
:class:`Progress`; one long call with nothing to count (a construction) runs under a heartbeat
that reports the time spent. On a terminal it draws a tqdm
bar; in a log (stderr not a terminal) it prints one line every ``every`` seconds, the first only
after ``every`` seconds, so quick runs print nothing; ``--quiet`` silences both. Results stay on
stdout, so ``--format json`` output is never mixed with progress.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

__all__ = ["QUIET_HELP", "Progress"]

QUIET_HELP = "no progress on stderr (a bar on a terminal, else a line every 2 s)"


class Progress:
    """``total`` units of work labelled ``label`` (``total`` may be a bound, e.g. a maximum
    number of optimiser evaluations)."""

    def __init__(
        self,
        total: int | None,
        label: str,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        every: float = 2.0,
        heartbeat: bool = False,
    ) -> None:
        self.total, self.label, self.every = total, label, every
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.started = self.last = time.perf_counter()
        self.bar: Any = None
        self.quiet = quiet
        if not quiet and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, file=self.stream, leave=False)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        if heartbeat and not quiet:  # one long call with nothing to count: report the time
            self._beat = threading.Thread(target=self._heartbeat, daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.every):
            if self.bar is not None:
                self.bar.refresh()
            elif time.perf_counter() - self.last >= self.every:
                self.last = time.perf_counter()
                done = f"{self.done}/{self.total} done, " if self.total else ""
                print(
                    f"{self.label}: {done}working, {self.last - self.started:.0f} s",
                    file=self.stream,
                    flush=True,
                )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def advance(self, count: int = 1, note: str = "") -> None:
        """Count ``count`` more units done; ``note`` names the current one."""
        self.done += count
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(count)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            tail = f" ({note})" if note else ""
            print(
                f"{self.label}: {self.done}{of} after {now - self.started:.0f} s{tail}",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None
