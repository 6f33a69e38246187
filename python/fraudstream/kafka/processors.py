"""The processor ``fraudstream run`` puts on each input partition, from the ``[detector]``
section: the fraud detector (default), the single ``[rule]`` velocity rule, or a user's
factory (``"package.module:function"``, called with the :class:`~fraudstream.config.Config`).

Every input partition gets its own processor (a card's transactions live in one partition),
built by :func:`processor_factory`'s result once per partition. With ``[store] url`` set, each
is wrapped in a :class:`~fraudstream.store.StoreEnrichment` (one feature store, its connection,
cache and breaker, shared by the partitions) and the detector reads the store's features.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.config import Config, store_features
from fraudstream.errors import ConfigError
from fraudstream.kafka.task import make_duplicate_filter
from fraudstream.processor import Processor, WindowProcessor
from fraudstream.store import with_store
from fraudstream.views import with_view
from fraudstream.windows import WindowedAggregation, hopping, to_millis


def make_rule_engine(config: Config) -> WindowedAggregation:
    """The window engine of the ``[rule]`` section: HOP windows per card, early firing."""
    rule = config.rule
    return WindowedAggregation(
        key="card_id",
        time="event_time",
        window=hopping(rule.size, rule.slide),
        aggregations={"n": "count", "countries": ("count_distinct", "country"), "total": ("sum", "amount")},
        out_of_orderness=rule.out_of_orderness,
        allowed_lateness=rule.allowed_lateness,
        early_fire=rule.alert_when,
    )


def velocity_processor(config: Config) -> WindowProcessor:
    """The ``[rule]`` window rule as a processor: an alert when its predicate first holds."""
    return WindowProcessor(
        make_rule_engine(config),
        alert_rule="velocity",
        reason="{rule}: {n} transactions in {countries} countries within the window (total {total:.2f})",
        cooldown_ms=to_millis(config.detector.cooldown, "detector.cooldown"),
        idle_lag_ms=to_millis(config.rule.out_of_orderness, "rule.out_of_orderness"),
        txn_id="txn_id",
    )


Lookup = Callable[[np.ndarray[Any, Any]], Mapping[str, np.ndarray[Any, Any]]]
"""A table's lookup (:meth:`fraudstream.kafka.table_source.KafkaTable.lookup`)."""


def detector_processor(config: Config, lookups: Mapping[str, Lookup] | None = None) -> Processor:
    """The fraud detector with the ``[detector]`` section's rules, model and cool-down; with
    ``detector.profiles_table``, behind the profile lookup (:mod:`fraudstream.fraud.profiles`)
    in that table (``lookups``, by table name; none: an empty table)."""
    from fraudstream.fraud.detector import FraudDetector
    from fraudstream.fraud.model import Model, default_model, profiles_model
    from fraudstream.fraud.profiles import ProfileEnrichment
    from fraudstream.fraud.rules import RuleSet, default_rules
    from fraudstream.kafka.table_source import empty_lookup

    d = config.detector
    rules = default_rules()
    if d.rules_file:
        rules = RuleSet.from_toml(_read(d.rules_file, "detector.rules_file")).rules
    if d.model_file.lower() == "none":
        model = None
    elif d.model_file:
        _read(d.model_file, "detector.model_file")
        model = Model.load(d.model_file)
    else:
        model = profiles_model() if d.profiles_table else default_model()
    detector = FraudDetector(
        rules=rules,
        model=model,
        model_threshold=None if d.threshold < 0 else d.threshold,
        cooldown=d.cooldown,
        out_of_orderness=config.rule.out_of_orderness,
        extra_features=_extra_features(config),
        max_cards=d.max_cards or None,
    )
    if not d.profiles_table:
        return detector
    table = config.tables[d.profiles_table]
    lookup = (lookups or {}).get(d.profiles_table) or empty_lookup(table.columns)
    return ProfileEnrichment(detector, lookup, key=table.key)


def _extra_features(config: Config) -> tuple[str, ...]:
    """The batch columns the detector reads as features: the profile features with
    ``detector.profiles_table``, the ``[store]`` features with ``store.url``."""
    from fraudstream.fraud.profiles import PROFILE_FEATURES

    profiles = PROFILE_FEATURES if config.detector.profiles_table else ()
    store = tuple(store_features(config.store)) if config.store.url else ()
    clash = sorted(set(profiles) & set(store))
    if clash:
        raise ConfigError(f"store.features {clash} are also profile features (detector.profiles_table)")
    return (*profiles, *store)


def _read(path: str, key: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None


def processor_factory(config: Config, lookups: Mapping[str, Lookup] | None = None) -> Callable[[], Processor]:
    """A function that builds one partition's processor, checked once now (a bad rules file,
    model or factory fails at start, not at the first assignment). ``lookups``: the tables'
    lookups by name (:meth:`fraudstream.kafka.table_source.KafkaTables.lookups`)."""
    kind = config.detector.kind
    factory: Callable[[], Processor]
    if kind == "detector":
        factory = lambda: detector_processor(config, lookups)  # noqa: E731
    elif kind == "velocity":
        factory = lambda: velocity_processor(config)  # noqa: E731
    else:
        module_name, _, attr = kind.partition(":")
        try:
            user = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"detector.kind: cannot load {kind!r}: {exc}") from None
        factory = lambda: user(config)  # noqa: E731
    factory = with_store(config, factory)  # the [store] features added before the processor
    try:
        probe = factory()
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a user's factory, or a setting the processor refuses
        raise ConfigError(
            f"detector.kind {kind!r} could not build a processor: {type(exc).__name__}: {str(exc)[:500]}"
        ) from None
    missing = [
        m
        for m in ("process", "advance", "flush", "snapshot", "changes", "restore", "apply_changes")
        if not callable(getattr(probe, m, None))
    ]
    if missing:
        raise ConfigError(f"detector.kind {kind!r} builds {type(probe).__name__}, which lacks {missing}")
    horizon = config.decode.dedup_horizon
    if to_millis(horizon, "decode.dedup_horizon") > 0:  # built per partition at assignment: check now
        try:
            make_duplicate_filter(horizon, config.rule.out_of_orderness, config.decode.dedup_max_keys)
        except ConfigError as exc:
            raise ConfigError(f"decode.dedup_horizon {horizon!r}: {exc}") from None
    return with_view(config, factory)  # the [view] engine beside the processor, when set


__all__ = ["detector_processor", "make_rule_engine", "processor_factory", "velocity_processor"]
