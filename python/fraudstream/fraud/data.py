"""Handbook-format transaction files.

Columns: ``TRANSACTION_ID`` (int64), ``TX_TIME_MS`` (int64 epoch ms, UTC), ``CUSTOMER_ID``,
``TERMINAL_ID`` (int64), ``TX_AMOUNT`` (float64), ``TX_FRAUD`` (0/1); others are kept. The
public dataset (``../shared/data/handbook_transactions.parquet`` from the repository root,
described in ``../shared/data/README.md``) is the simulated data of *Reproducible Machine
Learning for Credit Card Fraud Detection - Practical Handbook* (Le Borgne, Siblini,
Lebichot, Bontempi).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.errors import ConfigError

REQUIRED = ("TRANSACTION_ID", "TX_TIME_MS", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD")
DATA_FILE = "handbook_transactions.parquet"


def default_data_path(start: Path | None = None) -> Path:
    """``../shared/data/handbook_transactions.parquet`` relative to the repository root (the
    first parent of ``start`` or the working directory holding ``pyproject.toml``)."""
    here = (start or Path.cwd()).resolve()
    for root in (here, *here.parents):
        if (root / "pyproject.toml").exists():
            return root.parent / "shared" / "data" / DATA_FILE
    return here.parent / "shared" / "data" / DATA_FILE


class DataNotFoundError(ConfigError, FileNotFoundError):
    """The transaction file does not exist."""


def load_transactions(path: str | Path) -> dict[str, np.ndarray[Any, Any]]:
    """Reads a handbook-format parquet file into numpy columns (needs pyarrow)."""
    p = Path(path)
    if not p.exists():
        raise DataNotFoundError(
            f"transaction file not found: {p} (the handbook dataset lives in ../shared/data, "
            "see ../shared/data/README.md)"
        )
    import pyarrow.parquet as pq

    table = pq.read_table(p)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ConfigError(f"{p}: missing columns {missing}; expected the handbook format {list(REQUIRED)}")
    return {name: table.column(name).to_numpy() for name in table.column_names}
