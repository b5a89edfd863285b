"""`syncd emulator`: serve the platform emulator on loopback, say every credential it accepts, and
optionally write a config with one source per platform that `check-config`, `check` and `sync`
accept as it is."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from syncd.emulator import Emulator

STATIC_TOKEN = "syncd-emulator-static-token"  # noqa: S105 - the emulator's own fake credential
"""The AmeriCommerce admin-console token `syncd emulator` accepts."""

_CREDENTIAL_WORDS = ("id", "secret", "token", "tokens", "key", "org", "users", "scope", "scheme")


def credential_lines(emu: Emulator) -> list[str]:
    """Every credential the running emulator accepts, one `platform  name  value` line each."""
    lines = [f"{'IMS token_url':<28} {emu.ims_token_url}"]
    for platform, config in (
        ("Adobe", emu.adobe.config),
        ("AmeriCommerce", emu.americommerce.config),
    ):
        for item in dataclasses.fields(config):
            words = item.name.split("_")
            if "lifetime" in words or not any(word in _CREDENTIAL_WORDS for word in words):
                continue
            value = getattr(config, item.name)
            if isinstance(value, dict):
                value = ", ".join(f"{user} / key {key}" for user, key in value.items())
            elif isinstance(value, tuple | list):
                value = ", ".join(str(v) for v in value) or "(none)"
            lines.append(f"{platform + ' ' + item.name:<28} {value}")
    return lines


def _toml(value: Any) -> str:
    """A TOML basic string or number (JSON's string escapes are valid TOML)."""
    return json.dumps(value)


def config_text(emu: Emulator, db: Path) -> str:
    """A syncd config for `emu`: one Adobe Commerce source (IMS) and one AmeriCommerce source
    (the admin-console token); the store at `db`."""
    adobe, ac = emu.adobe.config, emu.americommerce.config
    static = ac.static_tokens[0] if ac.static_tokens else None
    lines = [
        f"# Written by 'syncd emulator' for the emulator at {emu.url}: fake credentials only.",
        "",
        "[store]",
        f"path = {_toml(str(db))}",
        "",
        "[[sources]]",
        'name = "emulator-adobe"',
        'kind = "adobe_commerce"',
        f"base_url = {_toml(emu.url)}",
        "",
        "[sources.auth]",
        f"token_url = {_toml(emu.ims_token_url)}",
        f"client_id = {_toml(adobe.client_id)}",
        f"client_secret = {_toml(adobe.client_secret)}",
        f"org_id = {_toml(adobe.org_id)}",
        "",
        "[[sources]]",
        'name = "emulator-americommerce"',
        'kind = "americommerce"',
        f"base_url = {_toml(emu.url)}",
        "",
        "[sources.auth]",
    ]
    if static is not None:
        lines += [
            f"static_token = {_toml(static)}",
            "# or the app's OAuth grant (then run 'syncd auth emulator-americommerce'):",
            f"# auth_scheme = {_toml(ac.scheme)}",
            f"# app_id = {_toml(ac.app_id)}",
            f"# app_secret = {_toml(ac.app_secret)}",
        ]
    else:
        lines += [
            f"auth_scheme = {_toml(ac.scheme)}",
            f"app_id = {_toml(ac.app_id)}",
            f"app_secret = {_toml(ac.app_secret)}",
        ]
    return "\n".join(lines) + "\n"


def write_config(path: Path, emu: Emulator) -> None:
    """Write the config for `emu` to `path`, its database beside it, readable by its owner only
    (it holds credentials, if fake ones)."""
    text = config_text(emu, path.absolute().parent / "syncd-emulator.db")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


async def serve_emulator(
    port: int,
    products: int,
    rate_limit: float | None,
    *,
    config_file: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """`syncd emulator`: serve the emulator on 127.0.0.1 until interrupted."""
    from syncd.emulator import (
        AdobeConfig,
        AmeriCommerceConfig,
        Emulator,
        EmulatorConfig,
        RateLimitConfig,
    )

    out = out or sys.stderr
    limit = RateLimitConfig(rate=rate_limit, burst=max(1, int(rate_limit))) if rate_limit else None
    config = EmulatorConfig(
        adobe=AdobeConfig(products=products, rate_limit=limit),
        americommerce=AmeriCommerceConfig(products=products, static_tokens=(STATIC_TOKEN,)),
    )
    async with contextlib.AsyncExitStack() as stack:
        try:
            emu = await stack.enter_async_context(Emulator(config, port=port))
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            hint = (
                "; pick another --port (0 picks a free one)"
                if exc.errno == errno.EADDRINUSE
                else ""
            )
            print(f"syncd: error: cannot listen on 127.0.0.1:{port}: {reason}{hint}", file=out)
            return 1
        print(f"emulator listening on {emu.url} ({products} products per platform)", file=out)
        for line in credential_lines(emu):
            print(f"  {line}", file=out)
        if config_file is not None:
            write_config(config_file, emu)
            print(
                f"config written to {config_file}: try 'syncd --config {config_file} check'",
                file=out,
            )
        out.flush()
        await asyncio.Event().wait()
    return 0
