"""A consumed Kafka message without a broker: what the pure partition task reads of one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeMessage:
    """``error()`` (always None), ``value()``, ``key()``, ``offset()``, ``partition()``, ``topic()``,
    ``timestamp()``."""

    _value: bytes | None
    _offset: int
    _key: bytes | None = b"k"
    _timestamp: int = 1_700_000_000_000
    _ts_type: int = 1  # CreateTime

    def error(self) -> None:
        return None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def offset(self) -> int:
        return self._offset

    def partition(self) -> int:
        return 0

    def topic(self) -> str:
        return "in"

    def timestamp(self) -> tuple[int, int]:
        return (self._ts_type, self._timestamp)
