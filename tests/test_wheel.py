"""The portable wheel (``scripts/wheel``): manylinux2014, abi3, stripped, and a user installs it
into a fresh virtualenv with pip alone, no Rust anywhere on PATH, and runs ``fraudstream demo``.

The wheel is built by the test (``scripts/wheel``; incremental after the first build, in its
own target directory), or taken from ``FRAUDSTREAM_WHEEL`` when that names one.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel() -> Path:
    given = os.environ.get("FRAUDSTREAM_WHEEL")
    if given:
        return Path(given)
    if shutil.which("cargo") is None:
        pytest.skip("building the wheel needs a Rust toolchain (set FRAUDSTREAM_WHEEL to test a built one)")
    done = subprocess.run([str(ROOT / "scripts" / "wheel")], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    return ROOT / done.stdout.strip().splitlines()[-1]


def elf_sections(data: bytes) -> list[str]:
    """Section names of a 64-bit little-endian ELF image."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = headers[shstrndx]
    names = data[strtab[4] : strtab[4] + strtab[5]]
    return [names[h[0] : names.index(b"\0", h[0])].decode() for h in headers]


def test_the_wheel_is_manylinux2014_abi3_and_stripped(wheel: Path) -> None:
    assert re.fullmatch(r"fraudstream-[\w.]+-cp311-abi3-manylinux[\w.]*2_17_x86_64[\w.]*\.whl", wheel.name), (
        wheel.name
    )
    with zipfile.ZipFile(wheel) as z:
        libs = [n for n in z.namelist() if n.endswith(".so")]
        assert libs == ["fraudstream/_core.abi3.so"], libs
        lib = z.read(libs[0])
        assert (
            "fraudstream/py.typed" in z.namelist() and "fraudstream/fraud/default_model.json" in z.namelist()
        )
    glibc = {tuple(int(x) for x in v.split(b".")) for v in re.findall(rb"GLIBC_(\d+\.\d+(?:\.\d+)?)", lib)}
    assert glibc and max(glibc) <= (2, 17), sorted(glibc)[-3:]
    sections = elf_sections(lib)
    assert ".symtab" not in sections and ".debug_info" not in sections, "stripped"


def test_a_fresh_virtualenv_installs_it_without_rust_and_runs_the_demo(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    # no Rust toolchain anywhere on PATH: pip could not build from source even if it tried
    path = [str(bin_dir)] + [
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any((Path(d) / tool).exists() for tool in ("cargo", "rustc", "rustup"))
    ]  # fmt: skip
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FRAUDSTREAM_", "CARGO", "RUSTUP", "VIRTUAL_ENV"))
    }
    env.update(
        PATH=os.pathsep.join(path), CARGO_HOME=str(tmp_path / "no-cargo"), RUSTUP_HOME=str(tmp_path / "none")
    )
    env.pop("PYTHONPATH", None)
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, "--only-binary=:all:", str(wheel)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    probe = subprocess.run(
        [str(bin_dir / "python"), "-c", "import fraudstream, sys; print(fraudstream.__file__)"],
        env=env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(env_dir), "imported from the new virtualenv"
    demo = subprocess.run(
        [str(bin_dir / "fraudstream"), "demo", "--no-progress", "--out", str(tmp_path / "demo")],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    assert (tmp_path / "demo" / "summary.json").exists()
    assert sys.executable  # the suite's own interpreter stays untouched
