#!/usr/bin/env bash
# Regenerates the hash-pinned locks from pyproject.toml's ranges (run after changing a dependency;
# tests/test_lock.py fails until the locks cover pyproject.toml again):
#   requirements/runtime.lock  the image's install (Dockerfile)
#   requirements/test.lock     the test command (README, .ci/run): runtime + the test extra
# Every file of each pinned version is hashed, so one lock serves every platform the image runs on.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools" && "$tools/bin/pip" install -q 'pip-tools>=7.4'
compile() {
    "$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
        --no-emit-index-url --no-emit-trusted-host --no-emit-find-links --annotation-style=line "$@" pyproject.toml
}
compile -o requirements/runtime.lock
compile --extra test -o requirements/test.lock
