"""Rebuild a trained model from a training workdir: the encoder spec in ``<workdir>/model/`` and the
parameters of an Orbax checkpoint, read without touching the run (read-only)."""
from __future__ import annotations

import json
import os

from flax import nnx

from sembridge_jax.hf.tokenizer import check_vocab_fits, load_tokenizer
from sembridge_jax.models import EncoderConfig, build_model, model_from_params
from sembridge_jax.models.state import split_model
from sembridge_jax.storage import as_path, readable_dir
from sembridge_jax.training.checkpoint import ENCODER_CONFIG, MODEL_DIR, Checkpointer


def load_model_from_checkpoint(workdir: str | os.PathLike, step: int | None = None):
    """Rebuild ``(model, tokenizer, step)`` from a run's workdir: the encoder from
    ``model/encoder_config.json``, its parameters from the checkpoint ``step`` (default: newest)."""
    workdir = as_path(workdir)
    spec = workdir / MODEL_DIR / ENCODER_CONFIG
    if not spec.is_file():
        raise FileNotFoundError(f"{spec} is missing: is {workdir} a sembridge-jax training workdir?")
    config = EncoderConfig.from_dict(json.loads(spec.read_text()))
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        step = ckpt.latest_step() if step is None else step
        params = ckpt.restore_params(step)
    finally:
        ckpt.close()
    layout, _ = split_model(nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))))
    unknown = sorted(set(params) - set(layout.paths))
    if unknown:
        raise ValueError(f"checkpoint step {step} in {workdir} has parameters the model lacks: {unknown[:5]}")
    model = model_from_params(config, {layout.paths[k]: v for k, v in params.items()},
                              describe=lambda p: f"{'.'.join(map(str, p))} (checkpoint step {step} in {workdir})")
    with readable_dir(workdir / MODEL_DIR) as local:
        tokenizer = load_tokenizer(local)
    check_vocab_fits(tokenizer, config.vocab_size, str(workdir / MODEL_DIR))
    return model, tokenizer, step
