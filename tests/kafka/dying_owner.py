"""An instance that dies with a transaction open: ``python dying_owner.py TRIGGER --config CONFIG``
(also ``benches/failover.py --kill-in-transaction``'s owner).

It runs the pipeline as ``fraudstream run`` does and, at its first commit with changelog records
once the file ``TRIGGER`` exists, sends the offsets into the transaction, waits for the
transaction's records (alerts, changelog) to be on the broker, and kills itself with SIGKILL
before committing: the changelog records and the offsets are written and pending, as when an
owner under load is killed mid-commit.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from fraudstream.config import load_config
from fraudstream.kafka.changelog import ChangelogWriter
from fraudstream.kafka.pipeline import KafkaPipeline
from fraudstream.kafka.transactions import TransactionalProducer

KILLED_MID_COMMIT = "killing myself mid-commit"


def main(config_path: str, trigger: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commit, write = TransactionalProducer.commit_with, ChangelogWriter.write
    wrote = [False]

    def writing(self: ChangelogWriter, *args: Any) -> None:
        wrote[0] = True
        write(self, *args)

    # (the exactly-once commit, on the loop's thread or on the commit thread)
    def dying_commit(self: TransactionalProducer, offsets: Any, group_metadata: Any) -> None:
        if offsets and wrote[0] and trigger.exists():  # changelog records in the transaction
            self.begin()
            self.producer.send_offsets_to_transaction(offsets, group_metadata, 30)
            assert self.producer.flush(30) == 0
            logging.getLogger("dying_owner").warning("%s (offsets %s)", KILLED_MID_COMMIT, offsets)
            os.kill(os.getpid(), signal.SIGKILL)
        commit(self, offsets, group_metadata)
        wrote[0] = False

    TransactionalProducer.commit_with = dying_commit  # type: ignore[method-assign]
    ChangelogWriter.write = writing  # type: ignore[method-assign]
    KafkaPipeline(load_config(config_path)).run()


if __name__ == "__main__":
    trigger_path, option, config = sys.argv[1:4]
    assert option == "--config", sys.argv
    main(config, Path(trigger_path))
