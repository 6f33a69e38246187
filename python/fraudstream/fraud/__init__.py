"""Real-time fraud scoring on top of the engine: streaming features, rules and models.

- :mod:`fraudstream.fraud.features`: per-card and per-terminal rolling features computed by
  the Rust core per transaction in event-time order (the handbook's 15 model inputs and more).
- :mod:`fraudstream.fraud.rules`: alert rules declared as data, fired by early firing of
  :class:`~fraudstream.WindowedAggregation`, one alert per card per incident; a processor.
- :mod:`fraudstream.fraud.model`: models trained with scikit-learn, exported as portable JSON
  and scored in batches by the Rust core.
- :mod:`fraudstream.fraud.detector`: rules, features and model scoring as one processor that
  scores every transaction on arrival (:class:`~fraudstream.fraud.detector.FraudDetector`).
- :mod:`fraudstream.fraud.evaluate`: the handbook's evaluation protocol and metrics.

Needs the ``fraud`` extra (pandas, scikit-learn, pyarrow) for training, evaluation and files;
features, rules and scoring need only numpy.
"""

from __future__ import annotations

from fraudstream.alerts import Alert
from fraudstream.fraud.features import (
    ADDED_FEATURES,
    HANDBOOK_FEATURES,
    StreamingFeatures,
    TransactionColumns,
    compute_features,
)
from fraudstream.fraud.model import Model
from fraudstream.fraud.rules import Rule, RuleSet, default_rules

__all__ = [
    "ADDED_FEATURES",
    "HANDBOOK_FEATURES",
    "Alert",
    "Model",
    "Rule",
    "RuleSet",
    "StreamingFeatures",
    "TransactionColumns",
    "compute_features",
    "default_rules",
]
