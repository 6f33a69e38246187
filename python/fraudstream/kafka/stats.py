"""The counters of one pipeline run (``fraudstream run`` prints them as its last line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

COMMITTED_COUNTS = (
    "consumed", "processed", "dead_lettered", "alerts", "scored", "suppressed", "duplicates", "future",
    "truncated", "skipped", "view_rows",
)  # fmt: skip
"""RunStats fields that count committed results: an abort rolls them back to the last commit."""


@dataclass
class RunStats:
    """Counters of one run. Record counts are those of committed transactions (an abort rolls
    them back; Prometheus counters, which count work done, do not); ``consumed == processed +
    dead_lettered`` holds, each counted where it happens."""

    consumed: int = 0
    processed: int = 0
    dead_lettered: int = 0
    alerts: int = 0
    scored: int = 0
    """Scored-transaction records published."""
    view_rows: int = 0
    """View records published (``kafka.view_topic``)."""
    suppressed: int = 0
    """Candidate alerts dropped by the cool-down (one alert per card per incident)."""
    idle_ticks: int = 0
    """Wall-clock advances of quiet partitions."""
    skipped: int = 0
    """Records returned by a consume call that ran a rebalance, for partitions no longer owned
    or already processed; they are processed once, by whoever owns the partition."""
    duplicates: int = 0
    """Records dropped as duplicates (they are also counted in ``dead_lettered``)."""
    future: int = 0
    """Records dead-lettered as event time in the future (also in ``dead_lettered``)."""
    truncated: int = 0
    """Dead letters cut to fit the dead-letter topic (flagged in their headers)."""
    commits: int = 0
    aborts: int = 0
    restores: int = 0
    rebalances: int = 0
    """Rebalances this instance took part in (assignments received, empty ones included)."""
    partitions_assigned: int = 0
    partitions_revoked: int = 0
    partitions_lost: int = 0
    """Partitions this instance was given, gave up after a commit, and lost (with cooperative
    rebalancing only the partitions that move are counted)."""
    restore_ms: float = 0.0
    """Time from an assignment (or a rewind) to its partitions' tasks being ready, summed."""
    restore_bytes: int = 0
    restore_records: int = 0
    """Changelog bytes and records read by restores: in full, or the tail after a standby copy."""
    standby_takeovers: int = 0
    """Partitions made active from a standby copy (``kafka.standby_partitions``)."""
    fencings: int = 0
    """Previous owners' transactional ids fenced at a takeover, their open transaction aborted
    (``kafka.fence_pending_after_ms``)."""
    renewed_after_fencing: int = 0
    """Times this instance was fenced by a takeover while alive (it had stalled past its
    session) and went on with a new producer, every partition back to its last commit."""
    commit_ms: list[float] = field(default_factory=list)
    backpressure_s: float = 0.0
    """Time spent waiting for a full producer queue (a slow broker holding the input back)."""
    first_input_at: float | None = None
    """Monotonic time of the first record consumed (start-up and group join excluded)."""
    last_commit_at: float | None = None

    @property
    def processing_seconds(self) -> float:
        """From the first record consumed to the last commit."""
        if self.first_input_at is None or self.last_commit_at is None:
            return 0.0
        return max(self.last_commit_at - self.first_input_at, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        d = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("commit_ms", "first_input_at", "last_commit_at")
        }
        d["processing_seconds"] = self.processing_seconds
        if self.commit_ms:
            d["commit_ms_p50"] = float(np.percentile(self.commit_ms, 50))
            d["commit_ms_p99"] = float(np.percentile(self.commit_ms, 99))
        return d


__all__ = ["COMMITTED_COUNTS", "RunStats"]
