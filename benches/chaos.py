"""Fault injection against the exactly-once Kafka pipeline (``fraudstream run``), on the real broker.

Scenarios (each on fresh topics, with injected fraud bursts and hostile records in the input):

- ``kill9``          instances of a two-instance group killed with SIGKILL at random points (start-up,
                     restore, mid-transaction, mid-commit) and restarted at once, while input arrives.
- ``broker_restart`` the broker is stopped (SIGTERM) and started again on the same data dir
                     (``scripts/kafka restart``) in the middle of a run; the instances must recover.
- ``stall``          an instance is frozen with SIGSTOP for longer than the group session timeout, then
                     resumed (SIGCONT): its partitions move on, and its late transaction must be rejected.
- ``stall_in_commit`` the same, frozen at the worst moment: after ``send_offsets_to_transaction`` and
                     before ``commit_transaction`` (a wrapper SIGSTOPs the process itself there).
- ``slow_sink``      the broker throttles the instance's produce requests (a client quota) and the
                     producer queue is small: backpressure must hold the input back, RSS stay bounded.
- ``scale_out``      three instances over a six-partition topic, added and removed (SIGTERM and
                     SIGKILL) during the run; state moves with its partitions through the changelog.

After every scenario, with every instance stopped: the alerts read with ``read_committed`` equal the
alerts of the in-process engine run per partition over the same input (``lost``, ``duplicated`` and
``spurious`` count the differences), the dead-letter topic holds exactly the records the reference
rejects (decode errors and late events), the view topic holds exactly the reference's view records
(a ``[view]`` of count and sum per category and 10 s runs beside the detector: ``views_lost``,
``views_duplicated``), the group's committed offsets cover the whole input
(``input == processed + dead_lettered``), and the state in the changelog equals the reference
engine's state byte for byte (``state_mismatch`` counts partitions that differ).

The detector's model reads customer profiles from a table (``[tables.profiles]``,
``detector.profiles_table``; the shipped profiles model): a compacted ``<input>-profiles`` topic
holds the profile of every card of the input (``eos_helpers.stream_profiles``: home country,
account opening, average amount; the burst cards have none), written before the instances
start, and the reference joins the same profiles (``profiled`` counts the transactions it joined
to one). A transaction scored without its profile would show as a lost score: the --quick
kill9 input scored in process with and without the table gives 19,946 of 20,120 scores different,
and 622 alerts against 471.
Placement ``global``: each instance reads the whole table at start, before it joins the group,
so the check is the exactly-once path under the scenario's fault, whichever partitions an instance
holds (copartitioned loading at assignment has its broker test in ``tests/kafka/test_tables.py``).
While the scenario runs, the profiles are written again (newer versions of the same values, about
100 a second): the lookup is a processing-time lookup, so an update that changed a value during
the run would make the reference depend on when each instance applied it; updates of the same
values exercise the live update path (and a restart reading two versions of each row) while the
reference stays exact.

Figures: ``events_per_s_by_instances`` (1, 2, 3 instances, or ``--instances``, of one group over
a preloaded six-partition topic, from the group's committed offsets), ``restore_ms``
(RunStats.restore_ms of an instance whose partition holds N keys of state in its changelog),
``bytes_per_key`` (``benches/memory.py``).

    python benches/chaos.py                      # the full run (about 15-20 minutes on 2 cores)
    python benches/chaos.py --quick              # small sizes, a few kills (development)
    python benches/chaos.py --private-broker 19092   # a throwaway broker of its own on that port
    python benches/chaos.py --only kill9,stall
    python benches/chaos.py --only kill9,scale_out --standby 6   # with standby replicas
    python benches/chaos.py --only throughput --instances 1,2,4 --throughput-events 1000000   # CPU too

It uses the project's broker (``scripts/kafka up``; ``scripts/kafka restart`` for ``broker_restart``,
which briefly takes the broker away from anyone else using it) unless ``--private-broker`` is given.
The last line is JSON.

Diagnostics: ``FRAUDSTREAM_CHAOS_TRACE=1`` runs the instances through ``traced_run`` (logs the
offsets each restore resumes from, every gap or rewind in the offsets processed, the offsets of
every commit; SIGUSR1 dumps a hung instance's Python stacks, done before it is killed);
``FRAUDSTREAM_CHAOS_KEEP_LOGS=1`` keeps the instances' logs and the scenarios' topics.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from fraudstream.config import Config, DecodeSection, KafkaSection, TableSection, ViewSection, to_toml
from fraudstream.errors import FencedError, StreamError
from fraudstream.fraud.profiles import ProfileColumns, join_profiles
from fraudstream.generator import DEFAULT_START_MS
from fraudstream.kafka.changelog import read_changelog
from fraudstream.kafka.processors import processor_factory
from fraudstream.kafka.produce import encode_profiles
from fraudstream.kafka.read_alerts import read_to_end
from fraudstream.kafka.task import (
    ALERTS,
    H_OFFSET,
    H_PARTITION,
    SCORES,
    VIEWS,
    DeadLetter,
    PartitionTask,
    read_dead_letter,
)
from fraudstream.kafka.watchdog import EXIT_RESTART

FENCED_STOP = "this instance was fenced by a newer one"
FENCED_GO_ON = "fenced while alive"
"""Logged by an instance fenced by a takeover that goes on with a new producer."""
"""What the pipeline logs when it stops on its fencing (a zombie whose partitions moved on)."""

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = ROOT / "scripts" / "kafka"
sys.path.insert(0, str(ROOT / "tests" / "kafka"))
from eos_helpers import stream_profiles, stream_with_bursts  # noqa: E402  (the EOS tests' input)

Alert = tuple[int, str, int, int, int, int]  # card, rule, trigger txn, event time, partition, offset
Score = tuple[int, int, int]  # partition, offset, txn id

HOSTILE: list[bytes] = [
    b"{not json",
    b'{"txn_id": 1',
    b'{"txn_id": 1, "card_id": 2}',
    b'{"txn_id": "x", "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": 1.0, "currency": "EUR",'
    b' "country": "DE", "merchant": "m", "event_time": 1700000000000}',
    b'{"txn_id": 5, "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": -3, "currency": "EUR",'
    b' "country": "DE", "merchant": "m", "event_time": 1700000000000}',
    b'{"txn_id": 5, "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": 3, "currency": "EUR",'
    b' "country": "DE", "merchant": "m", "event_time": 5}',
    b'{"txn_id": 5, "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": 3, "currency": "EUR",'
    b' "country": "DE", "merchant": "m", "event_time": 32503680000000}',
    b"",
    "caf\xc3".encode("latin-1"),
    # valid, dated 2099: more than decode.max_future_ms ahead of its message's timestamp
    b'{"txn_id": 6, "card_id": 2, "customer_id": 1, "terminal_id": 1, "amount": 3, "currency": "EUR",'
    b' "country": "DE", "merchant": "m", "event_time": 4092512400000}',
]


CATCH_UP_S = 240.0
"""How long a scenario's group gets to finish its input before it counts as stuck."""
STOP_TIMEOUT_S = 30.0
"""How long an instance gets to stop after SIGTERM before it counts as hung (and is killed)."""


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the broker ---------------------------------------------------------------------------------


@dataclass
class Broker:
    """The broker under test and how to restart it (``scripts/kafka`` with its environment)."""

    bootstrap: str
    env: dict[str, str]
    private: bool = False

    @property
    def state_dir(self) -> Path:
        return Path(self.env.get("FRAUDSTREAM_KAFKA_DIR", "/tmp/fraudstream-kafka"))

    def pid(self) -> int:
        return int((self.state_dir / "kafka.pid").read_text().strip())

    def script(self, *args: str) -> str:
        out = subprocess.run(
            [str(KAFKA_SCRIPT), *args], env=self.env, check=True, capture_output=True, text=True
        )
        return out.stdout.strip()

    def restart(self, down_s: float = 0.0) -> float:
        """Stops the broker (SIGTERM) and starts it on the same data; returns the seconds it took."""
        began = time.monotonic()
        self.script("restart", f"{down_s:g}")
        return time.monotonic() - began

    def ensure_up(self) -> None:
        if subprocess.run([str(KAFKA_SCRIPT), "status"], env=self.env, capture_output=True).returncode:
            log("the broker is not answering: starting it again")
            self.script("restart")

    @classmethod
    def start(cls, private_port: int | None = None) -> Broker:
        env = dict(os.environ)
        if private_port is not None:
            env["FRAUDSTREAM_KAFKA_PORT"] = str(private_port)
            env["FRAUDSTREAM_KAFKA_DIR"] = f"/tmp/fraudstream-chaos-kafka-{private_port}"
        broker = cls(bootstrap="", env=env, private=private_port is not None)
        broker.bootstrap = broker.script("up").splitlines()[-1]
        return broker

    def close(self) -> None:
        """Stops a private broker (this script started it; the project broker is left alone)."""
        if not self.private:
            return
        with suppress(FileNotFoundError, ProcessLookupError, ValueError):
            pid = self.pid()
            os.kill(pid, signal.SIGTERM)
            with suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
                psutil.Process(pid).wait(60)
        shutil.rmtree(self.state_dir, ignore_errors=True)


# -- topics, configuration, instances -----------------------------------------------------------


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "error_cb": lambda err: None})


def create_topic(bootstrap: str, name: str, partitions: int, settings: dict[str, str] | None = None) -> None:
    a = admin(bootstrap)
    new = NewTopic(name, num_partitions=partitions, replication_factor=1, config=settings or {})
    for f in a.create_topics([new]).values():
        f.result()
    deadline = time.monotonic() + 30
    while True:
        info = a.list_topics(name, timeout=10).topics.get(name)
        complete = info is not None and info.error is None and len(info.partitions) == partitions
        if complete and all(p.leader >= 0 for p in info.partitions.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name} has no leaders")
        time.sleep(0.1)


def delete_topics(bootstrap: str, config: Config) -> None:
    k = config.kafka
    a = admin(bootstrap)
    names = [k.input_topic, k.alerts_topic, k.scores_topic, k.dead_letter_topic, k.changelog_topic]
    names += [k.view_topic, *(t.topic for t in config.tables.values())]
    existing = set(a.list_topics(timeout=10).topics)
    doomed = [t for t in names if t in existing]
    if doomed:
        for f in a.delete_topics(doomed, operation_timeout=30).values():
            with suppress(KafkaException):
                f.result()
    with suppress(Exception):
        for f in a.delete_consumer_groups([k.group_id, f"{k.group_id}-restore"]).values():
            with suppress(KafkaException):
                f.result()


def chaos_config(
    bootstrap: str, topic: str, dedup_horizon: str = "10m", with_view: bool = True, **kafka: Any
) -> Config:
    """The instances' configuration: short session timeout (with a heartbeat well inside it),
    small batches, duplicate detection, and the view beside the detector unless ``with_view`` is
    false (the restore and failover figures time the detector's state alone)."""
    section = KafkaSection.for_topic(
        bootstrap,
        topic,
        session_timeout_ms=3_000,
        consume_batch=1_000,
        # a stuck client is ended (and restarted by Instance.supervise) well within the run
        stuck_call_timeout_ms=40_000,
        shutdown_timeout_ms=5_000,
        # the input's event times are from 2023: a wall-clock idle tick during an outage would make
        # every later record late for the rule windows, which the tick-free reference does not do
        idle_timeout_ms=0,
        replication_factor=1,  # the project's broker is a single node
        min_insync_replicas=1,
        view_topic=f"{topic}-view" if with_view else "",
    )
    section = replace(section, **kafka)
    # librdkafka heartbeats every 3 s by default: a session timeout of 3 s then expires between
    # two heartbeats and the group rebalances all the time (see the report of issue 8)
    section.client = {"heartbeat.interval.ms": str(section.session_timeout_ms // 3), **section.client}
    decode = DecodeSection(dedup_horizon=dedup_horizon)
    return Config(kafka=section, decode=decode, view=CHAOS_VIEW if with_view else ViewSection()).validate()


CHAOS_VIEW = ViewSection(key="category", size="10s", out_of_orderness="0s", allowed_lateness="5s")
"""A view beside the detector, its rows checked like the alerts: windows of 10 s (the input spans
well under an hour of event time) and a watermark with no delay, so the input's disorder (up to
3 s) re-emits windows as UPDATE rows."""


PROFILES = "profiles"
PROFILES_RESTATED_PER_S = 100.0
"""How fast the profiles are re-stated during a scenario (2,000 cards: over about 20 s)."""


def with_profiles(config: Config) -> Config:
    """``config`` with a global ``[tables.profiles]`` on ``<input>-profiles`` whose profiles the
    detector's model reads (``detector.profiles_table``; the shipped profiles model)."""
    table = TableSection(topic=f"{config.kafka.input_topic}-profiles", columns=list(ProfileColumns().names()))
    detector = replace(config.detector, profiles_table=PROFILES)
    return replace(config, detector=detector, tables={PROFILES: table}).validate()


def feed_profiles(bootstrap: str, config: Config) -> Feeder:
    """Creates the compacted profiles topic and writes every card's profile, dated before the
    input; then starts a feeder re-stating them while the scenario runs: newer versions of the
    same values, so that the processing-time lookup gives the same answer before and after an
    update, and the reference stays exact."""
    topic = config.tables[PROFILES].topic
    create_topic(bootstrap, topic, 3, {"cleanup.policy": "compact"})
    profiles = stream_profiles()

    def versions(at: int) -> list[tuple[int, bytes]]:
        return [(int(key), value) for key, value in encode_profiles(profiles, at)]

    preload(bootstrap, topic, versions(DEFAULT_START_MS - 3_600_000))
    restating = Feeder(bootstrap, topic, versions(DEFAULT_START_MS), PROFILES_RESTATED_PER_S)
    restating.start()
    return restating


@dataclass
class ReferenceProfiles:
    """The reference's profiles table: what the instances hold all along (the stream's
    profiles); counts the transactions it joins to a profile."""

    profiles: dict[str, np.ndarray[Any, Any]] = field(default_factory=stream_profiles)
    matched: int = 0

    def lookup(self, keys: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
        found = join_profiles(keys, self.profiles, ProfileColumns())
        self.matched += int(found["matched"].sum())
        return found

    def lookups(self, config: Config) -> dict[str, Any]:
        name = config.detector.profiles_table
        return {name: self.lookup} if name else {}


def write_toml(config: Config, path: Path) -> Path:
    """The whole configuration as a TOML file for ``fraudstream run --config``."""
    path.write_text(to_toml(config))
    return path


class Instance:
    """One ``fraudstream run`` process (restartable; its output appended to one log file)."""

    def __init__(self, config: Config, workdir: Path, instance_id: str, wrapper: list[str] | None = None):
        self.instance_id = instance_id
        self.config = replace(config, kafka=replace(config.kafka, instance_id=instance_id))
        self.path = write_toml(self.config, workdir / f"instance-{instance_id}.toml")
        self.log = workdir / f"instance-{instance_id}.log"
        self.wrapper = wrapper
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.crashes: list[str] = []
        self.hung = False
        self.watchdog_exits = 0
        self.fenced_exits = 0
        """Exits with EXIT_RESTART: the instance's watchdog ended a stuck process."""
        self._args: tuple[str, ...] = ()

    def start(self, *args: str) -> Instance:
        assert not self.alive, f"instance {self.instance_id} is already running"
        self._args = args
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = self.wrapper or [sys.executable, "-m", "fraudstream", "run"]
        if os.environ.get("FRAUDSTREAM_CHAOS_TRACE"):
            cmd = self.wrapper or [sys.executable, str(Path(__file__).resolve()), "_run"]
            cmd = [*cmd, "--trace"]
        mark = f"--- start {self.starts} at {time.time():.3f}\n".encode()
        with self.log.open("ab") as out:
            out.write(mark)
            out.flush()
            self.proc = subprocess.Popen(
                [*cmd, "--config", str(self.path), *args], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def current_log(self) -> str:
        text = self.log.read_text(errors="replace")
        return text[text.rfind("--- start ") :]

    def assigned(self) -> bool:
        """Whether the current process has restored (been assigned) partitions."""
        return "restored partitions" in self.current_log()

    def supervise(self) -> bool:
        """What a supervisor (systemd ``Restart=on-failure``) does: an instance its watchdog
        ended, or one that stopped because it was fenced (by a newer member with its id, or too
        often: a fenced zombie otherwise goes on by itself), is started again. Returns whether
        the instance runs."""
        if self.proc is not None and self.proc.poll() == EXIT_RESTART:
            self.watchdog_exits += 1
            log(f"instance {self.instance_id}: ended by its watchdog (exit {EXIT_RESTART}): restarting it")
            self.proc = None
            self.start(*self._args)
        elif self.proc is not None and self.proc.poll() == 1 and self.fenced_stop():
            self.fenced_exits += 1
            log(f"instance {self.instance_id}: stopped as fenced (a zombie taken over): restarting it")
            self.proc = None
            self.start(*self._args)
        return self.alive

    def fenced_stop(self) -> bool:
        """Whether the process's last run ended on its fencing (the pipeline's FencedError)."""
        return FENCED_STOP in self.current_log()

    def signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.pid, sig)

    def kill9(self) -> None:
        if self.proc is not None:
            with suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (the pipeline finishes its transaction and exits) and wait."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"instance {self.instance_id} ignored SIGTERM for {timeout} s: killing it")
                self.hung = True
                if os.environ.get("FRAUDSTREAM_CHAOS_TRACE"):  # traced_run dumps its stacks
                    self.signal(signal.SIGUSR1)
                    time.sleep(1.0)
                self.kill9()
        return self.check_exit()

    def check_exit(self) -> int:
        """The exit code of a finished process; a non-zero one (not SIGKILL) is a crash."""
        if self.proc is None:  # its crash is already recorded
            return 0
        rc = self.proc.poll()
        if rc is None:
            return 0
        if rc == EXIT_RESTART or (rc == 1 and self.fenced_stop()):  # supervise() restarts it
            return rc
        if rc not in (0, -signal.SIGKILL, -signal.SIGTERM):
            tail = "\n".join(self.current_log().splitlines()[-6:])
            self.crashes.append(f"exit {rc}: {tail}")
            self.proc = None
        return rc

    def stats(self) -> dict[str, Any]:
        lines = [ln for ln in self.current_log().splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def rss(self) -> int:
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except (psutil.NoSuchProcess, AssertionError):
            return 0


class Feeder(threading.Thread):
    """Produces records keyed by card, at ``rate`` records/s (0: as fast as possible)."""

    def __init__(self, bootstrap: str, topic: str, records: list[tuple[int, bytes]], rate: float = 0.0):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.records, self.rate = bootstrap, topic, records, rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            p = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "linger.ms": 5,
                    "enable.idempotence": True,
                    "error_cb": lambda err: None,  # the broker restart: the producer retries
                }
            )
            began = time.monotonic()
            for i, (key, value) in enumerate(self.records):
                while True:
                    try:
                        p.produce(self.topic, key=str(key).encode(), value=value)
                        break
                    except BufferError:
                        p.poll(0.05)
                self.sent = i + 1
                if i % 500 == 0:
                    p.poll(0)
                    if self.rate:
                        ahead = i / self.rate - (time.monotonic() - began)
                        if ahead > 0:
                            time.sleep(ahead)
            if p.flush(300) != 0:
                raise RuntimeError("the feeder could not deliver every record within 300 s")
        except BaseException as exc:
            self.error = exc


def chaos_stream(
    n: int, seed: int, bursts: int, hostile_every: int = 400, duplicate_every: int = 300
) -> list[tuple[int, bytes]]:
    """Generated card traffic with fraud bursts, a hostile record every ``hostile_every`` and an
    exact copy of a recent record (same transaction id) every ``duplicate_every``."""
    records = stream_with_bursts(n, seed=seed, bursts=bursts)
    rng = random.Random(seed)
    out: list[tuple[int, bytes]] = []
    for i, rec in enumerate(records):
        out.append(rec)
        if hostile_every and i % hostile_every == hostile_every // 2:
            out.append((rng.randrange(1_000_000), rng.choice(HOSTILE)))
        if duplicate_every and i % duplicate_every == duplicate_every - 1:
            out.append(records[max(0, i - rng.randrange(1, 50))])
    return out


# -- reading what was committed -----------------------------------------------------------------


def end_offsets(bootstrap: str, topic: str, partitions: int, committed: bool = True) -> dict[int, int]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "chaos-offsets",
            "isolation.level": "read_committed" if committed else "read_uncommitted",
            "error_cb": lambda err: None,
        }
    )
    try:
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)
        }
    finally:
        c.close()


def read_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 120) -> list[Any]:
    """Every committed record of ``topic``, in partition then offset order."""
    return read_to_end(bootstrap, topic, partitions, timeout=timeout)


def committed_offsets(config: Config, partitions: int) -> dict[int, int]:
    k = config.kafka
    c = Consumer(
        {
            "bootstrap.servers": k.bootstrap_servers,
            "group.id": k.group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "error_cb": lambda err: None,
        }
    )
    try:
        tps = c.committed([TopicPartition(k.input_topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: max(tp.offset, 0) for tp in tps}
    finally:
        c.close()


def wait_caught_up(config: Config, partitions: int, timeout: float, alive: Callable[[], bool]) -> bool:
    """Waits until the group's committed offsets reach the end of the input."""
    deadline = time.monotonic() + timeout
    k = config.kafka
    while True:
        ends = end_offsets(k.bootstrap_servers, k.input_topic, partitions)
        try:
            done = committed_offsets(config, partitions)
        except KafkaException:
            done = {}
        if all(done.get(p, 0) >= ends[p] for p in ends):
            return True
        if not alive() or time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def wait_no_open_transactions(config: Config, partitions: int, timeout: float = 90) -> bool:
    """Waits until no transaction is open on the output topics (last stable offset = high watermark)."""
    k = config.kafka
    deadline = time.monotonic() + timeout
    topics = (k.alerts_topic, k.dead_letter_topic, k.changelog_topic)
    while True:
        stable = all(
            end_offsets(k.bootstrap_servers, t, partitions, True)
            == end_offsets(k.bootstrap_servers, t, partitions, False)
            for t in topics
        )
        if stable:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


@dataclass
class Reference:
    """What a crash-free run gives: the pipeline's own partition task over the same input."""

    inputs: dict[int, int]
    alerts: Counter[Alert]
    scores: Counter[tuple[Any, ...]]
    dead_letters: Counter[tuple[int, int]]
    snapshots: dict[int, bytes]
    views: Counter[tuple[bytes | None, bytes]] = field(default_factory=Counter)
    """The view records (key, value) of ``kafka.view_topic``."""
    profiled: int = 0
    """Transactions joined to a profile (``detector.profiles_table``)."""


def alert_identity(a: dict[str, Any]) -> Alert:
    """What a crash-free run and a crashing one agree on (not the latency)."""
    return (a["card_id"], a["rule"], a["trigger_txn_id"], a["event_time"], a["partition"], a["offset"])


def score_identity(partition: int, s: dict[str, Any]) -> tuple[Any, ...]:
    return (partition, s["offset"], s["txn_id"], s["card_id"], s["score"], s["decision"])


def dead_letter_origin(letter: DeadLetter) -> tuple[int, int]:
    """(partition, offset) of the input record a dead letter copies (from its headers)."""
    return int(letter.header(H_PARTITION) or -1), int(letter.header(H_OFFSET) or -1)


def reference(config: Config, partitions: int) -> Reference:
    k = config.kafka
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for m in read_topic(k.bootstrap_servers, k.input_topic, partitions):
        by_partition[m.partition()].append(m)
    alerts: Counter[Alert] = Counter()
    scores: Counter[tuple[Any, ...]] = Counter()
    dead: Counter[tuple[int, int]] = Counter()
    views: Counter[tuple[bytes | None, bytes]] = Counter()
    snapshots = {}
    table = ReferenceProfiles()
    factory = processor_factory(config, table.lookups(config))
    for p in range(partitions):
        task = PartitionTask(p, factory(), config)
        out = task.process(by_partition.get(p, []))
        alerts.update(alert_identity(json.loads(v)) for _, v in out.records[ALERTS])
        scores.update(score_identity(p, json.loads(v)) for _, v in out.records[SCORES])
        dead.update(dead_letter_origin(letter) for letter in out.dead_letters)
        views.update(out.records.get(VIEWS, []))
        snapshots[p] = task.snapshot()
    inputs = {p: len(by_partition.get(p, [])) for p in range(partitions)}
    return Reference(inputs, alerts, scores, dead, snapshots, views, table.matched)


@dataclass
class Verdict:
    """How the committed output compares with the reference."""

    input: int = 0
    processed: int = 0
    dead_lettered: int = 0
    alerts: int = 0
    lost: int = 0
    duplicated: int = 0
    spurious: int = 0
    dead_letters_lost: int = 0
    dead_letters_duplicated: int = 0
    scored: int = 0
    scores_lost: int = 0
    scores_duplicated: int = 0
    views: int = 0
    views_lost: int = 0
    views_duplicated: int = 0
    profiled: int = 0
    uncommitted_input: int = 0
    state_mismatch: int = 0
    open_transactions: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def figures(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "problems"}
        d["ok"] = self.ok
        if self.problems:
            d["problems"] = self.problems
        return d


def differences(expected: Counter[Any], got: Counter[Any]) -> tuple[int, int, int]:
    """(lost, duplicated, spurious): expected but missing; extra copies of expected; unexpected."""
    lost = sum((expected - got).values())
    duplicated = sum(max(0, got[a] - expected[a]) for a in expected)
    spurious = sum(c for a, c in got.items() if a not in expected)
    return lost, duplicated, spurious


def verify(config: Config, partitions: int) -> Verdict:
    """Compares everything committed with the reference (call with every instance stopped)."""
    k = config.kafka
    v = Verdict()
    if not wait_no_open_transactions(config, partitions):
        v.open_transactions = True
        v.problems.append("a transaction stayed open on an output topic for 90 s")
    ref = reference(config, partitions)
    got: Counter[Alert] = Counter()
    for m in read_topic(k.bootstrap_servers, k.alerts_topic, partitions):
        got[alert_identity(json.loads(m.value()))] += 1
    scored: Counter[tuple[Any, ...]] = Counter()
    if k.scores_topic:
        for m in read_topic(k.bootstrap_servers, k.scores_topic, partitions):
            scored[score_identity(m.partition(), json.loads(m.value()))] += 1
    dlq: Counter[tuple[int, int]] = Counter()
    for m in read_topic(k.bootstrap_servers, k.dead_letter_topic, partitions):
        dlq[dead_letter_origin(read_dead_letter(m))] += 1
    v.input = sum(ref.inputs.values())
    v.alerts = sum(got.values())
    v.lost, v.duplicated, spurious = differences(ref.alerts, got)
    v.spurious = spurious
    v.scored = sum(scored.values())
    v.scores_lost, v.scores_duplicated, scores_spurious = differences(ref.scores, scored)
    v.scores_duplicated += scores_spurious
    dl_lost, dl_dup, dl_spurious = differences(ref.dead_letters, dlq)
    v.dead_letters_lost, v.dead_letters_duplicated = dl_lost, dl_dup + dl_spurious
    viewed: Counter[tuple[bytes | None, bytes]] = Counter()
    if k.view_topic:
        viewed.update((m.key(), m.value()) for m in read_topic(k.bootstrap_servers, k.view_topic, partitions))
        if not ref.views:
            v.problems.append("the reference publishes no view row: the view check proves nothing")
    v.views = sum(viewed.values())
    v.views_lost, v.views_duplicated, views_spurious = differences(ref.views, viewed)
    v.views_duplicated += views_spurious
    v.profiled = ref.profiled
    if config.detector.profiles_table and not ref.profiled:
        v.problems.append("the reference joins no transaction to a profile: the table check proves nothing")
    v.dead_lettered = sum(dlq.values())
    committed = committed_offsets(config, partitions)
    ends = end_offsets(k.bootstrap_servers, k.input_topic, partitions)
    v.uncommitted_input = sum(max(0, ends[p] - committed.get(p, 0)) for p in ends)
    # processed counted on its own (one scored record per processed transaction), so that
    # input == processed + dead-lettered is a check, not an identity
    v.processed = v.scored if ref.scores else sum(committed.values()) - v.dead_lettered
    restored = read_changelog(
        {"bootstrap.servers": k.bootstrap_servers},
        k.changelog_topic,
        f"chaos-check-{uuid.uuid4().hex[:6]}",
        list(range(partitions)),
    )
    factory = processor_factory(config, ReferenceProfiles().lookups(config))
    for p in range(partitions):
        state = PartitionTask(p, factory(), config)
        r = restored[p]
        try:
            if r.snapshot is not None:
                state.restore(r.snapshot, r.changes)
            same = state.snapshot() == ref.snapshots[p]
        except StreamError as exc:
            v.problems.append(f"changelog of partition {p} does not restore: {exc}")
            same = False
        v.state_mismatch += not same
    if not ref.alerts:
        v.problems.append("the reference raises no alert: the scenario proves nothing")
    for name in (
        "lost",
        "duplicated",
        "spurious",
        "dead_letters_lost",
        "dead_letters_duplicated",
        "scores_lost",
        "scores_duplicated",
        "views_lost",
        "views_duplicated",
        "uncommitted_input",
        "state_mismatch",
    ):
        if getattr(v, name):
            v.problems.append(f"{name} = {getattr(v, name)}")
    if v.input != v.processed + v.dead_lettered:
        v.problems.append(f"input {v.input} != processed {v.processed} + dead-lettered {v.dead_lettered}")
    return v


# -- scenarios ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One scenario: the figures of its JSON entry, and the verdict."""

    name: str
    runs: int
    verdict: Verdict
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.crashes

    def as_json(self) -> dict[str, Any]:
        v = self.verdict
        d: dict[str, Any] = {
            "runs": self.runs,
            "lost": v.lost,
            "duplicated": v.duplicated,
            "dead_lettered": v.dead_lettered,
            "spurious": v.spurious,
            "input": v.input,
            "processed": v.processed,
            "alerts": v.alerts,
            "views": v.views,
            "views_lost": v.views_lost,
            "views_duplicated": v.views_duplicated,
            "profiled": v.profiled,
            "state_mismatch": v.state_mismatch,
            "crashes": len(self.crashes),
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            **self.extra,
        }
        problems = v.problems + [f"crash: {c.splitlines()[0]}" for c in self.crashes]
        if problems:
            d["problems"] = problems
        return d


SCENARIO_KAFKA: dict[str, Any] = {}
"""[kafka] settings of every scenario's instances from the command line (``--standby``)."""


@contextmanager
def scenario_topic(broker: Broker, name: str, partitions: int, **kafka: Any) -> Iterator[tuple[Config, Path]]:
    topic = f"chaos-{name}-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, partitions)
    config = with_profiles(chaos_config(broker.bootstrap, topic, **{**SCENARIO_KAFKA, **kafka}))
    restating = feed_profiles(broker.bootstrap, config)
    workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
    try:
        yield config, workdir
    finally:
        restating.join(60)
        if restating.error:
            log(f"{name}: re-stating the profiles failed: {restating.error}")
        if os.environ.get("FRAUDSTREAM_CHAOS_KEEP_LOGS"):
            log(f"topics of {name} kept: {config.kafka.input_topic}*")
        else:
            with suppress(Exception):
                delete_topics(broker.bootstrap, config)
        if os.environ.get("FRAUDSTREAM_CHAOS_KEEP_LOGS"):
            log(f"logs of {name} kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def finish(
    name: str,
    config: Config,
    partitions: int,
    instances: list[Instance],
    began: float,
    runs: int,
    extra: dict[str, Any] | None = None,
    catch_up_s: float | None = None,
    stop_timeout: float | None = None,
) -> Outcome:
    """Lets the group catch up with the input, stops every instance, and verifies."""
    catch_up_s = CATCH_UP_S if catch_up_s is None else catch_up_s
    stop_timeout = STOP_TIMEOUT_S if stop_timeout is None else stop_timeout
    for inst in instances:
        inst.supervise()
        inst.check_exit()
    if not any(i.alive for i in instances) and not wait_caught_up(config, partitions, 0, lambda: False):
        instances[0].start()  # the last one crashed or was killed: one to drain
    caught_up = wait_caught_up(
        config, partitions, catch_up_s, lambda: any([i.supervise() for i in instances])
    )
    for inst in instances:
        inst.stop(stop_timeout)
    if not caught_up:  # a crashed group: drain with a fresh process, so the verdict is about the output
        log(f"{name}: the group did not catch up; draining with a fresh instance")
        instances[0].start("--idle-exit", "5")
        assert instances[0].proc is not None
        try:
            instances[0].proc.wait(catch_up_s)
        except subprocess.TimeoutExpired:
            instances[0].hung = True
            instances[0].kill9()
        instances[0].check_exit()
    verdict = verify(config, partitions)
    crashes = [c for i in instances for c in i.crashes]
    hung = sum(i.hung for i in instances)
    if not caught_up:
        verdict.problems.append("the running group did not process its whole input")
    if hung:
        verdict.problems.append(
            f"{hung} instance(s) hung: no progress, SIGTERM ignored (killed with SIGKILL)"
        )
    extra = {
        **(extra or {}),
        "hung_instances": hung,
        "watchdog_restarts": sum(i.watchdog_exits for i in instances),
        "fenced_restarts": sum(i.fenced_exits for i in instances),
    }
    out = Outcome(name, runs, verdict, time.monotonic() - began, extra, crashes)
    log(f"{name}: {'OK' if out.ok else 'FAILED'} {json.dumps(out.as_json())}")
    return out


def scenario_kill9(
    broker: Broker, kills: int, events: int, rate: float, seed: int = 11, group_size: int = 2
) -> Outcome:
    """Two instances; one of them (at random) killed with SIGKILL at a random moment, restarted at once."""
    partitions = 6
    began = time.monotonic()
    with scenario_topic(broker, "kill9", partitions, commit_interval_ms=50) as (config, workdir):
        records = chaos_stream(events, seed=seed, bursts=max(20, events // 5_000))
        feeder = Feeder(broker.bootstrap, config.kafka.input_topic, records, rate)
        instances = [Instance(config, workdir, str(i)).start() for i in range(group_size)]
        feeder.start()
        rng = random.Random(seed)
        landed_after_assignment = 0
        done = 0
        while done < kills:
            time.sleep(rng.uniform(0.2, 3.0))
            victim = rng.choice(instances)
            victim.check_exit()
            if not victim.alive:
                victim.start()
                continue
            landed_after_assignment += victim.assigned()
            victim.kill9()
            victim.start()
            done += 1
            if done % 10 == 0:
                log(f"kill9: {done} kills, {feeder.sent}/{len(records)} records fed")
        feeder.join()
        if feeder.error:
            raise feeder.error
        return finish(
            "kill9",
            config,
            partitions,
            instances,
            began,
            done,
            {
                "kills_after_assignment": landed_after_assignment,
                "restarts": sum(i.starts - 1 for i in instances),
            },
        )


def scenario_broker_restart(
    broker: Broker,
    restarts: int,
    events: int,
    rate: float,
    seed: int = 12,
    catch_up_s: float | None = None,
    stop_timeout: float | None = None,
) -> Outcome:
    """Two instances and a feeder; the broker restarted (data kept) ``restarts`` times mid-run."""
    partitions = 6
    began = time.monotonic()
    with scenario_topic(broker, "broker", partitions) as (config, workdir):
        records = chaos_stream(events, seed=seed, bursts=max(20, events // 5_000))
        feeder = Feeder(broker.bootstrap, config.kafka.input_topic, records, rate)
        instances = [Instance(config, workdir, str(i)).start() for i in range(2)]
        feeder.start()
        feed_s = len(records) / rate
        downtime = []
        try:
            for _ in range(restarts):
                time.sleep(feed_s / (restarts + 1))
                before = feeder.sent
                downtime.append(broker.restart(down_s=2.0))
                log(f"broker_restart: broker restarted in {downtime[-1]:.1f} s (fed {before}->{feeder.sent})")
        finally:
            broker.ensure_up()
        survived = sum(i.alive for i in instances)
        feeder.join()
        if feeder.error:
            raise feeder.error
        return finish(
            "broker_restart",
            config,
            partitions,
            instances,
            began,
            restarts,
            {"restart_s": [round(d, 1) for d in downtime], "instances_survived": survived},
            catch_up_s=catch_up_s,
            stop_timeout=stop_timeout,
        )


def scenario_stall(broker: Broker, stalls: int, events: int, rate: float, seed: int = 13) -> Outcome:
    """Two instances; one at a time frozen (SIGSTOP) past the session timeout, then resumed."""
    partitions = 6
    began = time.monotonic()
    # a long commit interval: the frozen instance holds an open transaction with output in it
    with scenario_topic(
        broker,
        "stall",
        partitions,
        commit_interval_ms=1_500,
        alert_commit_min_interval_ms=1_500,
    ) as (config, workdir):
        records = chaos_stream(events, seed=seed, bursts=max(20, events // 5_000))
        feeder = Feeder(broker.bootstrap, config.kafka.input_topic, records, rate)
        instances = [Instance(config, workdir, str(i)).start() for i in range(2)]
        feeder.start()
        stall_s = config.kafka.session_timeout_ms / 1000 + 3.0
        rng = random.Random(seed)
        evidence = moves = 0
        for s in range(stalls):
            zombie, other = instances[s % 2], instances[1 - s % 2]
            deadline = time.monotonic() + 60
            while not (zombie.assigned() and other.assigned()) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(rng.uniform(0.5, 2.0))
            restores = other.current_log().count("restored partitions")
            zombie.signal(signal.SIGSTOP)
            time.sleep(stall_s)
            mark = len(zombie.current_log())
            zombie.signal(signal.SIGCONT)
            time.sleep(3.0)
            # the other instance took the zombie's partitions (its restore completes once the
            # zombie's pending transaction, if any, is resolved)
            moved = other.current_log().count("restored partitions") > restores
            moves += moved
            after = zombie.current_log()[mark:]
            fenced = any(w in after for w in ("lost", "must abort", "fenced", "ILLEGAL_GENERATION"))
            evidence += fenced
            log(f"stall {s}: partitions moved on: {moved}; zombie's late transaction rejected: {fenced}")
        feeder.join()
        if feeder.error:
            raise feeder.error
        return finish(
            "stall",
            config,
            partitions,
            instances,
            began,
            stalls,
            {"zombie_rejections_logged": evidence, "partitions_moved": moves},
        )


def scenario_stall_in_commit(broker: Broker, events: int, rate: float, seed: int = 14) -> Outcome:
    """An instance freezes itself between ``send_offsets_to_transaction`` and ``commit_transaction``
    (``traced_run`` below), stays frozen past the session timeout, and is resumed."""
    partitions = 6
    began = time.monotonic()
    with scenario_topic(broker, "commitstall", partitions, commit_interval_ms=200) as (config, workdir):
        records = chaos_stream(events, seed=seed, bursts=max(20, events // 5_000))
        feeder = Feeder(broker.bootstrap, config.kafka.input_topic, records, rate)
        wrapper = [sys.executable, str(Path(__file__).resolve()), "_run", "--stall-after", "7"]
        zombie = Instance(config, workdir, "0", wrapper=wrapper).start()
        other = Instance(config, workdir, "1").start()
        feeder.start()
        deadline = time.monotonic() + 90
        while psutil.Process(zombie.pid).status() != psutil.STATUS_STOPPED:
            if time.monotonic() > deadline or not zombie.alive:
                raise RuntimeError(f"the zombie never stopped itself:\n{zombie.current_log()[-2_000:]}")
            time.sleep(0.05)
        restores = other.current_log().count("restored partitions")
        time.sleep(config.kafka.session_timeout_ms / 1000 + 4.0)
        mark = len(zombie.current_log())
        zombie.signal(signal.SIGCONT)
        time.sleep(3.0)
        moved = other.current_log().count("restored partitions") > restores
        after = zombie.current_log()[mark:]
        late_commit_accepted = "late commit accepted" in after
        log(
            f"stall_in_commit: partitions moved on: {moved}; the zombie's late commit accepted: "
            f"{late_commit_accepted}"
        )
        feeder.join()
        if feeder.error:
            raise feeder.error
        out = finish(
            "stall_in_commit",
            config,
            partitions,
            [zombie, other],
            began,
            1,
            {"partitions_moved": moved, "late_commit_accepted": late_commit_accepted},
        )
        out.extra["zombie_fenced_and_went_on"] = FENCED_GO_ON in zombie.current_log()[mark:]
        return out


def set_produce_quota(broker: Broker, client_id: str, bytes_per_s: int | None) -> None:
    """A broker-side produce quota for ``client_id`` (kafka-configs.sh), or removes it."""
    home = Path(broker.env.get("FRAUDSTREAM_CACHE", Path.home() / ".cache" / "fraudstream"))
    libs = home / f"kafka-{broker.env.get('FRAUDSTREAM_KAFKA_VERSION', '4.1.1')}" / "libs" / "*"
    change = (
        ["--add-config", f"producer_byte_rate={bytes_per_s}"]
        if bytes_per_s
        else ["--delete-config", "producer_byte_rate"]
    )
    subprocess.run(
        [
            "java",
            "-cp",
            str(libs),
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            broker.bootstrap,
            "--alter",
            *change,
            "--entity-type",
            "clients",
            "--entity-name",
            client_id,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def scenario_slow_sink(
    broker: Broker, events: int, quota: int, throttled_s: float, seed: int = 15
) -> Outcome:
    """One instance over preloaded input, its produce requests throttled by a broker quota and its
    producer queue small: backpressure holds the input back; RSS stays bounded; nothing lost."""
    partitions = 6
    began = time.monotonic()
    client_id = f"chaos-slow-{uuid.uuid4().hex[:6]}"
    client = {
        "client.id": client_id,
        "queue.buffering.max.messages": "200",
        "queue.buffering.max.kbytes": "512",
    }
    with scenario_topic(broker, "slow", partitions, client=client) as (config, workdir):
        set_produce_quota(broker, client_id, quota)
        try:
            records = chaos_stream(events, seed=seed, bursts=max(20, events // 5_000))
            feeder = Feeder(broker.bootstrap, config.kafka.input_topic, records)
            feeder.start()
            feeder.join()
            if feeder.error:
                raise feeder.error
            inst = Instance(config, workdir, "0").start()
            rss: list[tuple[float, int, int]] = []  # (time, rss, committed)
            t0 = time.monotonic()
            while time.monotonic() - t0 < throttled_s and inst.alive:
                try:
                    done = sum(committed_offsets(config, partitions).values())
                except KafkaException:  # the group coordinator is still loading: next second
                    done = rss[-1][2] if rss else 0
                rss.append((time.monotonic() - t0, inst.rss(), done))
                time.sleep(1.0)
        finally:
            set_produce_quota(broker, client_id, None)
        throttled_done = rss[-1][2] if rss else 0
        throttled_rate = throttled_done / max(rss[-1][0], 1e-9) if rss else 0.0
        t1 = time.monotonic()
        caught = wait_caught_up(config, partitions, 300, lambda: inst.alive)
        free_rate = (len(records) - throttled_done) / max(time.monotonic() - t1, 1e-9) if caught else 0.0
        inst.stop()
        stats = inst.stats()
        # bounded: after start-up, RSS does not keep growing while the input backs up
        samples = [r for _, r, _ in rss if r]
        warm = samples[len(samples) // 4 :] or samples
        extra = {
            "quota_bytes_per_s": quota,
            "throttled_events_per_s": round(throttled_rate),
            "unthrottled_events_per_s": round(free_rate),
            "backpressure_s": round(float(stats.get("backpressure_s", 0.0)), 1),
            "rss_mb_start": round(warm[0] / 2**20) if warm else 0,
            "rss_mb_peak": round(max(samples) / 2**20) if samples else 0,
            "lag_at_end_of_throttle": len(records) - throttled_done,
        }
        out = finish("slow_sink", config, partitions, [inst], began, 1, extra)
        if warm and max(warm) > 1.5 * warm[0] + (64 << 20):
            out.verdict.problems.append(f"RSS grew from {warm[0] >> 20} MB to {max(warm) >> 20} MB")
        if not stats.get("backpressure_s"):
            out.verdict.problems.append("the throttled sink never held the pipeline back")
        return out


def scenario_scale_out(broker: Broker, events: int, rate: float, seed: int = 16) -> Outcome:
    """Three instances over six partitions, added and removed (SIGTERM, SIGKILL) during the run."""
    partitions = 6
    began = time.monotonic()
    with scenario_topic(broker, "scale", partitions) as (config, workdir):
        records = chaos_stream(events, seed=seed, bursts=max(20, events // 5_000))
        feeder = Feeder(broker.bootstrap, config.kafka.input_topic, records, rate)
        a, b, c = (Instance(config, workdir, str(i)) for i in range(3))
        a.start()
        feeder.start()
        feed_s = len(records) / rate
        step = feed_s / 7
        plan: list[tuple[str, Callable[[], Any]]] = [
            ("add b", b.start),
            ("add c", c.start),
            ("remove b (SIGTERM)", b.stop),
            ("remove c (SIGKILL)", c.kill9),
            ("add b", b.start),
            ("add c", c.start),
        ]
        instances = [a, b, c]

        def restores() -> int:
            return sum(i.log.read_text().count("restored partitions") for i in instances if i.log.exists())

        for what, action in plan:
            time.sleep(step)
            before = restores()
            action()
            # each change moves partitions before the next one: a start slower than a step (a
            # busy machine) would otherwise fold two changes into one rebalance, or kill an
            # instance before it joined
            deadline = time.monotonic() + 60
            while restores() == before and time.monotonic() < deadline:
                time.sleep(0.1)
            log(f"scale_out: {what} ({feeder.sent}/{len(records)} fed, {restores() - before} restores)")
        feeder.join()
        if feeder.error:
            raise feeder.error
        out = finish("scale_out", config, partitions, instances, began, len(plan), {})
        out.extra["restores"] = restores()
        return out


# -- throughput by instance count, restore time, bytes per key ----------------------------------


def preload(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for key, value in records:
        while True:
            try:
                p.produce(topic, key=str(key).encode(), value=value)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(120) == 0


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of these processes and their children so far."""
    total = 0.0
    for pid in pids:
        with suppress(psutil.Error):
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
    return total


def events_per_s_by_instances(
    broker: Broker, events: int, counts: tuple[int, ...] = (1, 2, 3), cpu: dict[str, Any] | None = None
) -> dict[str, float]:
    """Instances of one group over a preloaded six-partition topic; events/s from the group's
    committed offsets, from its first commit to the whole input. ``cpu`` gets, per count, the
    CPU seconds the instances and the broker spent over the same span, and the events per CPU
    second of the instances (per-core efficiency: the cores are shared, the CPU time is not)."""
    partitions = 6
    topic = f"chaos-scale-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, partitions)
    records = stream_with_bursts(events, seed=21, bursts=50)
    preload(broker.bootstrap, topic, records)
    result: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix="chaos-throughput-"))
    configs = []
    try:
        for n in counts:
            group = f"{topic}-{n}"
            config = chaos_config(
                broker.bootstrap,
                topic,
                group_id=group,
                alerts_topic=f"{group}-alerts",
                dead_letter_topic=f"{group}-dlq",
                changelog_topic=f"{group}-changelog",
                consume_batch=5_000,
            )
            configs.append(config)
            (workdir / f"{n}").mkdir()
            instances = [Instance(config, workdir / f"{n}", str(i)) for i in range(n)]
            for inst in instances:
                inst.start()
            first: tuple[float, int] | None = None
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                done = sum(committed_offsets(config, partitions).values())
                now = time.monotonic()
                if done and first is None:
                    first = (now, done)
                    cpu_from = (cpu_seconds([i.pid for i in instances]), cpu_seconds([broker.pid()]))
                if done >= len(records):
                    break
                time.sleep(0.1)
            cpu_to = (cpu_seconds([i.pid for i in instances]), cpu_seconds([broker.pid()]))
            for inst in instances:
                inst.stop()
            assert first is not None
            result[str(n)] = round((len(records) - first[1]) / max(now - first[0], 1e-9))
            if cpu is not None:
                used = cpu_to[0] - cpu_from[0]
                cpu[str(n)] = {
                    "instances_cpu_s": round(used, 2),
                    "broker_cpu_s": round(cpu_to[1] - cpu_from[1], 2),
                    "wall_s": round(now - first[0], 2),
                    "events_per_instance_cpu_s": round((len(records) - first[1]) / max(used, 1e-9)),
                }
                log(f"CPU with {n} instance(s): {cpu[str(n)]}")
            log(f"throughput with {n} instance(s): {result[str(n)]:,.0f} events/s")
    finally:
        for config in configs:
            with suppress(Exception):
                delete_topics(broker.bootstrap, replace(config, kafka=replace(config.kafka, input_topic="-")))
        with suppress(Exception):
            for f in admin(broker.bootstrap).delete_topics([topic]).values():
                f.result()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def restore_time(broker: Broker, keys: int) -> dict[str, Any]:
    """A one-partition topic whose changelog holds ``keys`` keys of state (built in-process by the
    rule engine over ``keys`` distinct cards and written by the pipeline's own ChangelogWriter in
    one transaction, in a separate process); then ``fraudstream run`` is assigned that partition:
    its RunStats.restore_ms is how long the partition takes to become active."""
    topic = f"chaos-restore-{keys}-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 1)
    # the detector's state only: no duplicate detector, no view (its state needs a category column)
    config = chaos_config(broker.bootstrap, topic, dedup_horizon="0s", with_view=False)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-restore-"))
    try:
        gen = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "_state",
                "--config",
                str(write_toml(config, workdir / "gen.toml")),
                "--keys",
                str(keys),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=1_800,
        )
        made = json.loads(gen.stdout.strip().splitlines()[-1])
        inst = Instance(config, workdir, "0").start("--idle-exit", "1")
        assert inst.proc is not None
        inst.proc.wait(1_800)
        stats = inst.stats()
        if inst.proc.returncode != 0 or not stats:
            raise RuntimeError(f"the restoring instance failed: {inst.current_log()[-2000:]}")
        return {"restore_ms": round(stats["restore_ms"]), "restore_bytes": stats["restore_bytes"], **made}
    finally:
        with suppress(Exception):
            delete_topics(broker.bootstrap, config)
        shutil.rmtree(workdir, ignore_errors=True)


def make_state(config_path: str, keys: int) -> None:
    """(subprocess) ``keys`` distinct cards through partition 0's task (the configured
    processor, the default detector), its snapshot into the changelog."""
    from fraudstream.config import load_config
    from fraudstream.kafka.changelog import ChangelogWriter
    from fraudstream.kafka.topics import ensure_topics

    config = load_config(config_path, env={})
    ensure_topics(config)
    task = PartitionTask(0, processor_factory(config)(), config)
    t0 = 1_700_000_000_000
    chunk = 1 << 18
    for lo in range(0, keys, chunk):
        card = np.arange(lo, min(keys, lo + chunk), dtype=np.int64)
        cols = {
            "txn_id": card,
            "card_id": card,
            "terminal_id": card % 10_000,
            "event_time": t0 + card * 240_000 // max(keys, 1),  # in order: 4 min of traffic
            "amount": (card % 1000) / 10.0,
            "country": card % 30,
            "arrival_ms": np.zeros(len(card)),
        }
        task.processor.process(cols)
    snapshot = task.snapshot()
    task.changes()
    size_of = getattr(task.processor, "state_size", None)
    size = size_of() if callable(size_of) else {}
    del task
    k = config.kafka
    producer = Producer(
        {
            "bootstrap.servers": k.bootstrap_servers,
            "transactional.id": f"chaos-state-{uuid.uuid4().hex}",
            "transaction.timeout.ms": 600_000,
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    writer = ChangelogWriter(producer, k.changelog_topic)
    writer.write(0, lambda: snapshot, lambda: b"")
    producer.commit_transaction(600)
    print(json.dumps({"keys": keys, "state_bytes": size.get("bytes"), "snapshot_bytes": len(snapshot)}))


def bytes_per_key(keys: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "memory.py"), "--keys", str(keys)],
        check=True,
        capture_output=True,
        text=True,
        timeout=3_600,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- the instrumented runner (stall_in_commit, FRAUDSTREAM_CHAOS_TRACE) -------------------------


def traced_run(config_path: str, idle_exit: float | None, stall_after: float | None, trace: bool) -> int:
    """``fraudstream run`` from the outside of the pipeline, optionally

    - freezing its own process (SIGSTOP) at the first ``commit_transaction`` at least
      ``stall_after`` seconds after start, i.e. after ``send_offsets_to_transaction``: a stall at
      the worst moment, when the transaction holds offsets, outputs and changelog records;
    - tracing (``trace``): the committed offsets each restore starts from, every batch whose first
      offset is not the next one expected (a gap or a rewind), and the offsets of every commit.
    """
    import faulthandler
    import logging

    from fraudstream.config import load_config
    from fraudstream.kafka.pipeline import KafkaPipeline

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tlog = logging.getLogger("chaos.trace")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # where a hung instance hangs
    began = time.monotonic()

    class Traced(KafkaPipeline):
        expected: dict[int, int] = {}  # noqa: RUF012

        def _processed(self, partition: int, batch: Any, out: Any) -> None:
            if trace:
                first, last = int(batch.offsets[0]), int(batch.offsets[-1])
                exp = self.expected.get(partition)
                if partition not in self.tasks.tasks:
                    tlog.error(
                        "TRACE: offsets %d..%d of partition %d, which has no state", first, last, partition
                    )
                elif exp is not None and first != exp:
                    tlog.error(
                        "TRACE: partition %d: expected offset %d, got %d..%d", partition, exp, first, last
                    )
                self.expected[partition] = last + 1
            super()._processed(partition, batch, out)

        def _commit(self, overlap: bool = True) -> None:
            if trace:
                tlog.info("commit offsets %s", dict(sorted(self.tasks.positions.items())))
            super()._commit(overlap)

    pipeline = Traced(load_config(config_path))
    restore = pipeline.tasks._restore

    def traced_restore(partitions: list[int]) -> None:  # on assignment and after every rewind
        restore(partitions)
        if trace and partitions:
            topic = pipeline.config.kafka.input_topic
            tps = pipeline.consumer.committed([TopicPartition(topic, q) for q in partitions], timeout=30)
            Traced.expected.update({tp.partition: max(tp.offset, 0) for tp in tps})
            where = {q: Traced.expected[q] for q in partitions}
            tlog.info("restored %s: committed offsets %s", partitions, where)

    pipeline.tasks._restore = traced_restore  # type: ignore[method-assign]
    if stall_after is not None:
        inner = pipeline.transactions.producer

        class StallingProducer:
            stalled = False

            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def __len__(self) -> int:  # special methods bypass __getattr__
                return len(inner)

            def commit_transaction(self, *args: Any) -> Any:
                if self.stalled or time.monotonic() - began < stall_after:
                    return inner.commit_transaction(*args)
                self.stalled = True
                print("zombie: offsets sent; freezing before commit_transaction", flush=True)
                os.kill(os.getpid(), signal.SIGSTOP)
                print("zombie: resumed; committing the transaction", flush=True)
                result = inner.commit_transaction(*args)
                print("zombie: late commit accepted", flush=True)
                return result

        pipeline.transactions.producer = StallingProducer()  # type: ignore[assignment]
    pipeline.watchdog.handle_signals()
    pipeline.watchdog.start()
    try:
        stats = pipeline.run(idle_exit_s=idle_exit)
    except FencedError:
        if stall_after is None:
            raise  # a fenced instance that never stalled is a failure of the run
        # the zombie's end: the partitions' new owner fenced its transactional id
        # (kafka.fence_pending_after_ms) rather than wait for its transaction to time out
        print("zombie: fenced by the new owner; its late transaction rejected", flush=True)
        pipeline.watchdog.close()
        return 0
    pipeline.watchdog.close()
    print(json.dumps(stats.as_dict()), flush=True)
    return 0


# -- main ---------------------------------------------------------------------------------------

SCENARIOS = ("kill9", "broker_restart", "stall", "stall_in_commit", "slow_sink", "scale_out")


def table(outcomes: list[Outcome]) -> str:
    head = (
        f"{'scenario':<16} {'runs':>5} {'input':>8} {'alerts':>7} {'lost':>5} {'dup':>4} {'spur':>5} "
        f"{'dlq':>6} {'state':>6} {'crash':>6} {'secs':>6}  result"
    )
    rows = [head, "-" * len(head)]
    for o in outcomes:
        v = o.verdict
        rows.append(
            f"{o.name:<16} {o.runs:>5} {v.input:>8} {v.alerts:>7} {v.lost:>5} {v.duplicated:>4} "
            f"{v.spurious:>5} {v.dead_lettered:>6} {v.state_mismatch:>6} {len(o.crashes):>6} "
            f"{o.seconds:>6.0f}  {'ok' if o.ok else 'FAILED'}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_run", "_state"):  # the subprocesses of this script
        sub = argparse.ArgumentParser()
        sub.add_argument("--config", required=True)
        sub.add_argument("--stall-after", type=float, default=None)
        sub.add_argument("--trace", action="store_true")
        sub.add_argument("--idle-exit", type=float, default=None)
        sub.add_argument("--keys", type=int, default=0)
        a = sub.parse_args(argv[1:])
        if argv[0] == "_state":
            make_state(a.config, a.keys)
            return 0
        return traced_run(a.config, a.idle_exit, a.stall_after, a.trace)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (development)")
    ap.add_argument(
        "--only",
        default=",".join(SCENARIOS) + ",throughput,restore,memory",
        help="comma-separated parts to run",
    )
    ap.add_argument("--kills", type=int, default=None, help="kill -9s (default 50; --quick: 6)")
    ap.add_argument(
        "--private-broker",
        type=int,
        default=None,
        metavar="PORT",
        help="start a throwaway broker on PORT instead of using the project's",
    )
    ap.add_argument(
        "--standby",
        type=int,
        default=0,
        metavar="N",
        help="kafka.standby_partitions of every instance (standby replicas; default 0, off)",
    )
    ap.add_argument(
        "--instances", default="1,2,3", help="comma-separated group sizes for events_per_s_by_instances"
    )
    ap.add_argument(
        "--throughput-events", type=int, default=None, help="input of each throughput run (3M; --quick: 100k)"
    )
    ap.add_argument("--restore-keys", default=None, help="comma-separated key counts for restore_ms")
    ap.add_argument("--memory-keys", type=int, default=None, help="distinct keys for bytes_per_key")
    args = ap.parse_args(argv)
    SCENARIO_KAFKA["standby_partitions"] = args.standby
    parts = set(args.only.split(","))
    quick = args.quick
    kills = args.kills if args.kills is not None else (6 if quick else 50)
    restore_keys = (
        [int(x) for x in args.restore_keys.split(",")]
        if args.restore_keys
        else ([10_000, 100_000] if quick else [100_000, 1_000_000, 10_000_000])
    )
    memory_keys = args.memory_keys or (1_000_000 if quick else 10_000_000)

    broker = Broker.start(args.private_broker)
    log(f"broker at {broker.bootstrap} (pid {broker.pid()}, state {broker.state_dir})")
    outcomes: list[Outcome] = []
    result: dict[str, Any] = {"scenarios": {}, "standby_partitions": args.standby}
    began = time.monotonic()
    try:
        runs: list[tuple[str, Callable[[], Outcome]]] = [
            ("kill9", lambda: scenario_kill9(broker, kills, 20_000 if quick else 200_000, 2_000.0)),
            (
                "broker_restart",
                lambda: scenario_broker_restart(
                    broker, 1 if quick else 2, 15_000 if quick else 50_000, 1_500.0
                ),
            ),
            (
                "stall",
                lambda: scenario_stall(broker, 1 if quick else 3, 15_000 if quick else 50_000, 1_500.0),
            ),
            (
                "stall_in_commit",
                lambda: scenario_stall_in_commit(broker, 15_000 if quick else 40_000, 1_500.0),
            ),
            (
                "slow_sink",
                lambda: scenario_slow_sink(
                    broker,
                    20_000 if quick else 100_000,
                    30_000 if quick else 100_000,
                    10.0 if quick else 30.0,
                ),
            ),
            ("scale_out", lambda: scenario_scale_out(broker, 20_000 if quick else 60_000, 2_000.0)),
        ]
        for name, run in runs:
            if name not in parts:
                continue
            log(f"scenario {name}")
            try:
                outcomes.append(run())
            except Exception as exc:  # one scenario's failure must not hide the others' figures
                log(f"{name}: ERROR {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                v = Verdict(problems=[f"{type(exc).__name__}: {exc}"])
                outcomes.append(Outcome(name, 0, v, 0.0))
            finally:
                broker.ensure_up()
            result["scenarios"][name] = outcomes[-1].as_json()
        if "restore" in parts:
            result["restore_ms"] = {}
            result["restore_detail"] = {}
            for n in restore_keys:
                need = n * 1_300  # engine, snapshot and its copies in the generating process
                if psutil.virtual_memory().available < need:
                    log(f"restore {n} keys: skipped, needs about {need >> 30} GB of free memory")
                    result["restore_ms"][str(n)] = None
                    continue
                r = restore_time(broker, n)
                log(f"restore {n:,} keys: {r}")
                result["restore_ms"][str(n)] = r["restore_ms"]
                result["restore_detail"][str(n)] = r
        if "throughput" in parts:
            result["cpu_by_instances"] = {}
            result["events_per_s_by_instances"] = events_per_s_by_instances(
                broker,
                args.throughput_events or (100_000 if quick else 3_000_000),
                tuple(int(n) for n in args.instances.split(",")),
                result["cpu_by_instances"],
            )
        if "memory" in parts:
            mem = bytes_per_key(memory_keys)
            result["bytes_per_key"] = mem["bytes_per_key"]
            result["memory"] = mem
    finally:
        broker.close()
    print(table(outcomes))
    print(f"total {time.monotonic() - began:.0f} s; broker {broker.bootstrap}")
    print(json.dumps(result))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
