"""Apache Flink through PyFlink: the Flink SQL HOP query with a WATERMARK definition.

Local mini-cluster (started by the first job), streaming mode, parallelism 1, session time zone
UTC. Source: the filesystem connector reading the CSV (Flink's own CSV format, in the JVM).
Sink: the filesystem connector writing CSV part files (committed when the bounded job ends;
checkpointing is enabled with a long interval only so that the final checkpoint commits them).

startup_s: Python imports, the JVM gateway and the TableEnvironment (before the job is
submitted). processing_s: job submission to job end, which includes the mini-cluster start on
the first job; ``extra.net_runtime_s`` is Flink's own job runtime (JobExecutionResult).
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DISORDER_MS, MIN_COUNT, MIN_COUNTRIES, SIZE_MS, SLIDE_MS, Clock, parse_args, write_result


def main() -> None:
    args = parse_args(__doc__ or "")
    from importlib.metadata import version

    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.local-time-zone", "UTC")
    conf.set("execution.checkpointing.interval", "1 h")  # only the final checkpoint: commits the sink files
    flink_version = version("apache-flink")

    out_dir = tempfile.mkdtemp(prefix="flink-alerts-")
    data = os.path.abspath(args.data)
    env.execute_sql(
        f"""
        CREATE TABLE tx (
            card BIGINT,
            ts_ms BIGINT,
            amount DOUBLE,
            country BIGINT,
            ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
            WATERMARK FOR ts AS ts - INTERVAL '{DISORDER_MS / 1000:.3f}' SECOND
        ) WITH (
            'connector' = 'filesystem',
            'path' = 'file://{data}',
            'format' = 'csv'
        )"""
    )
    env.execute_sql(
        f"""
        CREATE TABLE alerts (
            card BIGINT,
            window_start BIGINT,
            window_end BIGINT,
            n BIGINT,
            countries BIGINT,
            total DOUBLE
        ) WITH (
            'connector' = 'filesystem',
            'path' = 'file://{out_dir}',
            'format' = 'csv'
        )"""
    )
    # window_start/window_end are TIMESTAMP(3) in the session time zone (UTC): back to epoch ms.
    query = f"""
        INSERT INTO alerts
        SELECT card,
               UNIX_TIMESTAMP(CAST(window_start AS STRING)) * 1000 AS window_start,
               UNIX_TIMESTAMP(CAST(window_end AS STRING)) * 1000 AS window_end,
               COUNT(*) AS n,
               COUNT(DISTINCT country) AS countries,
               SUM(amount) AS total
        FROM TABLE(HOP(TABLE tx, DESCRIPTOR(ts),
                       INTERVAL '{SLIDE_MS // 60_000}' MINUTE, INTERVAL '{SIZE_MS // 60_000}' MINUTE))
        GROUP BY card, window_start, window_end
        HAVING COUNT(DISTINCT country) >= {MIN_COUNTRIES} AND COUNT(*) >= {MIN_COUNT}
    """
    clock = Clock()
    clock.start()
    result = env.execute_sql(query)
    job = result.get_job_client().get_job_execution_result().result()
    net_runtime_s = job.get_net_runtime() / 1000.0
    # Gather the committed part files into the alerts file (part of the work: the alerts exist).
    alerts = 0
    with open(args.alerts, "w") as out:
        for part in sorted(glob.glob(os.path.join(out_dir, "**", "part-*"), recursive=True)):
            with open(part) as f:
                for line in f:
                    out.write(line)
                    alerts += 1
    elapsed = clock.stop()
    hidden = glob.glob(os.path.join(out_dir, "**", ".part-*"), recursive=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    with open(args.data, "rb") as f:
        events = sum(1 for _ in f)
    write_result(
        args,
        version=flink_version,
        events=events,
        processing_started=clock.started_wall,
        processing_s=elapsed,
        alerts=alerts,
        net_runtime_s=net_runtime_s,
        uncommitted_part_files=len(hidden),
        note="Flink SQL HOP TVF, WATERMARK ts - 5 s, parallelism 1, local mini-cluster",
    )


if __name__ == "__main__":
    main()
