"""Fencing a previous owner's open transaction at a takeover (``kafka.fence_pending_after_ms``),
through the real broker.

- An owner killed with SIGKILL mid-commit (its changelog records and offsets written, the
  transaction open): the survivor fences it and is active long before the transaction timeout
  (60 s) would have aborted the transaction; the committed alerts equal the reference.
- A live instance that gives partitions up in a cooperative move is not fenced, even with a
  bound of 1 ms: it committed before the move.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from dying_owner import KILLED_MID_COMMIT
from eos_helpers import (
    WAIT_S,
    as_instance,
    committed_alerts,
    free_port,
    kill_running,
    last_json_line,
    make_config,
    produce,
    reference_alerts,
    run_instance,
    scrape,
    stream_with_bursts,
    wait_until_all_own,
    write_toml,
)

from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.topics import transactional_id

TRANSACTION_TIMEOUT_MS = 60_000
RESTORED = re.compile(r"restored partitions (\[[\d, ]+\]) in (\d+) ms")


def test_an_owner_killed_mid_commit_is_fenced_and_its_partitions_active_long_before_the_timeout(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    partitions = 4
    topic = kafka_topic_factory(partitions)
    records = stream_with_bursts(20_000, seed=31)
    # no idle ticks: the input's event times are from 2023 (as in the standby kill -9 test)
    base = make_config(
        kafka_bootstrap, topic, consume_batch=200, commit_interval_ms=50, standby_partitions=partitions,
        idle_timeout_ms=0, transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
    )  # fmt: skip
    configs = {name: as_instance(base, name) for name in ("a", "b")}
    paths = {name: write_toml(c, tmp_path / f"{name}.toml") for name, c in configs.items()}
    logs = {name: tmp_path / f"{name}.log" for name in paths}
    trigger = tmp_path / "die"
    feeder = threading.Thread(target=produce, args=(kafka_bootstrap, topic, records, 2_000.0))
    feeder.start()
    dying = str(Path(__file__).with_name("dying_owner.py"))
    with logs["a"].open("ab") as out:
        owner = subprocess.Popen(
            [sys.executable, dying, str(trigger), "--config", str(paths["a"])],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    port = free_port()
    survivor = run_instance(paths["b"], logs["b"], "--idle-exit", "10", "--metrics-port", str(port))
    try:
        wait_until_all_own(logs.values())
        time.sleep(2.0)  # both process; the owner commits
        trigger.touch()  # the owner's next commit with changelog records dies before committing
        assert owner.wait(WAIT_S) == -9
        assert KILLED_MID_COMMIT in logs["a"].read_text()
        # the survivor's Prometheus counter, scraped while it runs (gauges' cadence: 1 s)
        exported = 0.0
        deadline = time.monotonic() + WAIT_S
        while not exported and survivor.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            with contextlib.suppress(OSError):
                exported = scrape(port).get("fraudstream_fencings_total", 0.0)
        feeder.join()
        assert survivor.wait(WAIT_S * 2) == 0, logs["b"].read_text()[-3000:]
    finally:
        kill_running(owner, survivor)
    text = logs["b"].read_text()
    stats = last_json_line(logs["b"])
    takeover = RESTORED.findall(text)[-1]  # the killed owner's partitions
    assert int(takeover[1]) < TRANSACTION_TIMEOUT_MS / 10, f"the takeover waited: {takeover}"
    assert stats["fencings"] == 1, text[-3000:]
    assert exported == 1, "fraudstream_fencings_total counts the fencing"
    assert f"open transaction of {transactional_id(configs['a'])}" in text
    assert stats["commits"] > 0
    expected = reference_alerts(base, partitions)
    assert expected, "the stream must produce alerts, or the test proves nothing"
    assert Counter(committed_alerts(base, partitions)) == Counter(expected)


def test_a_live_instance_that_gave_partitions_up_in_a_cooperative_move_is_not_fenced(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    partitions = 4
    topic = kafka_topic_factory(partitions)
    records = stream_with_bursts(16_000, seed=32)
    # a bound of 1 ms: any transaction still open on a moved partition at the takeover is fenced
    base = make_config(
        kafka_bootstrap, topic, consume_batch=200, commit_interval_ms=50, idle_timeout_ms=0,
        fence_pending_after_ms=1,
    )  # fmt: skip
    pipelines = {name: KafkaPipeline(as_instance(base, name)) for name in ("a", "b")}
    errors: list[tuple[str, BaseException]] = []

    def run(name: str) -> None:
        try:
            pipelines[name].run(max_seconds=WAIT_S * 2)
        except BaseException as exc:
            errors.append((name, exc))

    threads = {name: threading.Thread(target=run, args=(name,), daemon=True) for name in pipelines}
    feeder = threading.Thread(target=produce, args=(kafka_bootstrap, topic, records, 2_000.0), daemon=True)
    a, b = pipelines["a"], pipelines["b"]
    try:
        threads["a"].start()
        feeder.start()
        deadline = time.monotonic() + WAIT_S
        while (len(a.tasks.tasks) < partitions or a.stats.commits < 10) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(a.tasks.tasks) == partitions, "the first instance owns every partition"
        threads["b"].start()  # under load: the move takes partitions a is processing
        while not (b.tasks.tasks and b.stats.commits > 5) and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        commits = a.stats.commits
        while a.stats.commits < commits + 5 and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        feeder.join(WAIT_S)
        done = lambda: a.stats.consumed + b.stats.consumed >= len(records) or bool(errors)  # noqa: E731
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for pipeline in pipelines.values():
            pipeline.stop()
        for thread in threads.values():
            thread.join(WAIT_S)
    assert not errors, repr(errors)
    assert a.stats.partitions_revoked >= 1 and b.stats.partitions_assigned >= 1, "partitions moved to b"
    assert a.stats.commits >= commits + 5, "a kept committing after the move"
    assert (a.stats.fencings, b.stats.fencings) == (0, 0)
    assert [p.metrics.snapshot()["fraudstream_fencings_total"] for p in (a, b)] == [0, 0]
    assert Counter(committed_alerts(base, partitions)) == Counter(reference_alerts(base, partitions))
