"""`syncd auth SOURCE`: the operator's AmeriCommerce authorisation (desktop or web flow, or a static token)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

from syncd.auth import AccessToken, TokenCache, fingerprint
from syncd.auth.americommerce.bootstrap import AmeriCommerceAuthorizer, UserLogin, install_grant
from syncd.auth.americommerce.refresh import AmeriCommerceTokenProvider
from syncd.clock import Clock, SystemClock
from syncd.config import (
    AmeriCommerceSourceSettings,
    Settings,
)
from syncd.config.readiness import require_secrets
from syncd.http import ClientPool
from syncd.store.factory import open_store

ENV_AC_USERNAME = "SYNCD_AC_USERNAME"


ENV_AC_USER_KEY = "SYNCD_AC_USER_KEY"


async def authorize_source(
    args: argparse.Namespace,
    settings: Settings,
    *,
    clock: Clock | None = None,
    stdin: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """`syncd auth SOURCE [--web]`: obtain an AmeriCommerce grant, store it, clear `needs_reauth`.

    The legacy scheme runs the desktop flow unless `--web` is given; the current scheme has only
    the web flow. The user API key is read once (prompt, $SYNCD_AC_USER_KEY or stdin) and dropped.
    """
    source = settings.source(args.source)
    if not isinstance(source, AmeriCommerceSourceSettings):
        return _usage(
            f"source {source.name!r} is {source.kind}: only americommerce sources have an "
            "authorisation step (IMS or integration credentials are used as configured)"
        )
    require_secrets(settings, [source.name])
    auth, name, base_url = source.auth, source.name, str(source.base_url)
    clock = clock or SystemClock()
    web = args.web or auth.auth_scheme != "legacy"
    login: UserLogin | None = None
    redactor = settings.redactor
    if auth.static_token is None and not web:
        login, problem = read_login(stdin or sys.stdin, os.environ if env is None else env)
        if login is None:
            return _usage(problem)
        redactor.register(login.user_key)
    async with (
        open_store(settings.store, redactor=redactor) as store,
        ClientPool(settings.http, clock) as pool,
    ):
        naive = source.naive_time_offset
        provider = AmeriCommerceTokenProvider(
            auth, base_url, pool, clock, source=name, naive_time_offset=naive, redactor=redactor
        )
        if auth.static_token is not None:
            how = "static admin-console token (from the configuration; it does not expire)"
            token = await provider.obtain(None)
        else:
            authorizer = AmeriCommerceAuthorizer(
                auth, base_url, pool, clock, naive_time_offset=naive, redactor=redactor
            )
            if login is not None:
                how = f"{auth.auth_scheme} desktop flow, desktop_signature={auth.desktop_signature}"
                token = await authorizer.desktop(login)
            else:
                how = f"{auth.auth_scheme} web flow"
                token = await authorizer.web(within=args.timeout, show=_show_authorize_url(args))
        cache = TokenCache(store, clock, redactor=redactor)
        await install_grant(cache, store, provider, token, name, clock.now())
    print(f"authorised {name!r} ({how}): {_describe_grant(token, name)}")
    return 0


def read_login(stdin: TextIO, env: Mapping[str, str]) -> tuple[UserLogin | None, str]:
    """Username and user API key: from the environment, else prompted on a terminal, else stdin lines.

    End of input (Ctrl-D at a prompt, a short stdin) counts as an empty answer: a usage error.
    """
    interactive = stdin.isatty()
    where = "type it at the prompt, set {env}, or pass it as line {line} of stdin"
    username = env.get(ENV_AC_USERNAME, "").strip()
    key_line = 1 if username else 2  # the key follows the username on stdin, if it is there
    if not username:
        if interactive:
            print("AmeriCommerce username: ", end="", file=sys.stderr, flush=True)
        username = _line(stdin, interactive)
        if not username:
            return None, "the desktop flow needs a username: " + where.format(
                env=ENV_AC_USERNAME, line=1
            )
    key = env.get(ENV_AC_USER_KEY, "").strip()
    if not key:
        key = _hidden("User API key (input hidden): ") if interactive else _line(stdin, False)
    if not key:
        return None, "the desktop flow needs the user's API key: " + where.format(
            env=ENV_AC_USER_KEY, line=key_line
        )
    return UserLogin(username, key), ""


def _line(stdin: TextIO, interactive: bool) -> str:
    """One stripped line of `stdin`; "" at end of input."""
    try:
        raw = stdin.readline()
    except EOFError:
        raw = ""
    if interactive and not raw:
        _end_prompt_line()
    return raw.strip()


def _hidden(prompt: str) -> str:
    """A value typed at a terminal without echo; "" if the operator ends input (Ctrl-D)."""
    try:
        return getpass.getpass(prompt, stream=sys.stderr).strip()
    except EOFError:
        _end_prompt_line()
        return ""


def _end_prompt_line() -> None:
    # Ctrl-D leaves the cursor after the prompt: end that line before the error is printed.
    print(file=sys.stderr)


def _show_authorize_url(args: argparse.Namespace) -> Callable[[str], None]:
    def show(url: str) -> None:
        print(
            "Open this URL in a browser logged in to the store's admin console and grant access "
            f"(waiting up to {args.timeout:g}s for the redirect):",
            file=sys.stderr,
        )
        print(url, flush=True)

    return show


def _describe_grant(token: AccessToken, name: str) -> str:
    text = f"access token {token.fingerprint}"
    if token.expires_at is None:
        text += ", no known expiry"
    else:
        text += f", expires {token.expires_at.isoformat()}"
    if token.refresh_token:
        return text + f", refresh token {fingerprint(token.refresh_token)}"
    if token.expires_at is not None:
        return text + f", no refresh token: run 'syncd auth {name}' again before it expires"
    return text


def _usage(message: str) -> int:
    print(f"syncd: usage error: {message}", file=sys.stderr)
    return 2
