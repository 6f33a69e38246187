"""Fault injection against the exactly-once pipeline, small versions of ``benches/chaos.py``.

Each scenario runs ``fraudstream run`` instances as subprocesses against the real broker, injects
its fault, lets the group finish the input, then compares everything committed with the
in-process engine run per partition over the same input: the alerts read with read_committed
(zero lost, zero duplicated, nothing spurious), the dead-letter topic (every decode error, late
event and duplicate transaction id exactly once), the group's committed offsets (input =
processed + dead-lettered) and the state in the changelog (byte-equal to the reference state).
kill -9 at random points is covered by ``test_pipeline_eos.py`` and by the bench (50 kills).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches"))
import chaos  # noqa: E402

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker(kafka_bootstrap: str) -> chaos.Broker:
    # a stuck group fails its test within a minute or so instead of holding the suite
    chaos.CATCH_UP_S, chaos.STOP_TIMEOUT_S = 60.0, 10.0
    return chaos.Broker(bootstrap=kafka_bootstrap, env=dict(chaos.os.environ))


def assert_exact(outcome: chaos.Outcome) -> None:
    figures = outcome.as_json()
    assert outcome.ok, f"{outcome.name}: {figures}"
    v = outcome.verdict
    assert (v.lost, v.duplicated, v.spurious, v.state_mismatch) == (0, 0, 0, 0), figures
    assert v.input == v.processed + v.dead_lettered, figures
    assert v.alerts > 0 and v.dead_lettered > 0, f"the input must alert and dead-letter: {figures}"


def test_state_restored_from_a_changelog_written_after_a_restore(broker: chaos.Broker) -> None:
    """Three consecutive runs of one instance over growing input: the second run restores the
    first one's snapshot and writes changes; the third restores snapshot + those changes. The
    changes written after a restore must hold every key that changed (the changelog is the only
    copy of the state), so the final state and alerts equal the reference."""
    with chaos.scenario_topic(broker, "restore2", 3) as (config, workdir):
        records = chaos.chaos_stream(9_000, seed=31, bursts=20)
        inst = chaos.Instance(config, workdir, "0")
        third = len(records) // 3
        for part, chunk in enumerate((records[:third], records[third : 2 * third], records[2 * third :])):
            feeder = chaos.Feeder(broker.bootstrap, config.kafka.input_topic, chunk)
            feeder.start()
            feeder.join()
            assert feeder.error is None
            inst.start("--idle-exit", "1.5")
            assert inst.proc is not None
            assert inst.proc.wait(120) == 0, inst.current_log()[-2_000:]
            if part:
                assert inst.stats()["restores"] >= 1 and inst.stats()["restore_bytes"] > 0
        verdict = chaos.verify(config, 3)
        assert verdict.ok, verdict.figures()


def test_stalled_instance_is_fenced_and_its_partitions_move_on(broker: chaos.Broker) -> None:
    """SIGSTOP one of two instances (holding an open transaction with output in it) for longer
    than the session timeout, then SIGCONT: the other instance takes its partitions over, the
    zombie's late transaction is rejected, nothing is lost or duplicated."""
    outcome = chaos.scenario_stall(broker, stalls=1, events=12_000, rate=1_500.0)
    assert outcome.extra["partitions_moved"] == 1, outcome.as_json()
    assert outcome.extra["zombie_rejections_logged"] == 1, outcome.as_json()
    assert outcome.extra["fenced_restarts"] == 0, "the zombie must go on, not stop: " + str(outcome.as_json())
    assert_exact(outcome)


def test_instance_frozen_between_sending_offsets_and_committing_is_fenced(broker: chaos.Broker) -> None:
    """The worst moment for a stall: after ``send_offsets_to_transaction``, before
    ``commit_transaction`` (the instance SIGSTOPs itself there). Its partitions move on after the
    session timeout; when it resumes, its late transaction must not be committed, or must be
    seen by the new owner's state, never half of it (offsets without the changelog). Fenced by
    the takeover, it then goes on with a new producer instead of stopping."""
    outcome = chaos.scenario_stall_in_commit(broker, events=12_000, rate=1_500.0)
    assert outcome.extra["partitions_moved"], outcome.as_json()
    went_on = outcome.extra["zombie_fenced_and_went_on"] or outcome.extra["late_commit_accepted"]
    assert went_on, "the fenced zombie must go on, not stop: " + str(outcome.as_json())
    assert_exact(outcome)


def test_broker_restart_in_the_middle_of_a_run(broker: chaos.Broker) -> None:
    """The broker is stopped (SIGTERM) and started again on the same data while two instances
    process live input: the instances must recover by themselves and finish the input."""
    status = subprocess.run(
        [str(chaos.KAFKA_SCRIPT), "bootstrap"], env=broker.env, capture_output=True, text=True
    )
    if status.stdout.strip() != broker.bootstrap or not (broker.state_dir / "kafka.pid").exists():
        pytest.skip(f"the broker at {broker.bootstrap} is not the one scripts/kafka manages")
    try:
        outcome = chaos.scenario_broker_restart(
            broker, restarts=1, events=12_000, rate=1_500.0, catch_up_s=120
        )
    finally:
        broker.ensure_up()
    assert outcome.extra["hung_instances"] == 0, outcome.as_json()
    assert_exact(outcome)


def test_three_instances_added_and_removed_during_the_run(broker: chaos.Broker) -> None:
    """Three instances over six partitions, started, stopped (SIGTERM) and killed (SIGKILL)
    while input arrives: state moves with its partitions through the changelog."""
    outcome = chaos.scenario_scale_out(broker, events=15_000, rate=1_500.0)
    restores = outcome.extra["restores"]
    assert restores >= 6, f"partitions moved {restores} times: {outcome.as_json()}"
    assert_exact(outcome)
