"""The Rust bounded queue as seen from Python: bounds, backpressure, close/drain, timeouts."""

from __future__ import annotations

import threading
import time

import pytest

from fraudstream import ConfigError, QueueClosedError, QueueTimeoutError
from fraudstream._core import BoundedQueue


def test_fast_producer_slow_consumer_is_bounded_lossless_ordered_and_flat_in_memory() -> None:
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    capacity, total, chunk = 4_096, 5_000_000, 1_000
    q = BoundedQueue(capacity)
    producers = 2
    received: dict[int, int] = {p: -1 for p in range(producers)}
    errors: list[str] = []
    peak = 0

    def produce(pid: int) -> None:
        for lo in range(0, total // producers, chunk):
            q.put_batch([(pid, i) for i in range(lo, lo + chunk)])

    def consume() -> None:
        nonlocal peak
        while (items := q.get_batch(chunk)) is not None:
            peak = max(peak, len(q) + len(items))
            for pid, i in items:
                if i != received[pid] + 1:
                    errors.append(f"producer {pid}: got {i} after {received[pid]}")
                received[pid] = i
            time.sleep(0.00025)  # the consumer is the slow side: about 10x slower

    rss_before = proc.memory_info().rss
    consumer = threading.Thread(target=consume)
    consumer.start()
    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    rss_mid = 0
    while any(t.is_alive() for t in threads):
        rss_mid = max(rss_mid, proc.memory_info().rss)
        time.sleep(0.05)
    q.close()
    consumer.join()
    m = q.metrics()
    assert not errors, errors[:3]
    assert received == {p: total // producers - 1 for p in range(producers)}, "nothing lost or duplicated"
    assert m["items_in"] == m["items_out"] == total
    assert m["peak_len"] <= capacity and peak <= capacity + chunk
    assert m["blocked_ms_total"] > 100, "producers were held back by the full queue"
    growth_mb = (rss_mid - rss_before) / 2**20
    print(f"\nRSS growth while moving {total:,} items through a {capacity}-item queue: {growth_mb:.1f} MiB")
    assert growth_mb < 64, f"memory grew by {growth_mb:.1f} MiB"


def test_close_drains_then_reports_end_of_stream() -> None:
    q = BoundedQueue(10)
    q.put_batch([1, 2, 3])
    q.close()
    assert q.closed
    with pytest.raises(QueueClosedError):
        q.put(4)
    with pytest.raises(QueueClosedError):
        q.try_put(4)
    assert q.get_batch(2) == [1, 2]
    assert q.get_batch(2) == [3]
    assert q.get_batch(2) is None
    assert q.get_batch(2, timeout=0.01) is None


def test_put_and_get_timeouts() -> None:
    q = BoundedQueue(2)
    q.put_batch(["a", "b"])
    assert q.try_put("c") is False
    began = time.monotonic()
    with pytest.raises(QueueTimeoutError):
        q.put("c", timeout=0.12)
    assert time.monotonic() - began >= 0.1
    assert q.get_batch(10, timeout=0) == ["a", "b"]
    began = time.monotonic()
    assert q.get_batch(10, timeout=0.12) == []
    assert time.monotonic() - began >= 0.1
    m = q.metrics()
    assert m["blocked_ms_total"] >= 100 and m["idle_ms_total"] >= 100


def test_a_blocked_put_is_released_by_a_get_and_a_close_wakes_everyone() -> None:
    q = BoundedQueue(1)
    q.put(0)
    done = threading.Event()

    def blocked_put() -> None:
        q.put(1)
        done.set()

    t = threading.Thread(target=blocked_put)
    t.start()
    time.sleep(0.05)
    assert not done.is_set()
    assert q.get_batch(1) == [0]
    t.join(2)
    assert done.is_set()
    got: list[object] = []
    consumer = threading.Thread(target=lambda: got.append(q.get_batch(5, timeout=5)))
    q.get_batch(1)
    consumer.start()
    time.sleep(0.05)
    q.close()
    consumer.join(2)
    assert got == [None]


def test_byte_capacity_and_water_marks() -> None:
    q = BoundedQueue(100, capacity_bytes=1_000, high_water=4, low_water=1)
    assert q.try_put("x", nbytes=600)
    assert not q.try_put("y", nbytes=600), "would exceed 1000 bytes"
    assert q.try_put("y", nbytes=300)
    q.put_batch(["z", "w"], nbytes=[10, 10])
    assert q.pressure, "4 items: at the high water mark"
    q.get_batch(2)
    assert q.pressure, "2 items: above the low mark still"
    q.get_batch(1)
    assert not q.pressure
    assert q.metrics()["pressure_events"] == 1
    with pytest.raises(ConfigError):
        BoundedQueue(0)
    with pytest.raises(ConfigError):
        BoundedQueue(10, high_water=3, low_water=3)
    with pytest.raises(ConfigError, match="2 items but 1 sizes"):
        q.put_batch([1, 2], nbytes=[1])


def test_many_producers_and_consumers() -> None:
    q = BoundedQueue(8)
    n_prod, per = 4, 5_000
    out: list[list[tuple[int, int]]] = [[] for _ in range(3)]

    def consume(slot: int) -> None:
        while (items := q.get_batch(3)) is not None:
            out[slot].extend(items)

    consumers = [threading.Thread(target=consume, args=(i,)) for i in range(3)]
    producers = [
        threading.Thread(target=lambda p=p: [q.put((p, i)) for i in range(per)]) for p in range(n_prod)
    ]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join()
    q.close()
    for t in consumers:
        t.join()
    flat = sorted(x for part in out for x in part)
    assert flat == sorted((p, i) for p in range(n_prod) for i in range(per))
    for part in out:
        for p in range(n_prod):
            mine = [i for pp, i in part if pp == p]
            assert mine == sorted(mine), "each consumer sees a producer's items in order"


def test_backpressured_ms_per_second_is_a_rate_since_the_last_read() -> None:
    q = BoundedQueue(1)
    q.put(1)
    q.metrics()
    with pytest.raises(QueueTimeoutError):
        q.put(2, timeout=0.2)
    m = q.metrics()
    assert 300 <= m["backpressured_ms_per_s"] <= 1000.5
    time.sleep(0.1)
    assert q.metrics()["backpressured_ms_per_s"] == 0
