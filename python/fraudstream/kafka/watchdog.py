"""A watchdog that ends a ``fraudstream run`` process its Kafka client no longer lets go of.

librdkafka can block in a transactional call well past the call's own timeout after a broker
outage (``send_offsets_to_transaction`` waits for a group coordinator it never looks up again:
librdkafka issues 5456 and 5511). A thread blocked in C also never runs Python's signal
handlers, so such an instance ignores SIGTERM too. Nothing inside the process can unblock it;
what is safe is to end it: under exactly-once an abrupt exit is a crash like any other, the
open transaction is aborted by the broker and whoever owns the partitions next resumes from
the last commit. The process exits with :data:`EXIT_RESTART` (``EX_TEMPFAIL``), for its
supervisor (systemd ``Restart=on-failure``, a Kubernetes restart policy) to start it again.

Two limits:

- a blocking client call (wrapped in :meth:`Watchdog.call`) still running after ``stuck_call_s``;
- a stop request (SIGTERM, SIGINT, :meth:`Watchdog.request_stop`) not honoured within
  ``shutdown_s``. Signals reach the watchdog through :func:`signal.set_wakeup_fd`, which the
  interpreter writes to from C even while the main thread is blocked.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

EXIT_RESTART = 75
"""Exit code (``EX_TEMPFAIL``) of a process the watchdog ended: restart it."""


class Watchdog:
    """Tracks blocking client calls and stop requests; ends the process when either overruns.

    Without :meth:`start` it only tracks (no thread, never exits): a library embedding the
    pipeline decides itself whether a stuck client may end its process."""

    def __init__(
        self,
        stuck_call_s: float,
        shutdown_s: float,
        on_stop: Callable[[], None],
        exit_process: Callable[[int], None] = os._exit,
        poll_s: float = 0.2,
    ) -> None:
        self.stuck_call_s, self.shutdown_s, self.poll_s = stuck_call_s, shutdown_s, poll_s
        self._on_stop, self._exit = on_stop, exit_process
        self._calls: dict[int, tuple[str, float]] = {}
        """Per thread, its blocking call running (the pipeline's commit thread calls beside the
        loop's thread: one slot for both let one's end erase or revive the other's)."""
        self._stop_requested_at: float | None = None
        self._signals: frozenset[int] = frozenset()
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        """Read and write ends the interpreter writes received signal numbers to."""
        self._previous_wakeup_fd: int | None = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def call(self, what: str) -> Iterator[None]:
        """Marks a blocking client call: if it has not returned after ``stuck_call_s``, the
        watchdog ends the process."""
        thread = threading.get_ident()
        outer = self._calls.get(thread)
        self._calls[thread] = (what, time.monotonic())
        try:
            yield
        finally:
            if outer is None:
                self._calls.pop(thread, None)
            else:
                self._calls[thread] = outer

    def request_stop(self) -> None:
        """Asks the pipeline to stop; from now on it has ``shutdown_s`` to do so."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
            log.info("stop requested: finishing the open transaction (%.0f s at most)", self.shutdown_s)
        self._on_stop()

    def handle_signals(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Installs handlers that request a stop (call from the main thread)."""
        self._signals = frozenset(int(s) for s in signals)
        for s in signals:
            signal.signal(s, lambda signum, frame: self.request_stop())
        if self._wakeup is None:
            self._wakeup = socket.socketpair()
            for end in self._wakeup:
                end.setblocking(False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._wakeup[1].fileno(), warn_on_full_buffer=False)

    def start(self) -> Watchdog:
        """Arms the watchdog: a daemon thread checks the limits every ``poll_s``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="fraudstream-watchdog", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._previous_wakeup_fd is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._previous_wakeup_fd = None
        if self._wakeup is not None:
            for end in self._wakeup:
                end.close()
            self._wakeup = None

    def check(self, now: float) -> str | None:
        """Why the process must end now, if it must."""
        call = min(list(self._calls.values()), key=lambda c: c[1], default=None)  # the longest running
        if call is not None and now - call[1] > self.stuck_call_s:
            return (
                f"the Kafka client call {call[0]} has not returned after {now - call[1]:.0f} s "
                "(librdkafka can miss its own timeout after a broker outage)"
            )
        if self._stop_requested_at is not None and now - self._stop_requested_at > self.shutdown_s:
            where = f" (blocked in {call[0]})" if call is not None else ""
            return f"asked to stop {now - self._stop_requested_at:.0f} s ago and still running{where}"
        return None

    def _watch(self) -> None:
        while not self._closed.is_set():
            wakeup = self._wakeup
            if wakeup is None:
                self._closed.wait(self.poll_s)
            elif select.select([wakeup[0]], [], [], self.poll_s)[0]:
                try:
                    received = wakeup[0].recv(64)
                except BlockingIOError:
                    received = b""
                if self._signals.intersection(received):
                    self.request_stop()  # the main thread may be blocked: it cannot run the handler
            reason = self.check(time.monotonic())
            if reason is not None:
                log.critical(
                    "watchdog: %s; exiting with code %d (the last commit stands; restart the instance)",
                    reason,
                    EXIT_RESTART,
                )
                for handler in logging.getLogger().handlers:
                    handler.flush()
                sys.stderr.flush()
                self._exit(EXIT_RESTART)
                return
