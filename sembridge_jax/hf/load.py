"""Import a Hugging Face BERT / DistilBERT / RoBERTa / XLM-R checkpoint into our Flax encoder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from sembridge_jax.hf.hub import cached_config_file, local_folder, resolve_model_dir, transformer_folder
from sembridge_jax.hf.params import param_table, params_from_hf
from sembridge_jax.hf.tokenizer import check_vocab_fits, load_tokenizer, vocabulary_problem
from sembridge_jax.models import EncoderConfig, MaskedLMEncoder, build_model, model_from_params

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def read_config(folder: Path, **overrides) -> EncoderConfig:
    """EncoderConfig from `folder/config.json`; errors name the file."""
    f = folder / "config.json"
    if not f.is_file():
        raise FileNotFoundError(f"{folder}: no config.json")
    try:
        hf = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: invalid JSON at line {e.lineno}: {e.msg}") from e
    try:
        return EncoderConfig.from_hf(hf, **overrides)
    except ValueError as e:
        raise ValueError(f"{f}: {e}") from e


def check_model_location(path_or_id: str | Path) -> None:
    """Cheap checks of a model to load later (nothing is read): a local folder has config.json, weights and a
    tokenizer vocabulary; anything else must be a valid hub id. FileNotFoundError naming the folder."""
    folder = local_folder(path_or_id)
    if folder is None:
        return
    folder = transformer_folder(folder)
    missing = [what for what, ok in (
        ("config.json", (folder / "config.json").is_file()),
        (f"weights ({', '.join(WEIGHT_FILES)})", any((folder / f).is_file() for f in WEIGHT_FILES)),
    ) if not ok]
    if missing:
        raise FileNotFoundError(f"{folder}: not a model folder, no {' and no '.join(missing)}")
    problem = vocabulary_problem(folder)
    if problem:
        raise FileNotFoundError(problem)


def max_tokens_of(path_or_id: str | Path) -> int | None:
    """The longest input the position table of the model at `path_or_id` covers, read from its config.json
    when it is at hand (local folder, hub cache); None otherwise (loading the model reports a bad config)."""
    f = cached_config_file(path_or_id)
    if f is None:
        return None
    try:
        return read_config(f.parent).max_tokens
    except (ValueError, OSError):
        return None


def _to_numpy(t) -> np.ndarray:
    # bf16/fp16 checkpoints are widened to float32 (parameters are kept in float32).
    return (t.float() if t.is_floating_point() else t).numpy()


def read_tensors(folder: Path) -> tuple[dict[str, np.ndarray], str]:
    """All tensors of the checkpoint in `folder` (safetensors preferred, else pytorch_model.bin)."""
    import torch  # heavy: only reading checkpoint weights needs it (bf16 safetensors, .bin files)

    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file() or index.is_file():
        files = [single] if single.is_file() else sorted(
            {folder / f for f in json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()})
        out = {}
        for f in files:
            try:
                with safe_open(str(f), framework="pt") as g:
                    out.update({k: _to_numpy(g.get_tensor(k)) for k in g.keys()})  # noqa: SIM118
            except (SafetensorError, OSError) as e:
                raise ValueError(f"{f}: unreadable weights ({e}); truncated or corrupt, fetch it again") from None
        return out, str(files[0] if len(files) == 1 else index)
    binary = folder / "pytorch_model.bin"
    if binary.is_file():
        try:
            state = torch.load(binary, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, EOFError) as e:
            raise ValueError(f"{binary}: unreadable weights ({e}); truncated or corrupt, fetch it again") from None
        return {k: _to_numpy(v) for k, v in state.items()}, str(binary)
    raise FileNotFoundError(f"{folder}: no weights found (looked for {', '.join(WEIGHT_FILES)})")


def load_model(folder: str | Path, **config_overrides) -> MaskedLMEncoder:
    """Our encoder from a local Hugging Face folder; `config_overrides` set dtype, chunk size, remat policy..."""
    folder = Path(folder)
    config = read_config(folder, **config_overrides)
    tensors, source = read_tensors(folder)
    config = _drop_absent_head(config, tensors)
    abstract = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
    expected = {path: var.shape for path, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param))}
    params = params_from_hf(tensors, config, expected, source=source)
    return model_from_params(config, params)


def _drop_absent_head(config: EncoderConfig, tensors) -> EncoderConfig:
    """A checkpoint with no MLM-head tensor at all (a base model whose config names no architecture)
    loads as an encoder without head; one with part of a head keeps it and fails on the missing tensor."""
    head_names = [n for e in param_table(config) if not e.backbone for n in e.names]
    if config.mlm_head and not any(n in tensors for n in head_names):
        return config.replace(mlm_head=False)
    return config


def splade_pooling_of(folder: Path) -> str | None:
    """The pooling_strategy of a sentence-transformers SpladePooling module in `folder` (or its parent)."""
    for root in (folder, folder.parent):
        modules = root / "modules.json"
        if not modules.is_file():
            continue
        entries = [(m.get("path", ""), m.get("type", "")) for m in json.loads(modules.read_text(encoding="utf-8"))]
        router = root / "router_config.json"  # a Router's modules (inference-free queries, hf/save.py)
        if router.is_file():
            entries += list(json.loads(router.read_text(encoding="utf-8")).get("types", {}).items())
        for path, kind in entries:
            cfg = root / path / "config.json"
            if kind.endswith("SpladePooling") and cfg.is_file():
                pooling = json.loads(cfg.read_text(encoding="utf-8"))
                if pooling.get("activation_function", "relu") != "relu":
                    raise ValueError(f"{cfg}: activation_function {pooling['activation_function']!r} is not "
                                     "supported (only 'relu')")
                return pooling.get("pooling_strategy", "max")
    return None


def load_pretrained(path_or_id: str | Path, *, dtype: str = "float32", **config_overrides):
    """(model, tokenizer, config) from a local folder or a hub id.

    `dtype` is the compute dtype; `config_overrides` set other EncoderConfig fields
    (splade_pooling, splade_chunk_size, remat_policy). The SPLADE pooling defaults to the folder's
    sentence-transformers SpladePooling setting when there is one. Errors name the unsupported
    model_type, the missing tensor or the tensor of the wrong shape, an unreadable weights file, a tokenizer
    without vocabulary or special tokens or with more tokens than the model has rows, and the file or folder.
    """
    folder = resolve_model_dir(path_or_id)
    pooling = splade_pooling_of(folder)
    if pooling and "splade_pooling" not in config_overrides:
        config_overrides["splade_pooling"] = pooling
    tokenizer = load_tokenizer(folder)  # checked before the weights are read
    check_vocab_fits(tokenizer, read_config(folder).vocab_size, str(folder))
    model = load_model(folder, dtype=dtype, **config_overrides)
    return model, tokenizer, model.config
