"""`syncd config-schema`: the JSON Schema of the config file from the settings models; the copy in
config/ is current, the example config names it and is valid against it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from syncd.cli import main
from syncd.config.schema import config_schema, config_schema_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "config" / "syncd.schema.json"
EXAMPLE = ROOT / "config" / "syncd.example.toml"


def validate(document: dict[str, Any]) -> list[str]:
    """The schema's complaints about `document`, one line each."""
    validator = jsonschema.Draft202012Validator(config_schema())
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_the_command_prints_the_checked_in_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """config/syncd.schema.json is what the command prints now: regenerate it with
    `syncd config-schema > config/syncd.schema.json` after changing a settings model."""
    assert main(["config-schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == config_schema_text()
    assert SCHEMA_FILE.read_text(encoding="utf-8") == printed, (
        "config/syncd.schema.json is stale: run 'syncd config-schema > config/syncd.schema.json'"
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(printed))


def test_the_example_names_the_schema_and_is_valid() -> None:
    """Editors (taplo, Even Better TOML) find the schema from the example's first line."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "#:schema ./syncd.schema.json"
    assert validate(tomllib.loads(text)) == []


def test_the_schema_catches_what_an_editor_should_flag() -> None:
    """A typo'd key, a wrong type and an unknown kind are flagged; a config whose secrets come
    from the environment, or that spells app_id as client_id, is not."""
    good = {
        "sources": [
            {
                "name": "a",
                "kind": "adobe_commerce",
                "base_url": "https://shop.example.com",
                "auth": {"client_id": "c", "org_id": "o@AdobeOrg"},
            },
            {
                "name": "b",
                "kind": "americommerce",
                "base_url": "https://ac.example.com",
                "auth": {"client_id": "app", "redirect_uri": "http://127.0.0.1:8765/cb"},
            },
        ]
    }
    assert validate(good) == []
    assert validate({"stroe": {}}) == [
        ": Additional properties are not allowed ('stroe' was unexpected)"
    ]
    assert validate({"http": {"max_attempts": "five"}}) == [
        "http.max_attempts: 'five' is not of type 'integer'"
    ]
    bad_kind = {"sources": [{**good["sources"][0], "kind": "shopify"}]}
    assert validate(bad_kind) != []
