"""A group of many instances on the real broker: assignment moves, time to stable, standby coverage.

Every member is a real confluent-kafka Consumer built from the pipeline's own group settings
(``fraudstream.kafka.topics.group_member_config``: the group, the session, the assignment
strategy, static membership) and the pipeline's rebalance calls (``incremental_assign`` /
``incremental_unassign`` when cooperative, ``assign`` / ``unassign`` when eager), subscribed to
a real topic of ``--partitions`` partitions. Nothing is produced: the assignment does not
depend on records, and what a member would restore is its standby question. Each member's warm
copies are ``standby_choice(owned, partitions, K)``, the call ``StandbyReplicas.keep_warm``
makes, over the partitions the member was assigned.

One group grows member by member through ``--sizes``; at each size:

- ``join``     the members that join one by one to reach the size (each one a rebalance);
- ``leave``    one member closes (``Consumer.close``: LeaveGroup, a graceful shutdown), then a
               fresh member joins back (``rejoin``);
- ``restart``  the static member (``group.instance.id``, in a process of its own) is killed with
               SIGKILL and restarted at once, within the session timeout: it must get the same
               partitions back and no other member may see a rebalance;
- ``kill``     the static member is killed with SIGKILL and not restarted: the group notices after
               the session timeout (as it would a dynamic member's: no LeaveGroup either way);
               then it starts again (``rejoin``).

The rest of the group are dynamic members (the pipeline's default) polled by one thread of this
process; the static member runs in a child process, as the only faithful kill is a real one
(a closed client, static or not, says goodbye in its own way; an abandoned one keeps
heartbeating from librdkafka's threads).

Figures of each event, once the group is stable (every partition owned by one live member,
counts within one of each other, no change for ``--settle`` seconds):

- ``moved``: partitions whose owner changed; ``min_moves``: the fewest any balanced assignment of
  the new member set could move (a departed member's partitions, plus what the survivors must
  give up or take to be balanced); ``paused``: partitions revoked from members that stayed
  (cooperative: only those that move; eager: all of them);
- ``stable_s``: from the event to the last change of the stable assignment;
- ``covered``: share of the partitions with a warm copy on a member that does not own them;
  ``warm_takeover``: share of the moved partitions (a departed member's) whose new owner held a
  warm copy before the event, i.e. failovers that read only the changelog's tail. For the
  pipeline's rule (``standby_choice``) and the one it replaced (``after_highest``), over the same
  assignments, with ``K`` = 1 and 2 times a member's share (``ceil(partitions / members)``); the
  last lines pool the departures.

    python benches/group_sim.py                                   # 8,16,32,64 over 128, 4-5 min
    python benches/group_sim.py --sizes 8,16 --partitions 64 --strategy range   # eager, for comparison

The last line is JSON. It uses the broker at ``FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS`` (default
127.0.0.1:9092); its load is light (heartbeats and joins), one topic and one group per run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from fraudstream.config import BOOTSTRAP_ENV, Config, KafkaSection
from fraudstream.kafka.standby import standby_choice
from fraudstream.kafka.topics import group_member_config


def after_highest(owned: set[int], partitions: int, count: int) -> list[int]:
    """The rule standby_choice had until 2026-12: from the one after the highest owned partition."""
    start = (max(owned) + 1) if owned else 0
    order = [(start + i) % partitions for i in range(partitions)]
    return [p for p in order if p not in owned][:count]


Rule = Callable[[set[int], int, int], list[int]]
RULES: dict[str, Rule] = {"standby_choice": standby_choice, "after_highest": after_highest}
"""The standby rules compared over the same assignments (the pipeline's first)."""


def member_config(args: argparse.Namespace, name: str, static: bool) -> Config:
    """A pipeline configuration for this group, as ``fraudstream run`` would be given it."""
    section = KafkaSection.for_topic(
        args.bootstrap,
        args.topic,
        instance_id=name,
        static_membership=static,
        session_timeout_ms=args.session_ms,
        assignment_strategy=args.strategy,
    )
    return Config(kafka=replace(section, group_id=args.group)).validate()


class Member:
    """One member in this process: the pipeline's consumer settings and rebalance calls."""

    def __init__(self, config: Config, on_change: Callable[[], None]) -> None:
        self.name = config.kafka.instance_id
        self.cooperative = config.kafka.assignment_strategy == "cooperative-sticky"
        self.owned: set[int] = set()
        self.revoked = 0
        self.callbacks = 0
        self.on_change = on_change
        self.consumer = Consumer(group_member_config(config))
        self.consumer.subscribe(
            [config.kafka.input_topic], on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke
        )

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.owned |= {tp.partition for tp in partitions}
        if self.cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self.callbacks += 1
        self.on_change()

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.owned -= {tp.partition for tp in partitions}
        self.revoked += len(partitions)
        if self.cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()
        self.callbacks += 1
        self.on_change()

    def poll(self) -> None:
        self.consumer.poll(0)

    def close(self) -> None:
        self.consumer.close()


class Child:
    """The static member, in a process of its own (this script's ``_member``) that reports its
    assignment on stdout; started ready to join, joins on :meth:`go`."""

    def __init__(self, args: argparse.Namespace, name: str, on_change: Callable[[], None]) -> None:
        self.name = name
        self.owned: set[int] = set()
        self.revoked = 0
        self.callbacks = 0
        self.on_change = on_change
        cmd = [sys.executable, os.path.abspath(__file__), "_member", "--name", name, *common_args(args)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(60):
            raise RuntimeError("the static member's process did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg.get("ready"):
                self.ready.set()
                continue
            self.owned = set(msg["owned"])
            self.revoked += msg["revoked"]
            self.callbacks += 1
            self.on_change()

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def poll(self) -> None:
        pass  # the child polls its own consumer

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def run_member(args: argparse.Namespace) -> None:
    """The child process: one static member reporting each change of its assignment."""
    config = member_config(args, args.name, static=True)

    def report() -> None:
        change = {"owned": sorted(member.owned), "revoked": member.revoked - reported[0]}
        print(json.dumps(change), flush=True)
        reported[0] = member.revoked

    reported = [0]
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    member = Member(config, report)
    while True:
        member.consumer.poll(0.05)


@dataclass
class Event:
    """What one event did to the group (see the module docstring)."""

    scenario: str
    members_before: int
    members_after: int
    moved: int
    min_moves: int
    paused: int
    stable_s: float
    coverage: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "members_before": self.members_before,
            "members_after": self.members_after,
            "moved": self.moved,
            "min_moves": self.min_moves,
            "paused": self.paused,
            "stable_s": round(self.stable_s, 3),
            "coverage": self.coverage,
            **self.extra,
        }


def min_moves(before: dict[int, str], members: list[str], partitions: int) -> int:
    """The fewest owner changes from ``before`` to any balanced assignment over ``members``:
    each keeps at most its share (the larger shares go to those that hold the most)."""
    counts = sorted((sum(1 for o in before.values() if o == m) for m in members), reverse=True)
    small, larger = divmod(partitions, len(members))
    kept = sum(min(c, small + (1 if i < larger else 0)) for i, c in enumerate(counts))
    return partitions - kept


def warm_sets(owners: dict[int, str], partitions: int, rule: Rule, k: int) -> dict[str, set[int]]:
    """Each member's warm copies under ``rule``, from the partitions it owns."""
    owned: dict[str, set[int]] = {}
    for p, m in owners.items():
        owned.setdefault(m, set()).add(p)
    return {m: set(rule(ps, partitions, k)) for m, ps in owned.items()}


class Group:
    """The members, polled by this thread; ownership as the members' callbacks report it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.partitions: int = args.partitions
        self.members: dict[str, Member | Child] = {}
        self.last_change = time.monotonic()
        self.serial = 0
        self.rng = random.Random(args.seed)

    def changed(self) -> None:
        self.last_change = time.monotonic()

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            for m in list(self.members.values()):
                m.poll()
            if time.monotonic() >= end:
                return
            time.sleep(0.005)

    def owners(self) -> dict[int, str]:
        return {p: m.name for m in self.members.values() for p in m.owned}

    def stable(self) -> bool:
        seen = [p for m in self.members.values() for p in m.owned]
        if len(seen) != self.partitions or len(set(seen)) != self.partitions:
            return False
        counts = [len(m.owned) for m in self.members.values()]
        return max(counts) - min(counts) <= 1

    def settle(self, t0: float, timeout: float = 90.0) -> float:
        """Polls until stable and unchanged for ``--settle`` s; seconds from ``t0`` to the last change."""
        deadline = time.monotonic() + timeout
        while not (self.stable() and time.monotonic() - self.last_change >= self.args.settle):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the group did not settle in {timeout:.0f} s")
            self.pump(0.05)
        return max(0.0, self.last_change - t0)

    def revoked_from(self, names: list[str]) -> int:
        return sum(self.members[n].revoked for n in names if n in self.members)

    # -- events -----------------------------------------------------------------------------------

    def event(self, scenario: str, act: Callable[[], list[str]]) -> Event:
        """Runs ``act`` (returns the names of the departed members) on a stable group."""
        before = self.owners()
        n_before = len(self.members)
        stayed_before = {n: m.revoked for n, m in self.members.items()}
        t0 = time.monotonic()
        departed = act()
        stable_s = self.settle(t0)
        after = self.owners()
        names = sorted(self.members)
        paused = sum(m.revoked - stayed_before[n] for n, m in self.members.items() if n in stayed_before)
        moved = [p for p in range(self.partitions) if before.get(p) != after[p]]
        ev = Event(
            scenario,
            n_before,
            len(names),
            len(moved),
            min_moves({p: o for p, o in before.items() if o in self.members}, names, self.partitions),
            paused,
            stable_s,
        )
        share = math.ceil(self.partitions / len(names))
        taken = [p for p in moved if before.get(p) in departed]
        for rule_name, rule in RULES.items():
            ev.coverage[rule_name] = {}
            for mult in (1, 2):
                k = mult * share
                warm_after = warm_sets(after, self.partitions, rule, k)
                covered = {p for ps in warm_after.values() for p in ps}
                warm_before = warm_sets(before, self.partitions, rule, k)
                hot = [p for p in taken if p in warm_before.get(after[p], set())]
                ev.coverage[rule_name][f"{mult}x"] = {
                    "K": k,
                    "covered": round(len(covered) / self.partitions, 3),
                    "warm_takeover": round(len(hot) / len(taken), 3) if taken else None,
                    "taken": len(taken),
                    "taken_warm": len(hot),
                }
        return ev

    def join(self) -> list[str]:
        self.serial += 1
        name = f"m{self.serial}"
        self.members[name] = Member(member_config(self.args, name, static=False), self.changed)
        return []

    def leave(self) -> list[str]:
        name = self.rng.choice(sorted(n for n, m in self.members.items() if isinstance(m, Member)))
        member = self.members.pop(name)
        assert isinstance(member, Member)
        member.close()
        return [name]

    def start_static(self) -> list[str]:
        child = Child(self.args, "static", self.changed)
        self.members["static"] = child
        child.go()
        return []

    def kill_static(self) -> list[str]:
        child = self.members.pop("static")
        assert isinstance(child, Child)
        child.kill()
        return ["static"]

    def restart_static(self) -> dict[str, Any]:
        """SIGKILL and an immediate restart: the same partitions back, no rebalance elsewhere."""
        old = self.members["static"]
        assert isinstance(old, Child)
        theirs = set(old.owned)
        others = {n: m.callbacks for n, m in self.members.items() if n != "static"}
        fresh = Child(self.args, "static", self.changed)  # imports done before the kill
        t0 = time.monotonic()
        old.kill()
        self.members["static"] = fresh
        fresh.go()
        deadline = t0 + 60
        while fresh.owned != theirs and time.monotonic() < deadline:
            self.pump(0.01)
        back_s = time.monotonic() - t0
        self.pump(max(self.args.settle, 2.0))  # a rebalance, had the rejoin caused one, shows by now
        callbacks = sum(self.members[n].callbacks - c for n, c in others.items())
        return {
            "same_partitions": fresh.owned == theirs,
            "back_s": round(back_s, 3),
            "other_members_callbacks": callbacks,
            "owned": len(theirs),
        }

    def close(self) -> None:
        for m in self.members.values():
            if isinstance(m, Child):
                m.kill()
            else:
                m.close()


def summary(events: list[Event]) -> dict[str, Any]:
    """Totals of a run of joins."""
    stable = sorted(e.stable_s for e in events)
    return {
        "events": len(events),
        "moved": sum(e.moved for e in events),
        "min_moves": sum(e.min_moves for e in events),
        "paused": sum(e.paused for e in events),
        "stable_s_median": round(stable[len(stable) // 2], 3),
        "stable_s_max": round(stable[-1], 3),
    }


def pooled(departures: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per rule and K (1x, 2x a member's share): the departed members' partitions taken over
    from a warm copy, over all the departures, and the range of coverage after them."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for ev in departures:
        for rule, per_k in ev["coverage"].items():
            for mult, c in per_k.items():
                acc = out.setdefault(rule, {}).setdefault(
                    mult, {"taken": 0, "taken_warm": 0, "covered_min": 1.0, "covered_max": 0.0}
                )
                acc["taken"] += c["taken"]
                acc["taken_warm"] += c["taken_warm"]
                acc["covered_min"] = min(acc["covered_min"], c["covered"])
                acc["covered_max"] = max(acc["covered_max"], c["covered"])
    for per_k in out.values():
        for acc in per_k.values():
            acc["warm_takeover"] = round(acc["taken_warm"] / max(1, acc["taken"]), 3)
    return out


def show(label: str, ev: Event) -> None:
    cov = "; ".join(
        f"{rule} K={c['K']}: covered {c['covered']:.0%}"
        + (f", warm takeover {c['warm_takeover']:.0%}" if c["warm_takeover"] is not None else "")
        for rule, per_k in ev.coverage.items()
        for k, c in per_k.items()
    )
    print(
        f"{label:<22} {ev.members_before:>3} -> {ev.members_after:<3} moved {ev.moved:>4} "
        f"(min {ev.min_moves:>4}), paused {ev.paused:>4}, stable after {ev.stable_s:6.2f} s | {cov}",
        flush=True,
    )


def common_args(args: argparse.Namespace) -> list[str]:
    return [
        "--bootstrap", args.bootstrap, "--topic", args.topic, "--group", args.group,
        "--session-ms", str(args.session_ms), "--strategy", args.strategy,
        "--partitions", str(args.partitions),
    ]  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "_member"])
    ap.add_argument("--bootstrap", default=os.environ.get(BOOTSTRAP_ENV, "127.0.0.1:9092"))
    ap.add_argument("--partitions", type=int, default=128)
    ap.add_argument("--sizes", default="8,16,32,64", help="group sizes, increasing")
    ap.add_argument("--session-ms", type=int, default=3_000, help="kafka.session_timeout_ms of every member")
    ap.add_argument("--strategy", default="cooperative-sticky", help="kafka.assignment_strategy")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds without change: stable")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--topic", default=None)
    ap.add_argument("--group", default=None)
    ap.add_argument("--name", default="static")
    args = ap.parse_args(argv)
    suffix = uuid.uuid4().hex[:8]
    args.topic = args.topic or f"group-sim-{suffix}"
    args.group = args.group or f"group-sim-{suffix}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.mode == "_member":
        run_member(args)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)])[
        args.topic
    ].result(30)
    group = Group(args)
    began = time.monotonic()
    result: dict[str, Any] = {
        "partitions": args.partitions,
        "strategy": args.strategy,
        "session_timeout_ms": args.session_ms,
        "sizes": {},
    }
    print(
        f"{args.partitions} partitions, {args.strategy}, session {args.session_ms} ms; "
        f"K = 1 and 2 times a member's share (ceil(partitions / members))",
        flush=True,
    )
    try:
        show("static member joins", group.event("join", group.start_static))
        for size in sizes:
            joins = [group.event("join", group.join) for _ in range(size - len(group.members))]
            for ev in joins[-1:]:
                show(f"join (last of {len(joins)})", ev)
            leave = group.event("leave", group.leave)
            show("leave (close)", leave)
            rejoin_leave = group.event("join", group.join)
            show("rejoin", rejoin_leave)
            restart = group.restart_static()
            print(f"{'restart (static)':<22} {size:>3} -> {size:<3} {restart}", flush=True)
            kill = group.event("kill", group.kill_static)
            show("kill -9 (static)", kill)
            rejoin_kill = group.event("join", group.start_static)
            show("rejoin", rejoin_kill)
            result["sizes"][str(size)] = {
                "joins": summary(joins),
                "last_join": joins[-1].as_json() if joins else None,
                "leave": leave.as_json(),
                "rejoin_after_leave": rejoin_leave.as_json(),
                "restart_static": restart,
                "kill": kill.as_json(),
                "rejoin_after_kill": rejoin_kill.as_json(),
            }
    finally:
        group.close()
        admin.delete_topics([args.topic])
    result["pooled"] = pooled([e for size in result["sizes"].values() for e in (size["leave"], size["kill"])])
    for rule, per_k in result["pooled"].items():
        for mult, c in per_k.items():
            print(
                f"{rule} K={mult} share: covered {c['covered_min']:.0%}-{c['covered_max']:.0%} "
                "after departures; "
                f"warm takeover {c['taken_warm']} of {c['taken']} partitions ({c['warm_takeover']:.0%})"
            )
    result["seconds"] = round(time.monotonic() - began, 1)
    print(f"total {result['seconds']} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
