"""The Pi's lock file (requirements.lock, written by `make lock`) agrees with what the
project asks for: a requirement changed without `make lock` fails here, not on a Pi."""
from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def requirements(name: str) -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def test_the_lock_pins_every_package_exactly_once():
    pins = requirements("requirements.lock")
    assert pins and all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in pins)
    names = [canonicalize_name(r.name) for r in pins]
    assert len(names) == len(set(names))


def test_the_lock_satisfies_every_runtime_requirement():
    pins = {canonicalize_name(r.name): next(iter(r.specifier)).version for r in requirements("requirements.lock")}
    for wanted in requirements("requirements.txt") + requirements("requirements-nodeps.txt"):
        version = pins.get(canonicalize_name(wanted.name))
        assert version is not None, f"{wanted.name} is not in requirements.lock: run make lock"
        assert wanted.specifier.contains(version, prereleases=True), \
            f"requirements.lock pins {wanted.name}=={version}, outside {wanted}: run make lock"
