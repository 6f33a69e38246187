"""Failover time of a partition holding N keys of state, with and without standby replicas.

One partition whose changelog holds a snapshot of ``--keys`` cards of the default detector's
state (written as ``benches/chaos.py``'s restore figure writes it), then two instances of one
group: the owner restores it and processes a few thousand transactions (so the changelog gets a
tail of change records after its snapshot, and more arrive through the kill); the second
instance, with ``kafka.standby_partitions = 1`` or 0, joins without partitions (cooperative-sticky:
the owner keeps it). With standbys on, the second one's copy is caught up before the owner is
killed with SIGKILL. The figures:

- ``kill_to_active_s``: from the SIGKILL to the second instance's task being ready (its log line),
  which includes the group noticing the death (``--session-timeout-ms``, 1 s by default, the
  broker's floor ``group.min.session.timeout.ms``; the same either way), split into
  ``kill_to_assigned_s`` (the session timeout running out, then the rebalance that gives the
  second instance the partition) and ``assigned_to_active_s`` (``restore_ms``);
- ``takeover_steps_ms``: when each step of the takeover ended, in ms from the assignment (the
  restore log line's ``steps``): ``pending_checked`` (open transactions on the changelog and
  unstable offsets found, without waiting), ``writers_found`` (whose they are),
  ``members_checked`` (the group's description: a writer not a member is fenced at once),
  ``bound_waited`` (only for a writer still a member, or members unknown:
  ``kafka.fence_pending_after_ms``), ``fenced`` (the fenced transaction seen aborted),
  ``offsets_stable``, ``standby_locked`` / ``standby_stable`` / ``standby_taken`` (the copy
  caught up with the changelog's end) or ``changelog_read``, ``installed`` (active);
- ``active_to_first_commit_ms``: from active to the second instance's first commit of the
  partition (its first output visible);
- ``restore_ms``: the second instance's RunStats.restore_ms, assignment to active, of which
  ``offsets_wait_ms`` waited for the committed offsets (the killed owner's last commit
  resolved) and the rest read and applied the changelog (the whole of it, or a copy's tail);
- ``restore_records`` / ``restore_bytes``: the changelog it read at the takeover.

``--kind velocity`` times the velocity rule's state (about 100 B per card: the issue's "10M keys
restored in 11.6 s"); the default detector holds about 850 B per card, and its per-partition cap
``detector.max_cards`` (1M by default) is raised to ``--keys`` for the run when ``--keys`` is above
it (printed). 10M detector cards (about 8.5 GB of state, a 6.6 GB snapshot: docs/operations.md)
are more than a 24 GiB machine holds while the state is written: the state and the snapshot's
copies as it is packed (the part, its framing, the whole), in one process.

    python benches/failover.py --keys 1000000            # standbys off then on; last line JSON
    python benches/failover.py --keys 10000000 --kind velocity --private-broker 19293
    python benches/failover.py --keys 100000 --private-broker 19193 --session-timeout-ms 3000
    python benches/failover.py --keys 1000000 --kind velocity --kill-in-transaction --only on

``--kill-in-transaction``: the owner dies with a transaction open, as an owner under load nearly
always does (it commits every 100 ms): at its first commit with changelog records after the kill
is due, it sends the offsets, waits for the records to be on the broker and kills itself with
SIGKILL before committing (``tests/kafka/dying_owner.py``); the kill time is that log line's.
Each standby mode then runs twice, with fencing off (``kafka.fence_pending_after_ms = 0``: the
takeover waits for the broker to abort the transaction at ``transaction_timeout_ms``, 60 s) and
on (the default bound: the takeover fences the dead owner's transactional id).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from chaos import (
    Broker,
    Feeder,
    Instance,
    chaos_config,
    chaos_stream,
    committed_offsets,
    create_topic,
    delete_topics,
    log,
    write_toml,
)

from fraudstream.config import Config, KafkaSection

TAIL_RECORDS = 5_000
"""Transactions the owner processes before the second instance joins (a tail after the snapshot)."""
DURING_RECORDS = 5_000
"""Transactions arriving at 1,000/s from 1 s before the kill on."""
WAIT_S = 1_800.0
STOP_S = 300.0
"""The second instance's shutdown (its last commit, closing a large state) before it is killed:
chaos's 5 s killed it at 10M keys before it printed its statistics."""
DYING_OWNER = Path(__file__).resolve().parent.parent / "tests" / "kafka" / "dying_owner.py"
KILLED_MID_COMMIT = "killing myself mid-commit"


def wait_line(inst: Instance, text: str, after: int = 0, timeout: float = WAIT_S) -> str:
    """The first line holding ``text`` in the instance's current log, past ``after`` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [ln for ln in inst.current_log().splitlines() if text in ln]
        if len(lines) > after:
            return lines[after]
        if not inst.alive:
            raise RuntimeError(f"instance {inst.instance_id} exited: {inst.current_log()[-2000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"instance {inst.instance_id}: no {text!r} within {timeout:.0f} s")


def logged_at(line: str) -> float:
    """The epoch seconds of a log line (``%(asctime)s`` first)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


STEPS = re.compile(r"steps: ([^)]*)\)")
STEP = re.compile(r"(\w+) \+(\d+)")
FIRST_COMMIT = "first commit since taken"
RESTORED = re.compile(r"restored partitions \[0\] in (\d+) ms \((\d+) ms waiting for the committed offsets")


def failover_config(
    bootstrap: str, topic: str, keys: int, standby: bool, kind: str, session_ms: int, fence_ms: int
) -> Config:
    """The processor's state only (no duplicate detector, no view), as the restore figure; the
    detector's card cap at least ``keys``."""
    config = chaos_config(
        bootstrap, topic, dedup_horizon="0s", with_view=False, standby_partitions=1 if standby else 0,
        session_timeout_ms=session_ms, fence_pending_after_ms=fence_ms,
        shutdown_timeout_ms=int(STOP_S * 1000),
    )  # fmt: skip
    cap = config.detector.max_cards
    detector = replace(config.detector, kind=kind, max_cards=keys if cap and keys > cap else cap)
    return replace(config, detector=detector).validate()


def failover(
    broker: Broker, keys: int, standby: bool, kind: str, session_ms: int, fence_ms: int, in_txn: bool
) -> dict[str, Any]:
    topic = f"failover-{keys}-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 1)
    config = failover_config(broker.bootstrap, topic, keys, standby, kind, session_ms, fence_ms)
    workdir = Path(tempfile.mkdtemp(prefix="failover-"))
    instances: list[Instance] = []
    try:
        chaos_script = str(Path(__file__).resolve().parent / "chaos.py")
        gen_config = str(write_toml(config, workdir / "gen.toml"))
        gen = subprocess.run(
            [sys.executable, chaos_script, "_state", "--config", gen_config, "--keys", str(keys)],
            capture_output=True, text=True, timeout=WAIT_S,
        )  # fmt: skip
        if gen.returncode:
            raise RuntimeError(f"writing the state failed: {gen.stderr[-3000:]}")
        made = json.loads(gen.stdout.strip().splitlines()[-1])
        trigger = workdir / "die"
        wrapper = [sys.executable, str(DYING_OWNER), str(trigger)] if in_txn else None
        owner = Instance(config, workdir, "owner", wrapper).start()
        instances.append(owner)
        wait_line(owner, "restored partitions")
        feeder = Feeder(broker.bootstrap, topic, chaos_stream(TAIL_RECORDS, seed=7, bursts=5), 2_000.0)
        feeder.start()
        second = Instance(config, workdir, "second").start()
        instances.append(second)
        feeder.join()
        deadline = time.monotonic() + WAIT_S
        while committed_offsets(config, 1).get(0, 0) < TAIL_RECORDS and time.monotonic() < deadline:
            time.sleep(0.2)  # the owner committed the tail: change records after the snapshot
        if standby:
            wait_line(second, "standby copy of partition 0 caught up")
        time.sleep(config.kafka.session_timeout_ms / 1000)  # the second one has joined
        # input keeps arriving through the kill: the owner commits until it dies
        during = Feeder(broker.bootstrap, topic, chaos_stream(DURING_RECORDS, seed=8, bursts=5), 1_000.0)
        during.start()
        time.sleep(1.0)
        # the takeover after the kill (the session of a busy owner can expire before it)
        before = second.current_log().count("restored partitions")
        if before:  # the partition moved before the kill: the run would not time a failover
            raise RuntimeError(
                "void run: the second instance took the partition before the kill (the owner's "
                "session expired: try a longer --session-timeout-ms)"
            )
        if in_txn:  # at its next commit with changelog records, before committing
            trigger.touch()
            killed_at = logged_at(wait_line(owner, KILLED_MID_COMMIT))
            owner.kill9()  # reaps it (it killed itself)
        else:
            killed_at = time.time()
            owner.kill9()
        first_commits = second.current_log().count(FIRST_COMMIT)
        active = wait_line(second, "restored partitions", after=before)
        first_commit = wait_line(second, FIRST_COMMIT, after=first_commits)
        during.join()
        second.stop(STOP_S + 30)
        stats = second.stats()
        if "restore_ms" not in stats:
            raise RuntimeError(f"the second instance left no statistics: {second.current_log()[-3000:]}")
        found = RESTORED.search(active)
        if found is None:
            raise RuntimeError(f"no restore time in {active!r}")
        restore_ms, offsets_wait_ms = map(int, found.groups())
        kill_to_active = logged_at(active) - killed_at
        steps = STEPS.search(active)
        return {
            "keys": keys,
            "kind": kind,
            "max_cards": config.detector.max_cards,
            "session_timeout_ms": session_ms,
            "standby": standby,
            "kill_in_transaction": in_txn,
            "fence_pending_after_ms": fence_ms,
            "fencings": stats["fencings"],
            "kill_to_active_s": round(kill_to_active, 2),
            "kill_to_assigned_s": round(kill_to_active - restore_ms / 1000, 2),
            "assigned_to_active_s": round(restore_ms / 1000, 2),
            "offsets_wait_ms": offsets_wait_ms,
            "takeover_steps_ms": dict(
                (step, int(ms)) for step, ms in STEP.findall(steps.group(1) if steps else "")
            ),
            "active_to_first_commit_ms": round((logged_at(first_commit) - logged_at(active)) * 1000),
            "restore_ms": round(stats["restore_ms"]),
            "restore_records": stats["restore_records"],
            "restore_bytes": stats["restore_bytes"],
            "standby_takeovers": stats["standby_takeovers"],
            "snapshot_bytes": made["snapshot_bytes"],
        }
    finally:
        for inst in instances:
            inst.kill9()
        with suppress(Exception):
            delete_topics(broker.bootstrap, config)
        if not os.environ.get("FRAUDSTREAM_CHAOS_KEEP_LOGS"):
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--private-broker", type=int, default=None, metavar="PORT")
    ap.add_argument("--kind", choices=("detector", "velocity"), default="detector", help="detector.kind")
    ap.add_argument(
        "--session-timeout-ms", type=int, default=1_000, help="kafka.session_timeout_ms of both instances"
    )
    ap.add_argument("--only", choices=("off", "on"), default=None, help="standbys off or on only")
    ap.add_argument(
        "--kill-in-transaction", action="store_true",
        help="the owner dies mid-commit; each mode runs with fencing off, then on",
    )  # fmt: skip
    ap.add_argument(
        "--fence-ms", type=int, default=None, metavar="MS",
        help="with --kill-in-transaction: only this kafka.fence_pending_after_ms (0: off)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    log(f"{args.keys} keys, detector.kind {args.kind}, session_timeout_ms {args.session_timeout_ms}")
    broker = Broker.start(args.private_broker)
    try:
        modes = (False, True) if args.only is None else (args.only == "on",)
        default_fence = KafkaSection().fence_pending_after_ms
        fences = (0, default_fence) if args.kill_in_transaction else (default_fence,)
        if args.fence_ms is not None:
            fences = (args.fence_ms,)
        runs = [
            failover(
                broker,
                args.keys,
                standby,
                args.kind,
                args.session_timeout_ms,
                fence,
                args.kill_in_transaction,
            )
            for standby in modes
            for fence in fences
        ]
    finally:
        broker.close()
    for r in runs:
        mode = f"standby {'on ' if r['standby'] else 'off'}, fence {r['fence_pending_after_ms']} ms"
        log(f"{mode}: {json.dumps(r)}")
    if len(runs) == 1:
        print(json.dumps(runs[0]))
        return 0
    if args.kill_in_transaction:
        print(json.dumps({"keys": args.keys, "kill_in_transaction": True, "runs": runs}))
        return 0
    off, on = runs
    print(json.dumps({
        "keys": args.keys,
        "off": off,
        "on": on,
        "restore_ms_ratio": round(off["restore_ms"] / max(on["restore_ms"], 1), 1),
        "restore_bytes_ratio": round(off["restore_bytes"] / max(on["restore_bytes"], 1), 1),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
