"""Configuration: a TOML file, then ``FRAUDSTREAM_<SECTION>_<KEY>`` environment overrides,
validated at start with errors that name the key.

::

    [kafka]
    bootstrap_servers = "127.0.0.1:9092"
    input_topic = "transactions"
    group_id = "fraudstream"

    [kafka.client]               # passed to librdkafka as is (security.protocol, sasl.*, ssl.*)
    "security.protocol" = "SASL_SSL"
    "sasl.password" = "${env:KAFKA_PASSWORD}"    # or "${file:/run/secrets/kafka}"

    [rule]
    size = "5m"
    slide = "1m"
    out_of_orderness = "5s"
    alert_when = "countries >= 3 and n >= 5"

``FRAUDSTREAM_KAFKA_GROUP_ID=fraud-eu`` overrides ``[kafka] group_id``;
``FRAUDSTREAM_KAFKA_CLIENT='{"sasl.username": "u"}'`` sets ``[kafka.client]`` (a JSON object).
Secret settings (passwords, secrets, tokens: :func:`is_secret`) are never shown in errors or
logs, and can come from the environment or a file (:func:`client_settings`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from fraudstream.errors import ConfigError
from fraudstream.windows import to_millis

ENV_PREFIX = "FRAUDSTREAM_"
MAX_RECORD_BYTES = 500_000_000
"""Largest ``decode.max_record_bytes``: the producer's ``message.max.bytes`` is twice it, and
librdkafka accepts at most 10^9."""
MAX_EVENT_TIME_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the engine's latest event time."""
BOOTSTRAP_ENV = "FRAUDSTREAM_KAFKA_BOOTSTRAP_SERVERS"
"""The one variable naming the brokers for every command (``--bootstrap`` wins over it, it wins
over the configuration file); ``scripts/kafka up`` prints the line that exports it."""
SCRIPT_VARIABLES = frozenset(f"FRAUDSTREAM_KAFKA_{name}" for name in ("PORT", "DIR", "VERSION", "TIMEOUT"))
"""Variables of ``scripts/kafka``, not configuration keys: read without a warning."""
log = logging.getLogger(__name__)


ASSIGNMENT_STRATEGIES = ("cooperative-sticky", "range", "roundrobin")
"""``kafka.assignment_strategy`` values: the first is incremental, the others eager."""


@dataclass
class KafkaSection:
    """Topics, group and transaction settings of the Kafka pipeline."""

    bootstrap_servers: str = "127.0.0.1:9092"
    input_topic: str = "transactions"
    alerts_topic: str = "alerts"
    scores_topic: str = "transactions-scored"
    """One record per processed transaction (txn_id, card_id, score, decision); "" turns it off."""
    dead_letter_topic: str = "transactions-dlq"
    changelog_topic: str = "fraudstream-changelog"
    view_topic: str = ""
    """Compacted topic of window results (``fraudstream.views``): the rows of the processor's
    window engine, or of the ``[view]`` engine beside it; "" = no view is published."""
    group_id: str = "fraudstream"
    exactly_once: bool = True
    """False: at-least-once (no transactions; offsets committed after outputs are flushed)."""
    instance_id: str = "0"
    """Unique per running instance; the transactional id is ``<group_id>-<instance_id>``."""
    commit_interval_ms: int = 100
    commit_max_records: int = 50_000
    alert_commit_min_interval_ms: int = 10
    """After an alert, commit as soon as this long has passed since the previous commit."""
    commit_latency_budget_ms: int = 0
    """0: commit every ``commit_interval_ms``. > 0: the interval follows this budget for outputs
    (scores, views) to become visible: the budget less the recent commits' duration, at least
    ``commit_interval_ms`` (:mod:`fraudstream.kafka.cadence`). Alerts keep their own rule."""
    consume_batch: int = 5_000
    process_threads: int = 1
    """Threads that process the partitions of one consume call side by side: the Rust core
    releases the GIL, so with 2 or more the partitions' window, feature and scoring work runs
    in parallel while the loop sends the finished ones' records. Outputs and transactions are
    those of 1 (each partition is still processed in offset order by one thread at a time).
    Worth it with free cores beside the broker; a custom processor must then not share mutable
    Python state between partitions (the feature store's client is locked)."""
    overlap_commits: bool = True
    """A commit's round trips to the broker (exactly-once: sending the offsets, committing;
    at-least-once: waiting for the outputs' delivery) run on a thread of their own while the loop
    consumes and processes the next records, whose outputs are sent once it has landed
    (:mod:`fraudstream.kafka.pipeline`). The same transactions and outputs as ``false``, which
    commits on the loop's thread."""
    poll_timeout_ms: int = 10
    """Longest wait for a batch to fill: bounds the latency a quiet stream adds."""
    changelog_snapshot_min_bytes: int = 1 << 20
    """A partition's changelog gets a new full snapshot once the changes written since the last
    one exceed the last snapshot and this many bytes; older records are then deleted."""
    idle_timeout_ms: int = 30_000
    """A partition with no record for this long is advanced by the wall clock (its processor's
    ``advance``): its windows close and their state is freed. 0 turns idle ticks off."""
    session_timeout_ms: int = 10_000
    assignment_strategy: str = "cooperative-sticky"
    """``partition.assignment.strategy``: ``cooperative-sticky`` (incremental rebalancing: a
    member that joins or leaves moves only the partitions that must move, and the others keep
    processing), or an eager one, ``range`` or ``roundrobin`` (every rebalance revokes every
    partition of every member). All members of a group must use the same kind."""
    static_membership: bool = False
    """True: the consumer joins with ``group.instance.id = instance_id`` (static membership,
    KIP-345): an instance restarted within ``session_timeout_ms`` gets its partitions back
    without a rebalance of the others. It does not leave the group when it stops, so its
    partitions wait for the session timeout before another instance takes them over."""
    standby_partitions: int = 0
    """Standby replicas: how many input partitions this instance does not own it keeps a warm
    copy of, by tailing their changelog (:mod:`fraudstream.kafka.standby`); when one of them is
    assigned to it, only the changelog's tail since the copy is applied instead of a full
    restore. 0 = off. Each copy holds a partition's whole state in memory."""
    transaction_timeout_ms: int = 60_000
    fence_pending_after_ms: int = 500
    """A takeover that has waited this long for a previous owner's open transaction on a newly
    assigned partition (its offsets unstable, its changelog stopped at the last stable offset)
    fences that owner's transactional id: a producer with that id is initialised, which aborts
    the transaction at once, instead of waiting for the broker to abort it after
    ``transaction_timeout_ms`` (:mod:`fraudstream.kafka.fencing`). A previous owner that is alive
    committed before giving the partition up, so such a wait means it died or is a zombie (it
    stops with a fenced error on its next call). An owner that is no longer a member of the
    group (its session expired) is fenced at once, without this wait; the bound is for one still
    a member, or when the group's members cannot be told apart (a ``client.id`` set in
    ``[kafka.client]``). 0 turns fencing off."""
    stuck_call_timeout_ms: int = 90_000
    """A blocking client call (they have 30 s timeouts) still running after this long ends the
    process with exit code 75, for its supervisor to restart it (``fraudstream run`` only)."""
    shutdown_timeout_ms: int = 20_000
    """After SIGTERM/SIGINT, the time to finish the open transaction before exiting with 75."""
    replication_factor: int = 3
    """Replicas of every topic fraudstream creates (the outputs; the input topic of ``produce``).
    The default suits a cluster of three brokers or more; a single local broker needs 1."""
    min_insync_replicas: int = 2
    """``min.insync.replicas`` of the created topics: with ``acks=all`` (every producer here)
    a write succeeds once this many replicas have it; 1 for a single broker."""
    output_retention_ms: int = 7 * 24 * 3_600_000
    """``retention.ms`` of the alerts, scored-transactions and dead-letter topics (-1: forever).
    The changelog keeps its records until the pipeline deletes what a newer snapshot replaced."""
    client: dict[str, str] = field(default_factory=dict)
    """Extra librdkafka settings for every client (SASL/SSL pass through here)."""

    @classmethod
    def for_topic(cls, bootstrap_servers: str, topic: str, **settings: Any) -> KafkaSection:
        """A section for input ``topic`` whose alerts, dead-letter and changelog topics and
        group are named after it (``<topic>-alerts``, ``-dlq``, ``-changelog``, ``-group``):
        one pipeline per input topic, as tests and benchmarks run them."""
        return cls(
            bootstrap_servers=bootstrap_servers,
            input_topic=topic,
            alerts_topic=f"{topic}-alerts",
            scores_topic=f"{topic}-scored",
            dead_letter_topic=f"{topic}-dlq",
            changelog_topic=f"{topic}-changelog",
            group_id=f"{topic}-group",
            **settings,
        )


@dataclass
class RuleSection:
    """The windowed alert rule: HOP windows per card and the alert predicate."""

    size: str = "5m"
    slide: str = "1m"
    out_of_orderness: str = "5s"
    allowed_lateness: str = "0s"
    alert_when: str = "countries >= 3 and n >= 5"


@dataclass
class DetectorSection:
    """What ``fraudstream run`` runs on each input partition.

    ``kind``: ``"detector"`` (the fraud detector: the velocity rule, streaming features with the
    multi-horizon rule conditions as inputs, and the model), ``"velocity"`` (the single
    ``[rule]`` window rule), or ``"module:function"``, a factory that takes the
    :class:`Config` and returns a processor (``fraudstream.processor``).
    """

    kind: str = "detector"
    rules_file: str = ""
    """A RuleSet TOML file (``[[rules]]``); "" = the default rules."""
    model_file: str = ""
    """A model JSON file; "" = the model shipped in the package; "none" = rules only."""
    threshold: float = -1.0
    """Alert when the model's score reaches this; < 0 = the model's own threshold."""
    cooldown: str = "24h"
    """One alert per card per incident: alerts within this much event time of one are suppressed."""
    profiles_table: str = ""
    """The ``[tables.NAME]`` of customer profiles whose features the detector's model reads
    (:mod:`fraudstream.fraud.profiles`); "" = none. With it, the default model is the one
    trained with the profile features (``fraud/profiles_model.json``)."""
    max_cards: int = 1_000_000
    """At most this many live cards per partition (``kind = "detector"``; 0: unbounded). A
    card unseen while that many are live first evicts the card seen least recently: its
    features, rule windows and cool-down are dropped at that transaction (its later ones start
    afresh), counted in ``fraudstream_evicted_keys``. On by default so that no input can grow
    the state without bound (about 850 bytes per card with one transaction, so about 1 GB
    per partition at the cap); raise it when a partition legitimately sees more distinct
    cards within the detector's horizon (30 days with the default features)."""


@dataclass
class DecodeSection:
    """Limits for decoding input records; records outside them go to the dead-letter topic."""

    max_record_bytes: int = 1 << 20
    min_event_time_ms: int = 946_684_800_000  # 2000-01-01
    max_event_time_ms: int = 4_102_444_800_000  # 2100-01-01
    max_amount: float = 1e9
    dedup_horizon: str = "2m"
    """A transaction id seen again within this much event time of its previous occurrence is a
    duplicate: it goes to the dead-letter topic and is counted, never scored twice. On by
    default: a producer's retries of a record arrive within its delivery timeout (2 minutes by
    default in Kafka's clients). The state is one entry per transaction id of the last horizon,
    about 180 bytes each (2 minutes at 5,000 transactions/s: 600,000 ids, about 105 MB). "0s"
    turns duplicate detection off."""
    dedup_max_keys: int = 1_000_000
    """At most this many transaction ids held per partition by duplicate detection (about
    180 MB; 0: unbounded). Beyond it the id seen longest ago is forgotten first (a repeat of it
    is then not caught), counted in ``fraudstream_evicted_keys``: the state stays bounded
    whatever the rate of new ids."""
    max_future_ms: int = 300_000
    """An event whose time is more than this far ahead of its message's timestamp (or of the
    wall clock at arrival, when the message has none or one itself in the future) goes to the
    dead-letter topic as "event time in the future" and never moves a watermark. 0 turns the
    check off (then one far-future record makes every later record of its partition late)."""


TABLE_PLACEMENTS = ("global", "copartitioned")


@dataclass
class TableSection:
    """One ``[tables.NAME]``: a table read from a compacted topic of JSON records
    (:mod:`fraudstream.kafka.table_source`), joined to each transaction by a lookup.

    A record's message key is the row's key (an int64 as decimal text, as ``fraudstream
    produce`` keys transactions by card), its value a JSON object holding ``columns`` (numbers;
    a string is packed as the decoder packs country codes; null or absent: NaN) and the
    version time ``version_time`` (epoch ms); a null value deletes the row."""

    topic: str = ""
    placement: str = "global"
    """``global``: every instance reads all partitions of the topic (Kafka Streams'
    GlobalKTable); ``copartitioned``: table partition p goes with input partition p (the topic
    has as many partitions as the input and is keyed the same way)."""
    key: str = "card_id"
    """The input column joined on the row key."""
    columns: list[str] = field(default_factory=list)
    version_time: str = "updated_at"
    """The JSON field of the record's version time: of two versions of a row, the newer wins,
    whatever order they arrive in."""
    catch_up_timeout_ms: int = 300_000
    """Longest wait for the table to reach the end offsets read at start or assignment."""


def _default_view_aggregations() -> dict[str, str]:
    return {"n": "count", "total": "sum(amount)"}


@dataclass
class ViewSection:
    """A window engine run beside the processor, its rows published to ``kafka.view_topic``
    (``fraudstream.views``): per ``key`` and window, the ``aggregations``. FINAL rows when the
    watermark closes a window, UPDATE rows for events within ``allowed_lateness`` after that,
    EARLY rows on every change with ``early``."""

    key: str = ""
    """The decoded column to group by (``category``, ``country``, ``card_id``...); "" = no view
    engine (the processor's own window rows, if any, are still published)."""
    size: str = "1h"
    slide: str = ""
    """"" = tumbling windows of ``size``; a duration = hopping windows."""
    aggregations: dict[str, str] = field(default_factory=_default_view_aggregations)
    """Name -> ``"count"`` or ``"function(column)"`` (``sum``, ``min``, ``max``, ``mean``,
    ``count_distinct``, ``first``, ``last``)."""
    out_of_orderness: str = "5s"
    allowed_lateness: str = "0s"
    early: bool = False


@dataclass
class MetricsSection:
    """Prometheus endpoint (0 = off)."""

    port: int = 0
    host: str = "127.0.0.1"
    """Address the endpoint binds to (``0.0.0.0`` or ``::`` to be scraped from other hosts)."""


def _default_store_features() -> dict[str, str]:
    return {"avg_amount_90d": "0", "txn_count_90d": "0", "chargebacks_1y": "0"}


@dataclass
class StoreSection:
    """The online feature store (:mod:`fraudstream.store`): per batch, each transaction's
    historical features read from a Redis-compatible server in one pipelined round trip, added
    as columns before the detector; "" ``url`` = off. When the server is down or slower than
    ``timeout_ms``, the rows get the declared defaults and are flagged ``degraded``."""

    url: str = ""
    """``redis://[:password@]host:port/db`` (``rediss://`` for TLS, ``unix://`` for a socket)."""
    key: str = "card_id"
    """The input column that keys the store (``card_id`` or ``customer_id``)."""
    key_prefix: str = "card:"
    """The Redis hash of key ``k`` is ``key_prefix`` + ``k``; its fields are the features."""
    features: dict[str, str] = field(default_factory=_default_store_features)
    """Feature name -> its default (a number), used for cards the store does not know and
    while it is unavailable."""
    timeout_ms: int = 50
    """The budget of one batch's round trip (connect and each read; no retries)."""
    cache_size: int = 100_000
    """Keys kept in the local cache (0 = none)."""
    cache_ttl_ms: int = 60_000
    """How long a cached key is served after it was read."""
    cooloff_ms: int = 5_000
    """After a failed round trip, batches skip the server this long (a circuit breaker)."""


@dataclass
class Config:
    """The whole configuration of ``fraudstream run``."""

    kafka: KafkaSection = field(default_factory=KafkaSection)
    rule: RuleSection = field(default_factory=RuleSection)
    detector: DetectorSection = field(default_factory=DetectorSection)
    decode: DecodeSection = field(default_factory=DecodeSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    tables: dict[str, TableSection] = field(default_factory=dict)
    """``[tables.NAME]`` sections, by name."""
    store: StoreSection = field(default_factory=StoreSection)
    view: ViewSection = field(default_factory=ViewSection)

    def validate(self) -> Config:
        """Checks values; raises :class:`ConfigError` naming the key."""
        k = self.kafka
        for name in (
            "bootstrap_servers",
            "input_topic",
            "alerts_topic",
            "dead_letter_topic",
            "changelog_topic",
            "group_id",
            "instance_id",
        ):
            if not getattr(k, name):
                raise ConfigError(f"kafka.{name} must not be empty")
        for name in (
            "commit_interval_ms",
            "commit_max_records",
            "consume_batch",
            "process_threads",
            "session_timeout_ms",
            "transaction_timeout_ms",
            "stuck_call_timeout_ms",
            "shutdown_timeout_ms",
        ):
            if getattr(k, name) <= 0:
                raise ConfigError(f"kafka.{name} must be > 0, got {getattr(k, name)}")
        if k.alert_commit_min_interval_ms < 0:
            raise ConfigError("kafka.alert_commit_min_interval_ms must be >= 0")
        if k.commit_latency_budget_ms < 0 or 0 < k.commit_latency_budget_ms < k.commit_interval_ms:
            raise ConfigError(
                "kafka.commit_latency_budget_ms must be 0 (a fixed interval) or at least "
                f"kafka.commit_interval_ms = {k.commit_interval_ms}, got {k.commit_latency_budget_ms}"
            )
        if k.assignment_strategy not in ASSIGNMENT_STRATEGIES:
            raise ConfigError(
                f"kafka.assignment_strategy must be one of {ASSIGNMENT_STRATEGIES}, "
                f"got {k.assignment_strategy!r}"
            )
        if k.idle_timeout_ms < 0:
            raise ConfigError("kafka.idle_timeout_ms must be >= 0 (0 turns idle ticks off)")
        if k.fence_pending_after_ms < 0:
            raise ConfigError(
                f"kafka.fence_pending_after_ms must be >= 0 (0 = off), got {k.fence_pending_after_ms}"
            )
        if k.standby_partitions < 0:
            raise ConfigError(f"kafka.standby_partitions must be >= 0 (0 = off), got {k.standby_partitions}")
        if k.replication_factor < 1:
            raise ConfigError(f"kafka.replication_factor must be >= 1, got {k.replication_factor}")
        if not 1 <= k.min_insync_replicas <= k.replication_factor:
            raise ConfigError(
                f"kafka.min_insync_replicas must be in [1, kafka.replication_factor = "
                f"{k.replication_factor}], got {k.min_insync_replicas}"
            )
        if k.output_retention_ms == 0 or k.output_retention_ms < -1:
            raise ConfigError(f"kafka.output_retention_ms must be > 0 or -1, got {k.output_retention_ms}")
        d = self.detector
        if d.kind not in ("detector", "velocity") and ":" not in d.kind:
            raise ConfigError(
                f"detector.kind must be 'detector', 'velocity' or 'module:function', got {d.kind!r}"
            )
        if d.threshold > 1.0:
            raise ConfigError(f"detector.threshold must be <= 1 (a probability), got {d.threshold}")
        if d.max_cards < 0:
            raise ConfigError(f"detector.max_cards must be >= 0 (0 = unbounded), got {d.max_cards}")
        try:
            if to_millis(d.cooldown, "detector.cooldown") < 0:
                raise ConfigError("detector.cooldown must be >= 0")
        except ConfigError as exc:
            raise ConfigError(f"detector.cooldown: {exc}") from None
        for name in ("size", "slide", "out_of_orderness", "allowed_lateness"):
            try:
                to_millis(getattr(self.rule, name), f"rule.{name}")
            except ConfigError as exc:
                raise ConfigError(f"rule.{name}: {exc}") from None
        try:
            if to_millis(self.decode.dedup_horizon, "decode.dedup_horizon") < 0:
                raise ConfigError("decode.dedup_horizon must be >= 0")
        except ConfigError as exc:
            raise ConfigError(f"decode.dedup_horizon: {exc}") from None
        dec = self.decode
        if not 0 < dec.max_record_bytes <= MAX_RECORD_BYTES:
            raise ConfigError(
                f"decode.max_record_bytes must be > 0 and at most {MAX_RECORD_BYTES}, "
                f"got {dec.max_record_bytes}"
            )
        if not 0 <= dec.min_event_time_ms <= dec.max_event_time_ms <= MAX_EVENT_TIME_MS:
            raise ConfigError(
                "decode.min_event_time_ms and max_event_time_ms must satisfy 0 <= min <= max <= "
                f"{MAX_EVENT_TIME_MS}, got {dec.min_event_time_ms} and {dec.max_event_time_ms}"
            )
        if not 0 < dec.max_amount < float("inf"):
            raise ConfigError(f"decode.max_amount must be finite and > 0, got {dec.max_amount}")
        if dec.dedup_max_keys < 0:
            raise ConfigError(f"decode.dedup_max_keys must be >= 0 (0 = unbounded), got {dec.dedup_max_keys}")
        if self.decode.max_future_ms < 0:
            raise ConfigError(f"decode.max_future_ms must be >= 0 (0 = off), got {self.decode.max_future_ms}")
        if not 0 <= self.metrics.port < 65_536:
            raise ConfigError(f"metrics.port must be in [0, 65535], got {self.metrics.port}")
        if not self.metrics.host:
            raise ConfigError("metrics.host must not be empty")
        client_settings(self.kafka.client)  # every secret reference resolves
        _validate_tables(self)
        from fraudstream.views import check_view  # the window engine's module imports this one

        check_view(self)
        store_features(self.store)
        return self


STORE_SCHEMES = ("redis://", "rediss://", "unix://")


def store_features(store: StoreSection) -> dict[str, float]:
    """The ``[store]`` section checked (:class:`ConfigError` naming the key); its features with
    their defaults as numbers."""
    if store.url and not store.url.startswith(STORE_SCHEMES):
        raise ConfigError(f"store.url must start with one of {', '.join(STORE_SCHEMES)}")
    if not store.key:
        raise ConfigError("store.key must not be empty")
    if not store.features:
        raise ConfigError("store.features must name one or more features")
    out = {}
    for name, default in store.features.items():
        try:
            value = float(default)
        except ValueError:
            value = float("nan")
        if not name or value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"store.features.{name}: the default must be a finite number, got {default!r}")
        out[name] = value
    if store.timeout_ms <= 0:
        raise ConfigError(f"store.timeout_ms must be > 0, got {store.timeout_ms}")
    for name in ("cache_size", "cache_ttl_ms", "cooloff_ms"):
        if getattr(store, name) < 0:
            raise ConfigError(f"store.{name} must be >= 0, got {getattr(store, name)}")
    return out


def _validate_tables(config: Config) -> None:
    for name, t in config.tables.items():
        where = f"tables.{name}"
        if not t.topic:
            raise ConfigError(f"{where}.topic must not be empty")
        if t.placement not in TABLE_PLACEMENTS:
            raise ConfigError(f"{where}.placement must be one of {TABLE_PLACEMENTS}, got {t.placement!r}")
        if not t.columns or len(set(t.columns)) != len(t.columns) or not all(t.columns):
            raise ConfigError(f"{where}.columns must name one or more distinct fields, got {t.columns}")
        if not t.key or not t.version_time:
            raise ConfigError(f"{where}.key and {where}.version_time must not be empty")
        if t.catch_up_timeout_ms <= 0:
            raise ConfigError(f"{where}.catch_up_timeout_ms must be > 0, got {t.catch_up_timeout_ms}")
    profiles = config.detector.profiles_table
    if profiles:
        if profiles not in config.tables:
            raise ConfigError(
                f"detector.profiles_table {profiles!r} names no [tables.NAME] section "
                f"(configured: {sorted(config.tables) or 'none'})"
            )
        from fraudstream.fraud.profiles import ProfileColumns

        missing = [c for c in ProfileColumns().names() if c not in config.tables[profiles].columns]
        if missing:
            raise ConfigError(f"tables.{profiles}.columns lacks {missing} (detector.profiles_table)")


T = TypeVar("T")


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    where = f"{section}.{key}"
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        return list(value)
    if isinstance(default, dict):
        if isinstance(value, str):  # from the environment: a JSON object
            try:
                value = json.loads(value)
            except ValueError:
                value = None
            if not isinstance(value, Mapping):  # the text is not shown: it may hold secrets
                raise ConfigError(f"{where} from the environment must be a JSON object of settings")
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table, got a {type(value).__name__}")
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if isinstance(default, int):
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be an integer, got {value!r}") from None
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def _section(cls: type[T], name: str, values: Mapping[str, Any]) -> T:
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key {name}.{unknown[0]}; known keys: {', '.join(sorted(known))}")
    obj = cls()
    for key, value in values.items():
        setattr(obj, key, _coerce(name, key, value, getattr(obj, key)))
    return obj


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Reads ``path`` (optional), applies environment overrides, then ``overrides`` (command-line
    options such as ``--bootstrap``: ``{"kafka": {"bootstrap_servers": ...}}``), validates."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"configuration file {p} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    sections = {f.name: f.type for f in fields(Config)}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]; known sections: {', '.join(sorted(sections))}")
    env = os.environ if env is None else env
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections:
            continue  # other FRAUDSTREAM_* variables (cache dirs, ...) are not configuration
        if section == "tables":
            log.warning("ignoring %s: [tables.NAME] sections are set in the configuration file", var)
            continue
        known = {f.name for f in fields(type(getattr(Config(), section)))}
        if key not in known:
            if var in SCRIPT_VARIABLES:  # scripts/kafka's own settings
                continue
            hint = f" (the brokers are named by {BOOTSTRAP_ENV})" if "BOOTSTRAP" in var else ""
            log.warning("ignoring %s: [%s] has no key %r%s", var, section, key, hint)
            continue
        data.setdefault(section, {})[key] = value
    for section, values in (overrides or {}).items():
        if section not in sections:
            raise ConfigError(f"unknown section [{section}]")
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    defaults = Config()
    built: dict[str, Any] = {
        name: _section(type(getattr(defaults, name)), name, data.get(name, {}))
        for name in sections
        if name != "tables"
    }
    built["tables"] = _tables(data.get("tables", {}))
    return Config(**built).validate()


def _tables(values: Any) -> dict[str, TableSection]:
    """The ``[tables.NAME]`` sections."""
    if not isinstance(values, Mapping):
        raise ConfigError("[tables] must hold [tables.NAME] sections")
    out = {}
    for name, section in values.items():
        if not isinstance(section, Mapping):
            raise ConfigError(f"tables.{name} must be a section ([tables.{name}]), got {section!r}")
        out[str(name)] = _section(TableSection, f"tables.{name}", section)
    return out


SECRET_MARKERS = ("password", "secret", "jaas", "token", ".pem", "oauthbearer.config", "credential")
"""A ``[kafka.client]`` setting whose name contains one of these holds a secret: it is never
shown (:func:`redacted`) and may come from the environment or a file."""
REDACTED = "<redacted>"
_REFERENCE = re.compile(r"^\$\{(env|file):(.+)\}$")


def is_secret(name: str) -> bool:
    return any(m in name.lower() for m in SECRET_MARKERS)


def client_settings(client: Mapping[str, str]) -> dict[str, str]:
    """``[kafka.client]`` with secret references resolved: a value ``${env:NAME}`` is the
    environment variable ``NAME``, ``${file:/path}`` the file's content (one trailing newline
    dropped), as Kafka's config providers write them. Errors name the setting and where its
    value was to come from, never the value."""
    out = {}
    for name, value in client.items():
        m = _REFERENCE.match(value)
        if m is None:
            out[name] = value
            continue
        source, ref = m.groups()
        if source == "env":
            if ref not in os.environ:
                raise ConfigError(f"kafka.client.{name}: environment variable {ref} is not set")
            out[name] = os.environ[ref]
        else:
            try:
                text = Path(ref).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                raise ConfigError(f"kafka.client.{name}: cannot read {ref}: {why}") from None
            out[name] = text[:-1] if text.endswith("\n") else text
    return out


def redacted(client: Mapping[str, str]) -> dict[str, str]:
    """``[kafka.client]`` as logs and errors may show it: secret settings replaced by
    ``<redacted>`` unless they are references (``${env:...}``, ``${file:...}``)."""
    return {k: v if not is_secret(k) or _REFERENCE.match(v) else REDACTED for k, v in client.items()}


def as_dict(config: Config) -> dict[str, Any]:
    """The configuration as plain data (for logs and ``--print-config``), secrets redacted."""
    d = dataclasses.asdict(config)
    d["kafka"]["client"] = redacted(config.kafka.client)
    d["store"]["url"] = re.sub(r"(//[^/@]*:)[^/@]*@", rf"\1{REDACTED}@", config.store.url)
    return d


def to_toml(config: Config) -> str:
    """The configuration as a TOML document that :func:`load_config` reads back equal (every
    key written out: a file that pins a run's whole configuration)."""
    lines: list[str] = []
    for section in fields(config):
        values = getattr(config, section.name)
        if section.name == "tables":
            for name, table in values.items():
                lines.append(f"[tables.{_toml_string(name)}]")
                lines.extend(f"{f.name} = {_toml_value(getattr(table, f.name))}" for f in fields(table))
            continue
        lines.append(f"[{section.name}]")
        tables = []
        for f in fields(values):
            v = getattr(values, f.name)
            if isinstance(v, dict):
                tables.append((f.name, v))
            else:
                lines.append(f"{f.name} = {_toml_value(v)}")
        for name, table in tables:  # after the section's plain keys, as TOML requires
            lines.append(f"[{section.name}.{name}]")
            lines.extend(f"{_toml_string(k)} = {_toml_string(str(v))}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_string(str(x)) for x in v) + "]"
    return _toml_string(str(v))


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as is
    (JSON's surrogate-pair escapes for characters beyond U+FFFF are not valid TOML)."""
    escaped = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else "\\" + c if c in '"\\' else c for c in text
    )
    return f'"{escaped}"'
