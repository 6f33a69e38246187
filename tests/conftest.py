"""Fixtures for tests against the project's real Redis server (the online feature store).

`redis_url`: the shared server `scripts/redis up` starts (scripts/test does, like the Kafka
broker); a missing server fails the tests, it does not skip them. `private_redis`: a server of
the test's own, started by the same script on a free port with its own state dir, that the
test may stop, pause and start again without disturbing any other test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_URL_ENV = "FRAUDSTREAM_REDIS_URL"
"""The shared server's URL (scripts/test exports it)."""
DEFAULT_REDIS_URL = "redis://127.0.0.1:16379/0"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "redis"


def _ping(url: str) -> str | None:
    """None when the server answers PING, else why not."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
        return None
    except redis.RedisError as exc:
        return str(exc)
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
    problem = _ping(url)
    if problem is not None:
        pytest.fail(
            f"no Redis server answers at {url} ({problem}). Start the project's server with "
            f"`scripts/redis up` (or point {REDIS_URL_ENV} at a running one).",
            pytrace=False,
        )
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test only on the shared server (``test:<random>:card:``); its keys
    are removed afterwards."""
    import redis

    p = f"test:{uuid.uuid4().hex[:12]}:card:"
    yield p
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{p}*", count=1_000))
    if keys:
        client.delete(*keys)
    client.close()


class PrivateRedis:
    """A Redis server of one test, driven through `scripts/redis` (real process, real port)."""

    def __init__(self, state_dir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.env = {
            **os.environ,
            "FRAUDSTREAM_REDIS_PORT": str(self.port),
            "FRAUDSTREAM_REDIS_DIR": str(state_dir),
        }
        self.env.pop(REDIS_URL_ENV, None)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _script(self, *args: str) -> str:
        done = subprocess.run(
            [str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"scripts/redis {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout.strip()

    def up(self) -> None:
        assert self._script("up") == self.url

    def down(self) -> None:
        """Stops the server (TERM) and removes its state: connections are refused from now on."""
        self._script("down")

    def pid(self) -> int:
        return int(self._script("pid"))

    def pause(self) -> None:
        """Freezes the server (SIGSTOP): connections open, nothing answers (a hung server)."""
        os.kill(self.pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid(), signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.up()
    try:
        yield server
    finally:
        server.down()
