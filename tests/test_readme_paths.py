"""The README's paths exist: every file or folder of the repository it names (in prose, in
commands, in links), and the core modules its layout line lists under ``rust/src/``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TOP = ("benches", "docs", "examples", "python", "rust", "scripts", "tests")


def named_paths() -> set[str]:
    top = "|".join(TOP)
    found = re.findall(rf"(?<![\w./-])((?:{top})/[\w./-]*)", README)
    return {p.rstrip(".,;:") for p in found if "*" not in p}


def test_every_path_the_readme_names_exists() -> None:
    paths = named_paths()
    assert "python/fraudstream/kafka/schema.py" in paths and "examples/fraudstream.toml" in paths
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


def test_the_layout_line_names_core_modules_that_exist() -> None:
    layout = re.search(r"`rust/src/` core \(([^)]*)\)", README)
    assert layout is not None
    for name in re.findall(r"`([^`]+)`", layout.group(1)):
        assert (ROOT / "rust" / "src" / name).exists(), name


def test_the_diagram_puts_pyo3_in_the_bindings_only() -> None:
    diagram = README.split("## Architecture", 1)[1].split("```", 2)[1]
    assert "bindings (PyO3)" in diagram and "rust/src/python/" in diagram
    assert "Rust core (pure Rust, no PyO3)" in diagram


def test_the_production_configuration_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fraudstream.config import load_config

    section = README.split("### Production", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, flags=re.S)
    assert block is not None
    path = tmp_path / "production.toml"
    path.write_text(block.group(1))
    monkeypatch.setenv("KAFKA_PASSWORD", "secret")  # the file reads the password from it
    config = load_config(path, env={})
    k = config.kafka
    assert (k.replication_factor, k.min_insync_replicas) == (3, 2)
    assert len(k.bootstrap_servers.split(",")) == 3
    assert k.client["security.protocol"] == "SASL_SSL"
