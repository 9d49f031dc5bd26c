"""Configs and overrides: the one way a `key=value` reaches a validated config, and the one error message.

Every command's `--set` / `--pretrain-set` and every `**overrides` of a preset function goes through
`parse_overrides` (text → typed values) and `apply_overrides` (dotted keys into a nested dict, unknown keys
refused against the config's schema); `validated` builds the pydantic model and turns its ValidationError into
one ConfigError line made by `validation_message`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from freepoint_bench.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """Returns {key: value} of "key=value" strings, values parsed as TOML (bare words kept as text)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = str(pair).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r} is not key=value (e.g. sigma_low=0.8)")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            # bare words such as solver=gaec-kl; none / null unset an optional field (TOML has no null)
            value = None if raw.strip().lower() in ("none", "null") else raw.strip()
        out[key.strip()] = value
    return out


def read_toml_table(path: str | os.PathLike, table: str, what: str) -> dict[str, Any]:
    """Returns the `[table]` of TOML file `path`, or its top level when it has no such table (flat keys).

    One ConfigError line naming the file for a missing or unreadable file, bad TOML, or a `table` that is not a
    table; `what` names the config in the messages ("pseudo-label config", "tuning config")."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found; check the path") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    except OSError as exc:  # a folder, an unreadable file
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror}); pass a TOML file") from None
    data = data.get(table, data)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {table} is {data!r}, not a table; write [{table}] then key = value")
    return data


def validation_message(exc: Exception) -> str:
    """Returns pydantic's errors as one line: `field.path: message (got value)`, joined by `; `."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for err in errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        parts.append(f"{loc}: {err['msg']}{got}")
    return "; ".join(parts)


def validated(schema: type[M], data: Mapping[str, Any], what: str) -> M:
    """Returns schema(**data); a validation failure is one ConfigError line starting `invalid <what>: `."""
    try:
        return schema(**data)
    except ConfigError:
        raise
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {validation_message(exc)}") from None


def _sub_schema(schema: type[BaseModel], field: str) -> type[BaseModel] | None:
    annotation = schema.model_fields[field].annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def field_paths(schema: type[BaseModel], prefix: str = "") -> list[str]:
    """Returns every settable dotted key of `schema` (nested models expanded), sorted."""
    out = []
    for name in schema.model_fields:
        sub = _sub_schema(schema, name)
        out.extend(field_paths(sub, f"{prefix}{name}.") if sub else [f"{prefix}{name}"])
    return sorted(out)


def check_key(schema: type[BaseModel], key: str, what: str) -> None:
    """Raises ConfigError (naming the known fields) unless dotted `key` names a field of `schema` or a whole
    nested model."""
    current: type[BaseModel] | None = schema
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if current is None or part not in current.model_fields:
            known = field_paths(schema)
            raise ConfigError(f"unknown {what} field {key!r}; known: {', '.join(known)}")
        current = _sub_schema(current, part) if depth < len(parts) - 1 else None


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any], schema: type[BaseModel],
                    what: str) -> dict[str, Any]:
    """Returns a copy of nested dict `base` with dotted `overrides` set, each key checked against `schema`.

    Nested models in `base` may be dicts or BaseModel instances (dumped on write). An unknown key raises one
    ConfigError naming the key and what is known."""
    data = _plain(base)
    for key, value in overrides.items():
        check_key(schema, key, what)
        *heads, last = key.split(".")
        node = data
        for head in heads:
            child = node.get(head)
            if isinstance(child, BaseModel):
                child = child.model_dump()
            node[head] = dict(child) if isinstance(child, Mapping) else {}
            node = node[head]
        node[last] = value
    return data


def route_bare(overrides: Mapping[str, Any], schema: type[BaseModel], group: str) -> dict[str, Any]:
    """Returns `overrides` with each bare key that is not a field of `schema` but is one of its `group` sub-model
    prefixed `group.` (fine-tuning's `lr=…` means `train.lr=…`); every other key unchanged."""
    sub = _sub_schema(schema, group)
    out = {}
    for key, value in overrides.items():
        head = key.partition(".")[0]
        out[f"{group}.{key}" if head not in schema.model_fields and sub and head in sub.model_fields else key] = value
    return out


def _plain(base: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in base.items()}


def omit_at_default(model: BaseModel, data: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Returns `data` (the model's dump, from a wrap model_serializer) without the fields `names` where they hold
    their declared default: fields added after such records were first written, so the hashes, checkpoint ids and
    run folders of configs that leave them unset stay what they were."""
    for name in names:
        if name in data and data[name] == type(model).model_fields[name].default:
            del data[name]
    return data
