"""The redactor itself, and the log pipeline it is bound into (syncd's events and the libraries')."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from syncd.config import AdobeCommerceSourceSettings, ImsAuthSettings, load_settings
from syncd.logging import configure_logging, get_logger
from syncd.redaction import RECENT_LIMIT, REDACTED, Redactor, fingerprint
from syncd.store import RunTotals, SqliteStore, TokenEvent, TokenRecord
from tests.support import settings_for

TOKEN = "eyJhbGciOiJSUzI1NiJ9.payload-part-0123456789.signature-part-abcdef"


def test_a_registered_secret_becomes_its_fingerprint_wherever_it_appears() -> None:
    """Raw, URL-encoded, JSON-escaped and repr'd spellings all become the one fingerprint."""
    redactor = Redactor()
    secret = 'p8e-S3cret/with+odd"chars\\'
    redactor.register(secret)
    mark = fingerprint(secret)
    for spelling in (secret, quote_plus(secret), json.dumps(secret)[1:-1], repr(secret)[1:-1]):
        assert redactor.redact(f"before {spelling} after") == f"before {mark} after", spelling
    assert redactor.redact("nothing to hide") == "nothing to hide"


def test_a_cut_off_secret_is_replaced_but_a_value_sharing_its_prefix_is_not() -> None:
    """An error body quoted up to N characters may cut a token: its start is still replaced. A
    different value that only starts the same way (same JWT header, an id beside its secret)
    goes on with letters or digits and is left alone."""
    redactor = Redactor()
    redactor.register(TOKEN)
    mark = fingerprint(TOKEN)
    assert redactor.redact(f"HTTP 500: Bearer {TOKEN[:30]}") == f"HTTP 500: Bearer {mark}"
    assert redactor.redact(f"(Bearer {TOKEN[:25]}…)") == f"(Bearer {mark}…)"
    other = TOKEN[:20] + "Zother-token-body"
    assert redactor.redact(other) == other
    assert redactor.redact(TOKEN[:7] + ")") == TOKEN[:7] + ")"  # under MIN_LENGTH: no guess


def test_short_secrets_are_replaced_only_where_they_stand_alone() -> None:
    """4 to 7 characters: `[redacted]` as a word of its own, untouched inside other words (a
    fingerprint of so short a value would give it away); under 4 characters: not registered."""
    redactor = Redactor()
    redactor.register("hunt2", "abc", None, "")
    assert redactor.count == 1
    assert redactor.redact("secret=hunt2; hunt2er") == f"secret={REDACTED}; hunt2er"
    assert redactor.redact("abc abcd") == "abc abcd"


def test_obtained_tokens_are_bounded_but_configured_secrets_stay() -> None:
    """A daemon that refreshes for years keeps the newest tokens only; config secrets forever."""
    redactor = Redactor()
    redactor.register("configured-secret-value", pin=True)
    tokens = [f"token-number-{i:05d}-xyz" for i in range(RECENT_LIMIT + 1)]
    redactor.register(*tokens)
    assert redactor.count == RECENT_LIMIT + 1
    assert redactor.redact(tokens[0]) == tokens[0]  # the oldest was dropped
    assert redactor.redact(tokens[-1]) == fingerprint(tokens[-1])
    assert redactor.redact("configured-secret-value") == fingerprint("configured-secret-value")


def test_the_settings_register_every_secret_they_hold() -> None:
    """Whatever the auth kind, every SecretStr of every source is registered at construction."""
    assert settings_for(Path("x.db")).redactor.count == 0
    auth = ImsAuthSettings(client_id="c", client_secret="an-ims-client-secret", org_id="o")  # type: ignore[arg-type]
    source = AdobeCommerceSourceSettings(
        name="shop",
        kind="adobe_commerce",
        base_url="https://shop.example.com",  # type: ignore[arg-type]
        auth=auth,
    )
    settings = settings_for(Path("x.db"), source)
    assert settings.redactor.redact("an-ims-client-secret") == fingerprint("an-ims-client-secret")


def test_load_settings_registers_secrets_before_anything_is_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SYNCD_SECRET_* variable no source reads, and a secret in a config that fails validation,
    are registered all the same: not even a config error can echo them."""
    monkeypatch.setenv("SYNCD_SECRET_NOBODY_CLIENT_SECRET", "orphan-secret-value")
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[sources]]\nname = "shop"\nkind = "adobe_commerce"\nbase_url = "nope"\n'
        '[sources.auth]\nclient_id = "c"\norg_id = "o"\nclient_secret = "toml-secret-value"\n'
    )
    redactor = Redactor()
    with pytest.raises(Exception, match="base_url"):
        load_settings(path, redactor)
    text = "orphan-secret-value toml-secret-value"
    assert redactor.redact(text) == (
        f"{fingerprint('orphan-secret-value')} {fingerprint('toml-secret-value')}"
    )


def log_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_field_of_every_event_is_redacted_exceptions_included() -> None:
    """Strings, nested containers, objects rendered by repr and formatted tracebacks: the token
    shows as its fingerprint only, in syncd's events and in stdlib (library) records alike."""
    stream = io.StringIO()
    redactor = Redactor()
    configure_logging("debug", "json", stream, redactor=redactor)
    redactor.register(TOKEN)
    log = get_logger("t")
    log.info("t.nested", detail={"list": [f"Bearer {TOKEN}"]}, obj=ValueError(TOKEN))
    try:
        raise RuntimeError(f"answer echoed {TOKEN}")
    except RuntimeError:
        log.exception("t.failed")
        logging.getLogger("apscheduler.x").exception("job raised %s", TOKEN)
    text = stream.getvalue()
    assert TOKEN not in text and TOKEN[:30] not in text
    assert text.count(fingerprint(TOKEN)) >= 5
    first, second, third = log_lines(stream)
    assert first["detail"] == {"list": [f"Bearer {fingerprint(TOKEN)}"]}
    assert "answer echoed sha256:" in str(second["exception"])
    assert third["event"] == f"job raised {fingerprint(TOKEN)}"


async def test_debug_level_never_lets_aiosqlite_print_statement_parameters(
    tmp_path: Path,
) -> None:
    """At --log-level debug aiosqlite would log `INSERT INTO tokens` with the access token: the
    libraries that log parameters or headers stay at WARNING whatever the level."""
    stream = io.StringIO()
    configure_logging("debug", "json", stream, redactor=Redactor())  # nothing registered
    logging.getLogger("syncd.probe").debug("stdlib debug still shows")
    async with SqliteStore(tmp_path / "s.db") as store:
        await store.save_token("k", TokenRecord(TOKEN, None, "refresh-" + TOKEN, None), _now())
    text = stream.getvalue()
    assert "stdlib debug still shows" in text  # the level is really debug
    assert TOKEN not in text and "INSERT INTO tokens" not in text
    for name in ("aiosqlite", "aiohttp.client", "aiohttp.access", "asyncio"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


def _now() -> datetime:
    return datetime.now(UTC)


async def test_the_store_redacts_free_text_but_keeps_credentials_as_given(tmp_path: Path) -> None:
    """A run error, a token event's detail and a re-auth reason are stored redacted; the tokens
    table holds the credential itself (it is what the next process sends)."""
    redactor = Redactor()
    redactor.register(TOKEN)
    async with SqliteStore(tmp_path / "s.db", redactor=redactor) as store:
        run = await store.start_run("shop", "full", _now())
        await store.finish_run(run, "failed", RunTotals(), _now(), error=f"echo {TOKEN}")
        await store.add_token_event(TokenEvent("shop", _now(), "failed", None, None, TOKEN))
        await store.set_needs_reauth("shop", f"refused: {TOKEN}", _now())
        await store.save_token("k", TokenRecord(TOKEN, None, None, None), _now())
        (last,) = await store.last_runs()
        (event,) = await store.token_events()
        state = await store.source_state("shop")
        record = await store.load_token("k")
    mark = fingerprint(TOKEN)
    assert (last.error, event.detail, state.reauth_reason) == (
        f"echo {mark}",
        mark,
        f"refused: {mark}",
    )
    assert record is not None and record.access_token == TOKEN
