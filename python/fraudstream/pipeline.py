"""The in-process runtime: source -> queue -> processor -> queue -> sink, on threads.

::

    source thread            processor thread                 sink thread
    source.read() ──► [in queue] ──► processor.process(batch) ──► [out queue] ──► sink.write()
         ▲   pause/resume                 │ idle: processor.advance(wall clock ms)
         └── when the in queue is above its high water mark

The processor is any processor of the contract (:class:`fraudstream.processor.Processor`: the
fraud detector, a rule set, a user's own), or a :class:`WindowedAggregation`; the pipeline
calls its ``process``, ``advance`` (when it has one) and ``flush``.

- Queues are the Rust :class:`BoundedQueue`: bounded in items (and bytes), blocking with the
  GIL released, so decoding, the engine (which also releases the GIL) and I/O overlap.
- Backpressure: when the input queue crosses its high water mark the source is paused
  (``source.pause()``; Kafka sources pause their partitions and keep polling to stay in the
  group) and resumed at the low water mark.
- Shutdown: on ``stop()`` or at the source's end, everything read is drained in order, the
  processor is flushed (every window fires), and the sink is flushed and closed.
- Failure: the first exception in any stage stops the pipeline; ``join()``/``run()`` raise it
  (as :class:`StageError` naming the stage, with the original as ``__cause__``).
- Idle time: every ``tick_interval`` without a batch, a contract processor's
  ``advance(wall_clock_ms)`` is called (epoch ms; it closes what the clock says is over) and
  its output written when it holds anything; a :class:`WindowedAggregation` is advanced by
  the rule of :class:`IdleWatermark` instead, so windows close when traffic stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fraudstream._core import BoundedQueue
from fraudstream.errors import ConfigError, StreamError
from fraudstream.processor import Processor as Processor  # the contract, re-exported
from fraudstream.processor import ProcessorOutput
from fraudstream.windows import Duration, WindowedAggregation, WindowOutput, to_millis

log = logging.getLogger(__name__)

Batch = Mapping[str, Any]
"""A batch of events: column name -> array."""


@runtime_checkable
class Source(Protocol):
    """Where batches come from. ``read`` returns a list of batches (possibly empty when
    nothing arrived within ``timeout`` seconds) or None at the end of the input."""

    def read(self, timeout: float) -> list[Any] | None: ...


@runtime_checkable
class Sink(Protocol):
    """Where the processor's outputs go."""

    def write(self, item: Any) -> None: ...


@runtime_checkable
class Stage(Protocol):
    """What the pipeline needs of the work between the queues: ``process`` and ``flush``
    (``advance(wall_clock_ms)`` and ``metrics()`` are used when present). Every processor of
    the contract, :class:`fraudstream.processor.Processor`, is one."""

    def process(self, batch: Any) -> Any: ...

    def flush(self) -> Any: ...


class StageError(StreamError):
    """A pipeline stage failed; ``stage`` names it and ``__cause__`` is the original error."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"pipeline stage '{stage}' failed: {type(cause).__name__}: {cause}")
        self.stage = stage


def batch_nbytes(batch: Any) -> int:
    """Bytes of a batch of numpy columns (0 for anything else)."""
    if isinstance(batch, Mapping):
        return sum(getattr(v, "nbytes", 0) for v in batch.values())
    return int(getattr(batch, "nbytes", 0))


# ---------------------------------------------------------------------------------------------
# Sources and sinks for in-process use and tests (Kafka ones live in fraudstream.kafka).


class IteratorSource:
    """Batches from an iterable (a generator, a list of dicts of arrays, ...)."""

    def __init__(self, batches: Iterable[Any]) -> None:
        self._it: Iterator[Any] = iter(batches)
        self.paused = False
        self.pauses = 0

    def read(self, timeout: float) -> list[Any] | None:
        for batch in self._it:
            return [batch]
        return None

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        self.paused = False


class ArraySource(IteratorSource):
    """Slices a dict of equal-length columns into batches of ``batch_size`` rows (views)."""

    def __init__(self, columns: Mapping[str, np.ndarray[Any, Any]], batch_size: int = 65_536) -> None:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ConfigError(f"columns have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        cols = dict(columns)
        super().__init__(
            {k: v[lo : lo + batch_size] for k, v in cols.items()} for lo in range(0, n, batch_size)
        )


class CollectSink:
    """Keeps every output (for tests and small runs)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.closed = False

    def write(self, item: Any) -> None:
        self.items.append(item)

    def close(self) -> None:
        self.closed = True

    def rows(self) -> list[dict[str, Any]]:
        """All rows of the collected :class:`WindowOutput` items."""
        return [r for item in self.items for r in item.rows()]


class NullSink:
    """Counts rows and drops them (for benchmarks)."""

    def __init__(self) -> None:
        self.items = 0
        self.rows = 0

    def write(self, item: Any) -> None:
        self.items += 1
        self.rows += len(item) if hasattr(item, "__len__") else 1


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdleWatermark:
    """How the watermark moves when no events arrive (so the last windows still close).

    ``rule="elapsed"``: event time is assumed to advance with wall-clock time: after
    ``after`` without events, every tick raises the watermark by the wall time since the
    previous tick. ``rule="wall_clock"``: the watermark becomes ``now (epoch ms) - lag``; use it
    when event times are real wall-clock times (production).
    """

    after: Duration = "1s"
    rule: str = "elapsed"
    lag: Duration = 0

    def __post_init__(self) -> None:
        if self.rule not in ("elapsed", "wall_clock"):
            raise ConfigError(f"IdleWatermark.rule must be 'elapsed' or 'wall_clock', got {self.rule!r}")


class IdleWindows:
    """A :class:`WindowedAggregation` in the pipeline with its :class:`IdleWatermark` rule (it
    returns window rows; :class:`fraudstream.processor.WindowProcessor` is the same engine under
    the processor contract)."""

    def __init__(self, aggregation: WindowedAggregation, idle: IdleWatermark | None = None) -> None:
        self.aggregation = aggregation
        self.idle = idle
        self._last_tick: float | None = None

    def process(self, batch: Any) -> WindowOutput:
        self._last_tick = None
        return self.aggregation.process(batch)

    def on_idle(self, idle_for_s: float) -> WindowOutput | None:
        out = self.aggregation.tick()
        if self.idle is None or idle_for_s * 1000 < to_millis(self.idle.after, "after"):
            return out if len(out) else None
        now = time.monotonic()
        wm = self.aggregation.watermark
        if self.idle.rule == "wall_clock":
            target = time.time_ns() // 1_000_000 - to_millis(self.idle.lag, "lag")
        elif wm is None:
            return out if len(out) else None
        else:
            since = self._last_tick if self._last_tick is not None else now - idle_for_s
            target = wm + max(1, int((now - since) * 1000))
        self._last_tick = now
        advanced = self.aggregation.advance_to(target)
        if len(out):
            advanced = WindowOutput(
                {k: np.concatenate([out.columns[k], advanced.columns[k]]) for k in out.columns},
                advanced.late_rows,
                np.concatenate([out.trigger_rows, advanced.trigger_rows]),
            )
        return advanced if len(advanced) else None

    def flush(self) -> WindowOutput:
        return self.aggregation.flush()

    def metrics(self) -> dict[str, Any]:
        return {
            "watermark": self.aggregation.watermark,
            **{f"state_{k}": v for k, v in self.aggregation.state_size().items()},
            **self.aggregation.counters(),
        }


@dataclass
class _Stats:
    batches_in: int = 0
    events_in: int = 0
    outputs: int = 0
    started: float = field(default_factory=time.monotonic)


class Pipeline:
    """Runs ``source -> processor -> sink`` on three threads with bounded queues between.

    Args:
        source: a :class:`Source`.
        processor: a :class:`~fraudstream.processor.Processor` (any :class:`Stage`), or a
            :class:`WindowedAggregation` (wrapped in an :class:`IdleWindows` with ``idle``).
        sink: a :class:`Sink`; ``flush()``/``close()`` are called at the end when present.
        capacity: items (batches) each queue holds; ``capacity_bytes`` bounds the input queue's
            bytes too.
        high_water, low_water: input-queue marks at which the source is paused / resumed.
        tick_interval: seconds between idle checks when no batch arrives.
        idle: how a :class:`WindowedAggregation`'s watermark advances when traffic stops (see
            :class:`IdleWatermark`).
    """

    def __init__(
        self,
        source: Source,
        processor: Stage | WindowedAggregation,
        sink: Sink,
        *,
        capacity: int = 64,
        capacity_bytes: int | None = None,
        high_water: int | None = None,
        low_water: int | None = None,
        tick_interval: float = 0.05,
        idle: IdleWatermark | None = None,
    ) -> None:
        if isinstance(processor, WindowedAggregation):
            processor = IdleWindows(processor, idle)
        self.source, self.processor, self.sink = source, processor, sink
        self.input = BoundedQueue(capacity, capacity_bytes, high_water, low_water)
        self.output = BoundedQueue(capacity)
        self.tick_interval = tick_interval
        self._stop = threading.Event()
        self._errors: list[StageError] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stats = _Stats()

    # -- control ----------------------------------------------------------------------------

    def start(self) -> Pipeline:
        """Starts the three stage threads."""
        if self._threads:
            raise StreamError("pipeline already started")
        self._stats = _Stats()
        for name, target in (
            ("source", self._run_source),
            ("processor", self._run_processor),
            ("sink", self._run_sink),
        ):
            t = threading.Thread(
                target=self._guard, args=(name, target), name=f"fraudstream-{name}", daemon=True
            )
            self._threads.append(t)
            t.start()
        return self

    def stop(self) -> None:
        """Asks the source to stop; what was read is still processed and written."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Waits for the pipeline to finish; raises the first stage failure.

        Returns False if ``timeout`` (seconds) passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            while t.is_alive():
                t.join(0.1)  # short slices keep Ctrl-C responsive
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        if self._errors:
            raise self._errors[0]
        return True

    def run(self) -> dict[str, Any]:
        """Starts, waits for the end, and returns the final metrics."""
        self.start()
        try:
            self.join()
        except KeyboardInterrupt:
            self.stop()
            self.join(10)
            raise
        return self.metrics()

    def metrics(self) -> dict[str, Any]:
        """Counters of the run: events in, outputs, throughput, both queues, the processor."""
        elapsed = max(time.monotonic() - self._stats.started, 1e-9)
        proc_metrics = getattr(self.processor, "metrics", None)
        return {
            "batches_in": self._stats.batches_in,
            "events_in": self._stats.events_in,
            "outputs": self._stats.outputs,
            "events_per_s": self._stats.events_in / elapsed,
            "input_queue": self.input.metrics(),
            "output_queue": self.output.metrics(),
            "processor": proc_metrics() if callable(proc_metrics) else {},
            "errors": [str(e) for e in self._errors],
        }

    # -- stages -----------------------------------------------------------------------------

    def _guard(self, name: str, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # surfaced to the caller by join()
            log.error("pipeline stage %s failed: %r", name, exc)
            err = StageError(name, exc)
            err.__cause__ = exc
            with self._lock:
                self._errors.append(err)
            self._stop.set()
            for q in (self.input, self.output):  # wake everyone blocked on a queue
                q.clear()
                q.close()

    def _failed(self) -> bool:
        return bool(self._errors)

    def _run_source(self) -> None:
        paused = False
        pause = getattr(self.source, "pause", None)
        resume = getattr(self.source, "resume", None)
        try:
            while not self._stop.is_set():
                if self.input.pressure:
                    if not paused and callable(pause):
                        pause()
                        paused = True
                elif paused:
                    if callable(resume):
                        resume()
                    paused = False
                if paused:
                    # keep the source alive (Kafka: poll to stay in the group) without reading
                    keepalive = getattr(self.source, "keepalive", None)
                    if callable(keepalive):
                        keepalive()
                    time.sleep(self.tick_interval / 5)
                    continue
                batches = self.source.read(self.tick_interval)
                if batches is None:
                    break
                if batches:
                    self._stats.batches_in += len(batches)
                    self._stats.events_in += sum(_rows(b) for b in batches)
                    self.input.put_batch(batches, [batch_nbytes(b) for b in batches])
        finally:
            close = getattr(self.source, "close", None)
            if not self._failed():
                self.input.close()
            if callable(close):
                close()

    def _run_processor(self) -> None:
        idle_since = time.monotonic()
        advance = getattr(self.processor, "advance", None)
        on_idle = getattr(self.processor, "on_idle", None)
        while True:
            items = self.input.get_batch(16, self.tick_interval)
            if items is None:
                break
            if not items:
                if callable(advance):
                    out = advance(time.time_ns() // 1_000_000)
                    if _holds_anything(out):
                        self.output.put(out)
                elif callable(on_idle):
                    out = on_idle(time.monotonic() - idle_since)
                    if out is not None:
                        self.output.put(out)
                continue
            idle_since = time.monotonic()
            for batch in items:
                out = self.processor.process(batch)
                if out is not None:
                    self.output.put(out)
        if not self._failed():
            self.output.put(self.processor.flush())
            self.output.close()

    def _run_sink(self) -> None:
        while True:
            items = self.output.get_batch(64, None)
            if items is None:
                break
            for item in items:
                self.sink.write(item)
                self._stats.outputs += 1
        if self._failed():
            return
        for method in ("flush", "close"):
            fn = getattr(self.sink, method, None)
            if callable(fn):
                fn()


def _holds_anything(out: Any) -> bool:
    """Whether an ``advance`` output is worth writing (alerts or rows)."""
    if out is None:
        return False
    if isinstance(out, ProcessorOutput):
        return bool(out.alerts) or (out.rows is not None and len(out.rows) > 0) or len(out.late_rows) > 0
    return bool(len(out)) if hasattr(out, "__len__") else True


def _rows(batch: Any) -> int:
    if isinstance(batch, Mapping):
        for v in batch.values():
            return len(v)
        return 0
    return len(batch) if hasattr(batch, "__len__") else 1
