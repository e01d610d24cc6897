"""Stop signals held while a build records what its jobs did.

A Ctrl-C (or SIGTERM) raises KeyboardInterrupt between any two bytecodes. If
it lands while the build loop is judging a job that has just ended (after
the pool handed the exit over, before its outcome is queued for the store),
that exit is lost: a job that finished fine stays 'planned' and reruns. CI
caught exactly that (a job started right after another one ended sent the
SIGINT). With `StopsHeld`, the build acts on a stop signal only while it
waits for jobs; everywhere else the signal is held and raised at the next
wait. Only Python-level handlers are wrapped (the main thread's, which is
where Python runs them), so this holds with other threads too, where
blocking signals (pthread_sigmask) does not.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Callable

_Handler = Callable[[int, "FrameType | None"], object]


class StopsHeld:
    """Wrap the SIGINT/SIGTERM handlers for the duration of a `with`. While
    `on` is True a stop signal is held (the first one); `open()` turns holding
    off and raises it, by calling the handler it was meant for."""

    def __init__(self) -> None:
        self.on = False
        self._held: tuple[int, FrameType | None] | None = None
        self._theirs: dict[int, _Handler] = {}

    def __enter__(self) -> StopsHeld:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old = signal.getsignal(sig)
                if callable(old):
                    self._theirs[sig] = old
                    signal.signal(sig, self._handler)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.on = False
        self._held = None  # (a stop under way: the clean-up was not to be cut short)
        for sig, old in self._theirs.items():
            if signal.getsignal(sig) == self._handler:  # (a handler may have put another in its place)
                signal.signal(sig, old)

    def open(self) -> None:
        """Stop holding; a signal held meanwhile is acted on now."""
        self.on = False
        held, self._held = self._held, None
        if held is not None:
            self._theirs[held[0]](*held)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.on:
            if self._held is None:
                self._held = (signum, frame)
            return
        self._theirs[signum](signum, frame)
