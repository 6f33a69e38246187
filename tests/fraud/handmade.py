"""Hand-made models for the detector's tests (no training, so their alerts are known)."""

from __future__ import annotations

from fraudstream.fraud.model import Model, ModelInput


def habit_model() -> Model:
    """Fires on amounts far above the card's usual (the spend sprees), and on huge amounts."""
    return Model(
        kind="logistic_regression",
        inputs=[ModelInput("CUSTOMER_ID_AMOUNT_RATIO", "log"), ModelInput("TX_AMOUNT", "log1p")],
        mean=[0.0, 0.0],
        scale=[1.0, 1.0],
        params={"coef": [2.0, 0.5], "intercept": -6.0},
        threshold=0.6,
    )
