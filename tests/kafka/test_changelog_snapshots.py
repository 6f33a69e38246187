"""When the changelog writer takes a snapshot: at most one merely due per transaction."""

from __future__ import annotations

from typing import Any

from fraudstream.kafka.changelog import CHANGES, SNAPSHOT, ChangelogWriter


class RecordingProducer:
    """Takes the writer's records (partition, kind) as a producer with room in its queue."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def produce(
        self,
        topic: str,
        *,
        value: bytes,
        key: bytes,
        partition: int,
        on_delivery: Any = None,
        headers: Any = None,
    ) -> None:
        self.sent.append((partition, key))

    def __len__(self) -> int:
        return 0


def commit(writer: ChangelogWriter, producer: RecordingProducer, writes: dict[int, int]) -> dict[int, bytes]:
    """One transaction: each partition writes, ``writes[p]`` bytes of changes; the kind each
    wrote."""
    producer.sent.clear()
    for partition, change_bytes in writes.items():
        writer.write(partition, lambda: b"s" * 10, lambda n=change_bytes: b"c" * n)
    writer.truncate(None)  # type: ignore[arg-type]  # nothing delivered: nothing to delete
    return dict(producer.sent)


def test_partitions_due_together_take_their_snapshots_in_successive_commits() -> None:
    producer = RecordingProducer()
    writer = ChangelogWriter(producer, "changelog", snapshot_min_bytes=100)  # type: ignore[arg-type]
    # the first write of each partition is a snapshot, whatever else the transaction holds
    assert commit(writer, producer, {0: 0, 1: 0, 2: 0}) == {0: SNAPSHOT, 1: SNAPSHOT, 2: SNAPSHOT}
    # 150 bytes of changes each: all three snapshots due at the next commit, one is taken there
    assert commit(writer, producer, {0: 150, 1: 150, 2: 150}) == {0: CHANGES, 1: CHANGES, 2: CHANGES}
    assert commit(writer, producer, {0: 0, 1: 0, 2: 0}) == {0: SNAPSHOT, 1: CHANGES, 2: CHANGES}
    assert commit(writer, producer, {0: 0, 1: 0, 2: 0}) == {0: CHANGES, 1: SNAPSHOT, 2: CHANGES}
    assert commit(writer, producer, {0: 0, 1: 0, 2: 0}) == {0: CHANGES, 1: CHANGES, 2: SNAPSHOT}
    assert [writer.logs[p].changes_bytes for p in range(3)] == [0, 0, 0]


def test_a_partition_whose_changes_outgrow_twice_its_snapshot_takes_one_in_any_commit() -> None:
    producer = RecordingProducer()
    writer = ChangelogWriter(producer, "changelog", snapshot_min_bytes=100)  # type: ignore[arg-type]
    commit(writer, producer, {0: 0, 1: 0, 2: 0})
    commit(writer, producer, {0: 150, 1: 250, 2: 150})
    # 0 and 2 are due (above 100 bytes): 0 takes this commit's snapshot, 2 waits; 1 is above
    # twice 100 and takes one all the same
    assert commit(writer, producer, {0: 0, 1: 0, 2: 0}) == {0: SNAPSHOT, 1: SNAPSHOT, 2: CHANGES}
    assert commit(writer, producer, {0: 0, 1: 0, 2: 0}) == {0: CHANGES, 1: CHANGES, 2: SNAPSHOT}
