"""At-least-once through the broker (``kafka.exactly_once = false``): a commit delivers the
outputs before it commits the offsets that cover them, so every alert of the input reaches the
alerts topic at least once, with commits that overlap the processing (the default) and a member
joining and leaving the group meanwhile (offset commits the group refuses during the rebalance
leave records to be processed again, never lost)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from eos_helpers import (
    as_instance,
    committed_alerts,
    last_json_line,
    make_config,
    produce,
    reference_alerts,
    run_instance,
    stream_with_bursts,
    write_toml,
)

pytestmark = pytest.mark.kafka

PARTITIONS = 4


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped_commits", "commits_on_the_loop"])
def test_every_alert_arrives_at_least_once_across_a_join_and_a_leave(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str], tmp_path: Path, overlap: bool
) -> None:
    topic = kafka_topic_factory(PARTITIONS)
    records = stream_with_bursts(20_000, seed=8)
    feeder = threading.Thread(target=produce, args=(kafka_bootstrap, topic, records, 4_000.0))
    feeder.start()  # input keeps arriving for about 5 s while the second member comes and goes
    base = make_config(
        kafka_bootstrap, topic, consume_batch=100, commit_interval_ms=50, exactly_once=False,
        overlap_commits=overlap,
    )  # fmt: skip
    log1, log2 = tmp_path / "a.log", tmp_path / "b.log"
    first = run_instance(write_toml(base, tmp_path / "a.toml"), log1, "--idle-exit", "4")
    time.sleep(2.0)
    second = run_instance(write_toml(as_instance(base, "1"), tmp_path / "b.toml"), log2, "--max-seconds", "6")
    assert second.wait(timeout=120) == 0, log2.read_text()[-3000:]
    feeder.join()
    assert first.wait(timeout=180) == 0, log1.read_text()[-3000:]
    stats1, stats2 = last_json_line(log1), last_json_line(log2)
    assert stats2["consumed"] > 0, "the second instance took partitions over"
    assert stats1["consumed"] + stats2["consumed"] >= len(records)
    expected = Counter(reference_alerts(base, PARTITIONS))
    assert expected, "the stream must produce alerts, or the test proves nothing"
    missing = expected - Counter(committed_alerts(base, PARTITIONS))
    assert not missing, f"{sum(missing.values())} alerts never arrived, e.g. {list(missing)[:3]}"
