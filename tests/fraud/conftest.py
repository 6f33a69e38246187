"""Fixtures of the fraud tests: the public handbook dataset (by path) and its features.

The dataset lives outside the repository, in ``../shared/data`` (see its README). Where it is
absent the tests that need it skip with that reason, except under CI (``CI=true``), where the
file is always present: there a missing file fails, so a wrong path can never pass silently.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared/data/handbook_transactions.parquet"

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def handbook_path() -> Path:
    if not DATA.exists():
        reason = f"handbook dataset not found at {DATA} (see ../shared/data/README.md)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI=true the dataset must be present")
        pytest.skip(reason)
    return DATA


@pytest.fixture(scope="session")
def handbook_table(handbook_path: Path) -> dict[str, np.ndarray[Any, Any]]:
    from fraudstream.fraud.data import load_transactions

    return load_transactions(handbook_path)
