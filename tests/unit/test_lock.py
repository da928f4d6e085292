"""The lock files: they pin everything pyproject.toml asks for, with hashes, the runtime lock
agrees with the dev lock, and every install path reads them. A dependency added to
pyproject.toml without `make lock` fails here (and `make` refuses it through pip check)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

#: the platform CI and the image run on (the locks cover every platform, with markers)
TARGET = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.0",
          "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
          "platform_machine": "x86_64", "implementation_name": "cpython",
          "platform_python_implementation": "CPython"}

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name → (version, hashes) for every pinned line of a lock file."""
    found: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match[1])
            assert name not in found, f"{path.name}: {name} pinned twice"
            found[name] = (match[2], [])
        elif line.strip().startswith("--hash=") and name:
            found[name][1].append(line.strip().removeprefix("--hash=").rstrip(" \\"))
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"{path.name}: a line that is neither a pin nor a hash: {line!r}")
    return found


def wanted(requirements: list[str]) -> list[Requirement]:
    """The requirements that apply on the locked platform."""
    parsed = [Requirement(r) for r in requirements]
    return [r for r in parsed if r.marker is None or r.marker.evaluate(TARGET)]  # type: ignore[arg-type]


def unmet(lock: dict[str, tuple[str, list[str]]], requirements: list[Requirement]) -> list[str]:
    problems = []
    for req in requirements:
        name = canonicalize_name(req.name)
        if name not in lock:
            problems.append(f"{req}: not in the lock")
        elif not req.specifier.contains(lock[name][0], prereleases=True):
            problems.append(f"{req}: the lock has {lock[name][0]}")
    return problems


def test_every_pin_has_an_exact_version_and_a_sha256() -> None:
    for path in (LOCK, DEV_LOCK):
        locked = pins(path)
        assert len(locked) > 10, f"{path.name} pins almost nothing"
        for name, (_, hashes) in locked.items():
            assert hashes, f"{path.name}: {name} has no hash"
            assert all(h.startswith("sha256:") and len(h) == 71 for h in hashes), name


def test_the_runtime_lock_covers_the_dependencies() -> None:
    problems = unmet(pins(LOCK), wanted(PYPROJECT["dependencies"]))
    assert not problems, "run `make lock`: " + "; ".join(problems)


def test_the_dev_lock_covers_the_dependencies_and_the_dev_and_bench_extras() -> None:
    extras = PYPROJECT["optional-dependencies"]
    requirements = wanted(PYPROJECT["dependencies"] + extras["dev"] + extras["bench"])
    problems = unmet(pins(DEV_LOCK), requirements)
    assert not problems, "run `make lock`: " + "; ".join(problems)


def test_the_image_runs_the_versions_the_tests_ran() -> None:
    runtime, dev = pins(LOCK), pins(DEV_LOCK)
    differ = {name: (version, dev.get(name, (None,))[0])
              for name, (version, _) in runtime.items() if dev.get(name, (None,))[0] != version}
    assert not differ, f"runtime lock vs dev lock (run `make lock`): {differ}"


def test_every_install_path_reads_a_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(DEV_LOCK)" in makefile
    assert "DEV_LOCK := requirements-dev.lock" in makefile
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    # the project itself on top, resolving nothing the lock did not decide
    assert re.search(r"pip install (--\S+ )*--no-deps \.", dockerfile)
    assert "!requirements.lock" in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
