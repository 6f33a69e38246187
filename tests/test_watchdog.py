"""The watchdog that ends a process stuck in a Kafka client call or ignoring SIGTERM.

The subprocess tests block the main thread inside C (``pause()`` with SIGTERM masked in the
main thread), as librdkafka does when it misses its own timeout: Python's signal handlers then
never run there, and only the watchdog thread can act."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fraudstream.kafka.watchdog import EXIT_RESTART, Watchdog

STUCK_PROCESS = textwrap.dedent(
    """
    import ctypes, logging, signal, sys
    from fraudstream.kafka.watchdog import Watchdog

    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    stuck_call_s, shutdown_s = float(sys.argv[1]), float(sys.argv[2])
    watchdog = Watchdog(stuck_call_s, shutdown_s, on_stop=lambda: print("on_stop", flush=True), poll_s=0.02)
    watchdog.handle_signals()
    watchdog.start()  # before masking: a thread inherits its creator's signal mask
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    print("blocked", flush=True)
    with watchdog.call("stuck_call"):
        ctypes.CDLL(None).pause()  # never returns: the signals it could get are masked here
    """
)


def start_stuck(stuck_call_s: float, shutdown_s: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_PROCESS, str(stuck_call_s), str(shutdown_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "blocked"
    return proc


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the watchdog did not end the process: {out}")
    return proc.returncode, out


def test_a_call_stuck_past_its_limit_ends_the_process_with_the_restart_code() -> None:
    proc = start_stuck(stuck_call_s=0.5, shutdown_s=60)
    rc, out = finish(proc)
    assert rc == EXIT_RESTART, out
    assert "stuck_call has not returned" in out


def test_sigterm_reaches_the_watchdog_while_the_main_thread_is_blocked_in_c() -> None:
    proc = start_stuck(stuck_call_s=60, shutdown_s=0.5)
    time.sleep(0.3)
    assert proc.poll() is None, "exited before any signal"
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    rc, out = finish(proc)
    assert rc == EXIT_RESTART, out
    assert "on_stop" in out  # the pipeline was asked to stop first
    assert "asked to stop" in out and "blocked in stuck_call" in out
    assert time.monotonic() - began < 20  # well before the 60 s call limit


class Recorder:
    def __init__(self) -> None:
        self.exits: list[int] = []
        self.stops = 0

    def exit(self, code: int) -> None:
        self.exits.append(code)

    def stop(self) -> None:
        self.stops += 1


def test_calls_within_the_limit_and_nested_calls_are_tracked_without_exiting() -> None:
    rec = Recorder()
    watchdog = Watchdog(10.0, 10.0, rec.stop, exit_process=rec.exit)
    now = time.monotonic()
    assert watchdog.check(now) is None
    with watchdog.call("outer"):
        with watchdog.call("inner"):
            assert watchdog.check(time.monotonic()) is None
            reason = watchdog.check(time.monotonic() + 11)
            assert reason is not None and "inner" in reason
        reason = watchdog.check(time.monotonic() + 11)  # back in the outer call
        assert reason is not None and "outer" in reason
    assert watchdog.check(time.monotonic() + 1_000) is None
    watchdog.request_stop()
    watchdog.request_stop()
    assert rec.stops == 2  # each request reaches the pipeline; the clock starts at the first
    assert watchdog.check(time.monotonic()) is None
    reason = watchdog.check(time.monotonic() + 11)
    assert reason is not None and "asked to stop" in reason
    assert rec.exits == []  # never started: it only tracks
    watchdog.close()


def test_calls_on_two_threads_are_tracked_apart() -> None:
    """The pipeline commits on a thread of its own beside the loop's: one call ending must
    neither erase the other's record nor bring back a call that already returned."""
    rec = Recorder()
    watchdog = Watchdog(10.0, 10.0, rec.stop, exit_process=rec.exit)
    inside, leave = threading.Event(), threading.Event()

    def commit() -> None:
        with watchdog.call("commit_transaction"):
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=commit)
    thread.start()
    inside.wait(10)
    with watchdog.call("close"):  # the loop's thread, while the commit runs
        pass
    reason = watchdog.check(time.monotonic() + 11)
    assert reason is not None and "commit_transaction" in reason  # still tracked
    with watchdog.call("consume"):
        leave.set()
        thread.join(10)
        reason = watchdog.check(time.monotonic() + 11)
        assert reason is not None and "consume" in reason  # the commit's end left this one
    assert watchdog.check(time.monotonic() + 1_000) is None  # and nothing came back
    watchdog.close()


def test_a_started_watchdog_exits_once_through_the_injected_exit() -> None:
    rec = Recorder()
    watchdog = Watchdog(0.05, 10.0, rec.stop, exit_process=rec.exit, poll_s=0.01).start()
    with watchdog.call("slow"):
        deadline = time.monotonic() + 10
        while not rec.exits and time.monotonic() < deadline:
            time.sleep(0.01)
    watchdog.close()
    assert rec.exits == [EXIT_RESTART]
