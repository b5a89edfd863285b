"""The hash-pinned locks cover pyproject.toml: every dependency pinned, in its range, hashed.
A dependency added to pyproject.toml without `deploy/lock.sh` fails here, not in the image build."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def pins(lock: str) -> dict[str, tuple[Version, int]]:
    """Package name -> (pinned version, number of hashes) in requirements/`lock`."""
    text = (ROOT / "requirements" / lock).read_text(encoding="utf-8")
    found: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            name = canonicalize_name(match.group(1))
            found[name] = (Version(match.group(2)), block.count("--hash=sha256:"))
    return found


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("runtime.lock", PROJECT["dependencies"]),
        (
            "test.lock",
            PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"],
        ),
    ],
)
def test_every_dependency_is_pinned_in_range_with_hashes(
    lock: str, requirements: list[str]
) -> None:
    """Run deploy/lock.sh after changing pyproject.toml's dependencies."""
    pinned = pins(lock)
    assert pinned and all(count >= 1 for _, count in pinned.values()), lock
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock}: {requirement.name} is not pinned: run deploy/lock.sh"
        version, _ = pinned[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock}: {requirement.name}=={version} is outside {requirement.specifier}: "
            "run deploy/lock.sh"
        )


def test_the_image_and_the_test_command_install_from_the_locks() -> None:
    """The Dockerfile and the README's test command (which .ci/run runs) use the locks."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements/runtime.lock" in dockerfile
    assert "--no-deps ." in dockerfile
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (command,) = [line for line in ci.splitlines() if line.startswith("python3 -m venv")]
    assert "--require-hashes -r requirements/test.lock" in command
    assert command.split(" && .venv/bin/pytest")[0] in readme
