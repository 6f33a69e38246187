"""Small models for tests whose outcome must be obvious from the input."""

from __future__ import annotations

from fraudstream.fraud.model import Model, ModelInput


def foreign_young_model() -> Model:
    """Alerts on a foreign transaction of an account younger than 30 days, nothing else."""
    return Model(
        kind="logistic_regression",
        inputs=[ModelInput("is_foreign"), ModelInput("account_age_days", "log1p")],
        mean=[0.0, 0.0],
        scale=[1.0, 1.0],
        params={"coef": [6.0, -2.0], "intercept": -1.0},
        threshold=0.5,
    )
