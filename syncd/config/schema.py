"""The JSON Schema of the configuration file, from the settings models, for editors (taplo / Even
Better TOML read it from the `#:schema` line of config/syncd.example.toml).

Two changes from pydantic's schema, both so that a valid file is never flagged: a secret is never
required (it may come from the environment or a secrets file instead), and every other spelling
of a setting (`client_id` for `app_id`) is a property too.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import AliasChoices, BaseModel

from syncd.config.base import SECRET_FIELDS
from syncd.config.settings import Settings

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model class reachable from `root`'s fields, by class name (the schema's `$defs`)."""
    found: dict[str, type[BaseModel]] = {}
    pending: list[Any] = [root]
    while pending:
        item = pending.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            if item.__name__ in found:
                continue
            found[item.__name__] = item
            pending.extend(info.annotation for info in item.model_fields.values())
        else:
            pending.extend(getattr(item, "__args__", ()))
            pending.extend(getattr(item, "__metadata__", ()))
    return found


def _relax(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Secrets optional, other spellings of a setting allowed, in `model`'s part of the schema."""
    properties = schema.get("properties", {})
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            shown = next((p for p in alias.choices if isinstance(p, str) and p in properties), name)
            for choice in alias.choices:
                if isinstance(choice, str) and choice not in properties:
                    properties[choice] = {
                        **properties[shown],
                        "description": f"another name of {shown}: give only one of them",
                    }
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r not in SECRET_FIELDS]
        if not schema["required"]:
            del schema["required"]


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a syncd TOML config file."""
    schema = Settings.model_json_schema()
    models = _models(Settings)
    for name, part in schema.get("$defs", {}).items():
        if name in models:
            _relax(part, models[name])
    _relax(schema, Settings)
    return {
        "$schema": SCHEMA_DIALECT,
        **schema,
        "title": "syncd configuration",
        "description": "The TOML file syncd reads (--config or $SYNCD_CONFIG); "
        "see config/syncd.example.toml.",
    }


def config_schema_text() -> str:
    """`config_schema()` as the JSON text `syncd config-schema` prints and the repository keeps."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"
