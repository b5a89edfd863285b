"""The deployment files keep what the daemon relies on: the unit's directives, the image's user,
volume, health check, init and stop signal, and stop timeouts longer than the drain."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.config import Settings
from syncd.config.loading import CREDENTIAL_PREFIX, load_settings
from syncd.ops.notify import watchdog_interval

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKER_STOP_TIMEOUT = 10.0
"""What `docker stop` (and `docker run` without --stop-timeout) waits before SIGKILL."""
MARGIN = 5.0
"""After the grace the drain still cancels, closes its run rows (which may wait on a locked
database) and lets the token cache save: leave it this long."""


def seconds(text: str) -> float:
    """A systemd ("45s", "5min", "1min 30s", "90") or Go ("1m30s") duration in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0}
    units |= {"h": 3600.0, "hr": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts and "".join(n + u for n, u in parts) == re.sub(r"\s", "", text), text
    return sum(float(number) * units[unit] for number, unit in parts)


def unit() -> dict[str, dict[str, list[str]]]:
    """deploy/syncd.service: section -> key -> every value given (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (DEPLOY / "syncd.service").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), "continuation lines are not expected in the unit"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def service() -> dict[str, list[str]]:
    return unit()["Service"]


def one(key: str) -> str:
    """The single value of a [Service] directive (fails if it is missing or repeated)."""
    values = service().get(key, [])
    assert len(values) == 1, f"syncd.service: {key}= given {len(values)} times, want once"
    return values[0]


def unit_environment() -> dict[str, str]:
    return dict(
        word.split("=", 1)
        for value in service().get("Environment", [])
        for word in shlex.split(value)
    )


def dockerfile() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def runtime_stage() -> dict[str, list[str]]:
    """The final stage's instructions: INSTRUCTION -> every argument string."""
    found: dict[str, list[str]] = {}
    for instruction, args in dockerfile()[-1]:
        found.setdefault(instruction, []).append(args)
    return found


def image_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in runtime_stage().get("ENV", []):
        env.update(word.partition("=")[::2] for word in shlex.split(args))
    return env


def image_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: str = "") -> Settings:
    """What the daemon in the image reads: its defaults file under an operator's `config`."""
    for name in list(os.environ):
        if name.upper().startswith("SYNCD_"):
            monkeypatch.delenv(name)
    env = image_environment()
    defaults = ROOT / "deploy" / Path(env["SYNCD_CONFIG_DEFAULTS"]).name
    monkeypatch.setenv("SYNCD_CONFIG_DEFAULTS", str(defaults))
    path = tmp_path / "syncd.toml"
    # /run/secrets exists in a container given secrets only, not here.
    path.write_text(f"secrets_dir = {str(tmp_path)!r}\n{config}", encoding="utf-8")
    return load_settings(path)


def compose_service() -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    service: dict[str, Any] = document["services"]["syncd"]
    return service


def default_grace() -> float:
    return Settings().shutdown_grace


def test_the_unit_keeps_every_directive_the_daemon_relies_on() -> None:
    """Notify + watchdog, restarts that stop at config errors, the sandbox and the credentials."""
    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    assert one("ExecStart").split()[-1] == "run"
    assert one("Restart") == "on-failure"
    assert "2" in one("RestartPreventExitStatus").split()
    assert seconds(one("WatchdogSec")) > 0
    assert one("KillSignal") == "SIGTERM"
    assert (one("DynamicUser"), one("User")) == ("yes", "syncd")
    assert one("StateDirectory") == "syncd" and one("UMask") == "0077"
    assert (one("ProtectSystem"), one("NoNewPrivileges"), one("PrivateTmp")) == (
        "strict",
        "yes",
        "yes",
    )
    # AF_UNIX for NOTIFY_SOCKET, AF_INET/AF_INET6 for the stores and the listener; nothing else.
    assert set(one("RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # One line for the whole directory: files arrive as syncd_<file>, which the loader reads.
    (credential,) = service().get("LoadCredential", [])
    assert credential == f"{CREDENTIAL_PREFIX.rstrip('_')}:/etc/syncd/credentials"
    store = Path(unit_environment()["SYNCD_STORE__PATH"])
    assert store.parent == Path("/var/lib") / one("StateDirectory")
    assert unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_unit_waits_longer_than_the_drain_and_is_pinged_in_time() -> None:
    """TimeoutStopSec outlasts shutdown_grace; the watchdog is pinged well within WatchdogSec."""
    grace = float(unit_environment().get("SYNCD_SHUTDOWN_GRACE", default_grace()))
    assert seconds(one("TimeoutStopSec")) >= grace + MARGIN
    watchdog = seconds(one("WatchdogSec"))
    interval = watchdog_interval({"WATCHDOG_USEC": str(int(watchdog * 1_000_000))}, pid=1)
    assert interval is not None and interval <= watchdog / 2


def test_syncdctl_runs_commands_as_the_unit_does() -> None:
    """Same dynamic user, user name and state directory, or its files would be root's."""
    script = (DEPLOY / "syncdctl").read_text(encoding="utf-8")
    for key in ("DynamicUser", "User", "StateDirectory"):
        assert f"--property={key}={one(key)}" in script, key
    assert f"--working-directory={one('WorkingDirectory')}" in script


def test_the_image_is_multi_stage_non_root_with_a_state_volume_and_a_real_health_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Slim runtime stage, a numeric non-root user, the store on the volume, HEALTHCHECK asking
    the daemon (its listener on), SIGTERM as the stop signal."""
    stages = dockerfile()
    assert len(stages) >= 2 and "slim" in stages[-1][0][1]
    final = runtime_stage()
    (user,) = final["USER"]
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit()
    settings = image_settings(monkeypatch, tmp_path)
    (volume,) = final["VOLUME"]
    assert json.loads(volume) == [str(Path(settings.store.path).parent)]
    (health,) = final["HEALTHCHECK"]
    options, _, command = health.partition("CMD")
    argv = json.loads(command)
    assert argv[:2] == ["syncd", "healthcheck"]
    timeout = dict(re.findall(r"--([a-z-]+)=(\S+)", options))["timeout"]
    assert seconds(timeout) > float(argv[argv.index("--timeout") + 1])
    assert settings.health.enabled is True
    assert final["STOPSIGNAL"] == ["SIGTERM"]


def test_the_image_sets_no_setting_through_the_environment() -> None:
    """An ENV SYNCD_<setting> would silently override the operator's syncd.toml: the image's
    settings are defaults in a file, and only where files are is in the environment."""
    env = image_environment()
    settings = {name for name in env if name.startswith("SYNCD_")}
    assert settings == {"SYNCD_CONFIG", "SYNCD_CONFIG_DEFAULTS"}
    copies = [a.split() for a in runtime_stage()["COPY"] if not a.startswith("--from")]
    assert [
        f"deploy/{Path(env['SYNCD_CONFIG_DEFAULTS']).name}",
        env["SYNCD_CONFIG_DEFAULTS"],
    ] in copies


def test_the_operators_file_wins_over_the_image_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """shutdown_grace and the store path written in syncd.toml are the ones the daemon reads."""
    default = image_settings(monkeypatch, tmp_path)
    chosen = image_settings(
        monkeypatch, tmp_path, 'shutdown_grace = 20\n[store]\npath = "/data/x.db"\n'
    )
    assert default.shutdown_grace == 5 and chosen.shutdown_grace == 20
    assert str(chosen.store.path) == "/data/x.db"
    assert chosen.health.enabled is True, "a table the file sets in part keeps the other defaults"


def test_the_image_runs_syncd_under_an_init() -> None:
    """PID 1 ignores signals it has no handler for: tini (pinned, from Debian) forwards them."""
    final = runtime_stage()
    (entrypoint,) = final["ENTRYPOINT"]
    assert json.loads(entrypoint) == ["/usr/bin/tini", "--", "syncd"]
    assert final["CMD"] == ['["run"]']
    installs = [a for a in final["RUN"] if "apt-get install" in a]
    assert installs and re.search(r"\btini=\S+", installs[0])


def test_the_image_drains_within_a_plain_docker_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """docker stop waits 10 s: the image's default grace (which the daemon really reads) ends before."""
    grace = image_settings(monkeypatch, tmp_path).shutdown_grace
    assert grace + MARGIN <= DOCKER_STOP_TIMEOUT


def test_compose_gives_the_drain_room_for_a_raised_grace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """stop_grace_period outlasts the grace a syncd.toml may set (30 s, the daemon's own
    default); the state, config and secrets are where the image looks; the container is locked
    down; no second init; no setting through the environment."""
    svc = compose_service()
    settings = image_settings(monkeypatch, tmp_path)
    assert seconds(svc["stop_grace_period"]) >= Settings().shutdown_grace + MARGIN
    assert svc["stop_signal"] == "SIGTERM"
    assert "init" not in svc, "the image's entry point is tini already"
    assert not any(str(k).startswith("SYNCD_") for k in svc.get("environment", {}))
    volumes = svc["volumes"]
    assert f"state:{Path(settings.store.path).parent}" in volumes
    assert any(v.endswith(f":{image_environment()['SYNCD_CONFIG']}:ro") for v in volumes)
    document = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert set(svc["secrets"]) <= set(document["secrets"]) and svc["secrets"]
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in svc["security_opt"]


def docker_runs() -> list[str]:
    """Every `docker run` command in deploy/README.md and the Dockerfile's header."""
    texts = [
        (DEPLOY / "README.md").read_text(encoding="utf-8"),
        "\n".join(
            line.lstrip("# ")
            for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
            if line.startswith("#")
        ),
    ]
    commands = []
    for text in texts:
        joined = re.sub(r"\\\n\s*", " ", text)
        commands += [line.strip() for line in joined.splitlines() if "docker run " in line]
    return commands


def test_documented_docker_runs_set_no_setting_and_add_no_init() -> None:
    """No documented command overrides syncd.toml with -e SYNCD_<setting>; a raised stop timeout
    leaves room for the daemon's own default grace; none adds --init (the image has one)."""
    commands = docker_runs()
    assert len(commands) >= 3
    for command in commands:
        words = command[command.index("docker run") :].split()
        assert not [w for w in words if w.startswith("SYNCD_")], command
        if "--stop-timeout" in words:
            timeout = float(words[words.index("--stop-timeout") + 1])
            assert Settings().shutdown_grace + MARGIN <= timeout, command
        assert "--init" not in words, command


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last matching line wins)."""
    result = False
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/").removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        candidates = prefixes + (parts if line.lstrip("!").startswith("**/") else [])
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            result = not negated
    return result


def test_the_build_context_holds_what_the_image_copies_and_nothing_heavy() -> None:
    """Every COPY source is in the context; the venv, databases, git history and caches are not."""
    sources = [
        word
        for stage in dockerfile()
        for instruction, args in stage
        if instruction == "COPY" and not args.startswith("--from")
        for word in args.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert not ignored(source.rstrip("/")), source
        assert not ignored(f"{source.rstrip('/')}/__init__.py") or "." in source, source
    for heavy in (".venv/bin/python", "syncd-demo.db", ".git/HEAD", "syncd/__pycache__/x.pyc"):
        assert ignored(heavy), heavy


def test_compose_scales_out_to_postgres_and_two_replicas() -> None:
    """The `scale` profile: PostgreSQL with a readiness check, and two replicas locked down as
    the single daemon is, on one shared configuration with a PostgreSQL URL, waiting for the
    database, and getting its password from a secret (never the environment)."""
    document = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = document["services"]
    single = compose_service()
    assert "profiles" not in single  # `up` alone keeps the embedded SQLite daemon
    postgres = services["postgres"]
    assert postgres["profiles"] == ["scale"] and "pg_isready" in postgres["healthcheck"]["test"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/store.password"
    replicas = [services[name] for name in services if name.startswith("replica-")]
    assert len(replicas) == 2
    for replica in replicas:
        assert replica["profiles"] == ["scale"]
        for key in ("stop_grace_period", "stop_signal", "read_only", "cap_drop", "security_opt"):
            assert replica[key] == single[key], key
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "store.password" in replica["secrets"]
        assert set(replica["secrets"]) <= set(document["secrets"])
        assert replica["volumes"] == ["./syncd-scale.toml:/etc/syncd/syncd.toml:ro"]
        assert not any(str(k).startswith("SYNCD_") for k in replica.get("environment", {}))
    # The password file is where the store's secret lookup looks ([store] password).
    defaults = tomllib.loads((DEPLOY / "image-defaults.toml").read_text(encoding="utf-8"))
    assert defaults["secrets_dir"] == "/run/secrets"
    example = tomllib.loads((DEPLOY / "syncd-scale.example.toml").read_text(encoding="utf-8"))
    assert example["store"]["url"] == "postgresql://syncd@postgres:5432/syncd"
    assert example["replica"]["lease_seconds"] > 0 and example["sources"]
