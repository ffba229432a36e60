"""The run configuration: every package's section assembled into one schema, loaded from a config file.

A config file is Python with `get_config(arg=None) -> ConfigDict` (big_vision style); its docstring
holds the exact command and the expected result. `load_config` loads it, applies `--config.a.b=value`
overrides and validates EVERY field before any work starts, so a typo fails in a second instead of
after the bridge precompute. Each section is declared once, next to the code that owns it
(`<package>/settings.py`); `SCHEMA` below only assembles them.

Paths: relative paths written in a config file are resolved against the repository root, i.e. the
parent of the `configs/` folder holding the file (a file outside a `configs/` folder resolves
against its own folder). Relative paths given as command-line overrides are resolved against the
current directory, as a shell user expects. Fields that accept a hub id (`org/name`) keep it
unchanged when no local path of that name exists.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from sembridge_jax import schema
from sembridge_jax.bridge.methods import method_names
from sembridge_jax.bridge.settings import BRIDGE, INIT
from sembridge_jax.data.settings import DATA
from sembridge_jax.evaluation.settings import EVAL
from sembridge_jax.export.settings import EXPORT
from sembridge_jax.hf.load import max_tokens_of
from sembridge_jax.hf.tokenizer import check_tokenizer_location
from sembridge_jax.models.settings import MODEL
from sembridge_jax.schema import ConfigError, Field, Section
from sembridge_jax.storage import location_problem
from sembridge_jax.training.connector_settings import CONNECTOR
from sembridge_jax.training.run_settings import RESUME_POLICIES
from sembridge_jax.training.settings import ALIGN, CHECKPOINT, LOSS, MESH, MLM, TRAIN, VOCAB_WARMUP


def length_problems(c, limit: int | None) -> list[tuple[str, str]]:
    """(key, message) for each input length above `limit`, the tokens the source model's position table covers
    (beyond it training gives NaN at step 1)."""
    return [(key, f"is {schema.get(c, key)}, above the {limit} tokens the position table of the source model "
                  f"covers ({c.source}: max_position_embeddings)")
            for key in ("model.max_query_length", "model.max_doc_length")
            if limit is not None and schema.get(c, key) > limit]


def _length_rules(c):
    """The lengths against the source's config.json when it is at hand (local, hub cache); a hub source not
    at hand is checked by `check_lengths` once loaded."""
    yield from length_problems(c, max_tokens_of(c.source) if c.source else None)


def check_lengths(c, limit: int) -> None:
    """ConfigError for an input length above the loaded source model's position table."""
    for key, message in length_problems(c, limit):
        raise ConfigError(f"config key '{key}' {message}")


SCHEMA = Section({
    "workdir": Field("runs/default", "checkpoints, logs, alignments, reports; a rerun resumes from here "
                                     "(local or gs://)", path="output", required=True, check=location_problem),
    "resume_policy": Field("rebuild", "a rerun whose settings differ from the workdir's: 'rebuild' stale artifacts "
                           "(alignments) and refuse to resume training, 'refuse' both, 'new_run' rebuild and "
                           "start training over (old checkpoints set aside)", choices=RESUME_POLICIES),
    "seed": Field(0, "one seed for init sampling and data order", ge=0),
    "source": Field("", "English sparse model: local HF folder or hub id (naver/splade-v3)", path="input_or_hub",
                    required=True),
    "target_tokenizer": Field("", "target-language tokenizer: local folder or hub id", path="input_or_hub",
                              required=True, check=check_tokenizer_location),
    "bridge": BRIDGE,
    "init": INIT,
    "model": MODEL,
    "data": DATA,
    "loss": LOSS,
    # The stages run in this order; each is off until its steps > 0 (training/stages.py).
    "vocab_warmup": VOCAB_WARMUP,
    "mlm": MLM,
    "align": ALIGN,
    "train": TRAIN,  # the retrieval stage
    "mesh": MESH,
    "checkpoint": CHECKPOINT,
    "eval": EVAL,
    "compare": Section({
        "methods": Field(("mvgauss", "random"), "init methods trained and evaluated beside init.method",
                         choices=method_names),
    }),
    "export": EXPORT,
    "connector": CONNECTOR,
}, rules=(_length_rules,))
FIELDS = dict(schema.walk(SCHEMA))


def default_config() -> ml_collections.ConfigDict:
    """The full schema with its documented defaults. Every config starts from this."""
    return schema.defaults(SCHEMA)


def validate(config: ml_collections.ConfigDict, where: str = "<config>") -> None:
    """Check every field (types, choices, ranges, paths) and cross-field rule; raise ConfigError."""
    try:
        schema.validate(config, SCHEMA)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


# ----------------------------------------------------------------------------- loading


def _config_root(config_file: Path) -> Path:
    folder = config_file.parent
    return folder.parent if folder.name == "configs" else folder


def _import_config_module(config_file: Path):
    """Import a config file; sibling modules are importable as `from . import common`."""
    folder = config_file.parent
    pkg = "_sembridge_cfg_" + hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    if pkg not in sys.modules:
        init = folder / "__init__.py"
        if init.exists():
            spec = importlib.util.spec_from_file_location(pkg, init, submodule_search_locations=[str(folder)])
            package = importlib.util.module_from_spec(spec)
            sys.modules[pkg] = package
            spec.loader.exec_module(package)
        else:
            package = types.ModuleType(pkg)
            package.__path__ = [str(folder)]
            sys.modules[pkg] = package
    name = f"{pkg}.{config_file.stem}"
    spec = importlib.util.spec_from_file_location(name, config_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load `path[:arg]`, apply `--config.a.b=value` overrides, resolve paths and validate.

    `arg` after a colon is passed to `get_config(arg)` (e.g. `configs/paper.py:ko`).
    Returns a locked ConfigDict. Raises ConfigError naming the key and the file.
    """
    path_str = str(path)
    arg = None
    if ":" in Path(path_str).name:
        path_str, arg = path_str.rsplit(":", 1)
    config_file = Path(path_str).resolve()
    if not config_file.is_file():
        raise ConfigError(f"config file not found: {path_str}")
    module = _import_config_module(config_file)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{config_file}: no get_config() function")
    config = module.get_config(arg) if arg is not None else module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{config_file}: get_config() must return an ml_collections.ConfigDict")
    where = str(config_file)
    try:
        schema.check_keys(config, SCHEMA)
        resolve_paths(config, _config_root(config_file))
        apply_overrides(config, overrides)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    validate(config, where=where)
    config.lock()
    return config


def resolve_paths(config: ml_collections.ConfigDict, base: Path) -> None:
    """Make the relative local paths of the path fields absolute against `base`."""
    for key, field in FIELDS.items():
        if field.path:
            schema.put(config, key, schema.resolve_path(field, schema.get(config, key), base))


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Apply `--config.a.b=value` (or `a.b=value`) strings in order, parsed as the field's type."""
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        text = text.removeprefix("config.")
        if "=" not in text:
            raise ConfigError(f"override '{item}' must look like --config.key=value")
        key, raw = text.split("=", 1)
        if key not in FIELDS:
            raise ConfigError(f"unknown config key '{key}' in override '{item}'{schema.closest(key, FIELDS)}")
        field = FIELDS[key]
        value = schema.resolve_path(field, schema.parse_override(raw, field, key), Path.cwd())
        try:
            schema.put(config, key, value)
        except TypeError as err:
            raise ConfigError(f"override {key}={raw!r}: {err}") from None


# ----------------------------------------------------------------------------- CLI glue


def add_config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--config PATH[:arg]` and `--workdir DIR` to a parser; overrides pass through."""
    parser.add_argument("--config", required=True, metavar="PATH[:ARG]",
                        help="config file with get_config(); overrides: --config.a.b=value")
    parser.add_argument("--workdir", default=None, help="overrides config.workdir")
    return parser


def parse_config_args(argv: Sequence[str] | None = None,
                      parser: argparse.ArgumentParser | None = None,
                      ) -> tuple[argparse.Namespace, ml_collections.ConfigDict]:
    """Parse `--config PATH --config.x.y=v ... --workdir DIR` (+ the parser's own flags).

    Returns (args, validated locked config). `--config.x.y v` (space form) also works.
    Unknown non-config flags are a parser error.
    """
    parser = parser or add_config_arguments(argparse.ArgumentParser())
    if not any(a.dest == "config" for a in parser._actions):
        add_config_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            if "=" not in arg:
                if i + 1 >= len(argv):
                    parser.error(f"{arg} needs a value")
                arg = f"{arg}={argv[i + 1]}"
                i += 1
            overrides.append(arg)
        else:
            rest.append(arg)
        i += 1
    args = parser.parse_args(rest)
    if args.workdir is not None:
        overrides.append(f"--config.workdir={args.workdir}")
    return args, load_config(args.config, overrides)
