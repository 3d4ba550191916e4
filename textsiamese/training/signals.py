"""Stopping a run cleanly: SIGINT / SIGTERM ask for a checkpoint and a stop after the current step.

The handler only notes the request; the loop acts on it at its next check point (data parallel: at the next
check point all processes share, the request riding along in the gradients' all-reduce), so a checkpoint is
never written from inside a signal handler, half-way through a step. A second SIGINT stops at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopSignals:
    """The stop request of one run: which signal asked (``signum``), installed only while the loop runs."""

    def __init__(self, announce: bool) -> None:
        self.announce = announce  # print a line when a signal arrives (the main process)
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signum is not None

    @property
    def name(self) -> str | None:
        """``SIGINT`` / ``SIGTERM`` once one arrived, else None (``TrainResult.signal``)."""
        return signal.Signals(self.signum).name if self.signum else None

    @contextmanager
    def installed(self) -> Iterator[None]:
        """SIGINT / SIGTERM ask the loop to save a checkpoint and stop after the current step; a second
        SIGINT stops at once. Off the main thread (where Python cannot install handlers) nothing changes."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self.announce:
            print(
                f"\n{signal.Signals(signum).name}: saving a checkpoint after this step, then stopping "
                "(again to stop at once)",
                flush=True,
            )
