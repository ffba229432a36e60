"""LoRA as a parameter transform: merged weights == the unmerged side path (PyTorch hooks) == jit apply."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sembridge_jax.hf.load import load_model
from sembridge_jax.hf.params import PREFIX, param_table
from sembridge_jax.models.lora import apply_lora, init_lora, lora_targets, merge_lora
from sembridge_jax.models.state import merge_model, split_model
from tests.tiny_models import make_hf_folder

RANK, ALPHA = 4, 8.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    tm = make_hf_folder(folder, "bert", seed=5)
    model = load_model(folder)
    layout, params = split_model(model)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, size=(2, 9)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    return tm, layout, params, (ids, mask), model.config


def _trained_adapter(layout, targets, seed=1):
    """An adapter as after training: A as initialised, B no longer zero."""
    lora = init_lora(layout.shapes, targets, RANK, seed)
    rng = np.random.default_rng(seed)
    return {k: v if k.endswith(".lora_a") else jnp.asarray(0.3 * rng.normal(size=v.shape), jnp.float32)
            for k, v in lora.items()}


def _logits(layout, params, batch):
    ids, mask = batch
    return np.asarray(merge_model(layout, params).mlm_logits(jnp.asarray(ids), jnp.asarray(mask)))


def _torch_unmerged_logits(tm, config, lora, batch):
    """The HF model with each adapted Linear's output + x @ A @ B * alpha / rank (forward hooks)."""
    names = {".".join(map(str, e.path)): PREFIX[config.arch] + e.names[0].removesuffix(".weight")
             for e in param_table(config)}
    modules = dict(tm.named_modules())
    hooks = []
    for key in lora:
        if not key.endswith(".lora_a"):
            continue
        path = key.removesuffix(".lora_a")
        a = torch.tensor(np.asarray(lora[key]))
        b = torch.tensor(np.asarray(lora[path + ".lora_b"]))
        module = modules[names[path]]
        hooks.append(module.register_forward_hook(
            lambda mod, inp, out, a=a, b=b: out + (inp[0] @ a @ b) * (ALPHA / RANK)))
    ids, mask = batch
    try:
        with torch.no_grad():
            out = tm(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask))
            return out.logits.numpy()
    finally:
        for h in hooks:
            h.remove()


def test_targets_and_shapes(tiny):
    _, layout, _, _, _ = tiny
    targets = lora_targets(layout)
    assert targets["layers.0.attention.query"] == 1 and targets["layers.1.attention.out"] == 2
    assert targets["layers.0.ffn_up.kernel"] == 1 and targets["layers.0.ffn_down.kernel"] == 1
    assert len(targets) == 2 * (4 + 2)
    assert set(lora_targets(layout, ("attention",))) == {k for k in targets if ".attention." in k}
    assert not any(k.startswith(("embeddings", "mlm")) for k in targets)
    lora = init_lora(layout.shapes, targets, RANK, 0)
    assert lora["layers.1.attention.out.lora_a"].shape == (32, RANK)  # heads * head_dim
    assert lora["layers.0.ffn_up.kernel.lora_b"].shape == (RANK, 64)
    bound = 1 / np.sqrt(32)
    assert np.abs(np.asarray(lora["layers.0.attention.key.lora_a"])).max() <= bound
    # Deterministic, and each path's draw does not depend on the other targets.
    again = init_lora(layout.shapes, {"layers.0.attention.key": 1}, RANK, 0)
    key = "layers.0.attention.key.lora_a"
    np.testing.assert_array_equal(again[key], lora[key])
    with pytest.raises(ValueError, match="subset"):
        lora_targets(layout, ("embeddings",))


def test_zero_b_is_exactly_the_base_model(tiny):
    _, layout, params, batch, _ = tiny
    lora = init_lora(layout.shapes, lora_targets(layout), RANK, 3)
    adapted = apply_lora(params, lora, ALPHA, RANK)
    for k, v in params.items():
        np.testing.assert_array_equal(np.asarray(adapted[k]), np.asarray(v))
    np.testing.assert_array_equal(_logits(layout, adapted, batch), _logits(layout, params, batch))


def test_merged_equals_unmerged(tiny):
    tm, layout, params, batch, config = tiny
    lora = _trained_adapter(layout, lora_targets(layout))
    merged = merge_lora({k: np.asarray(v) for k, v in params.items()}, lora, ALPHA, RANK)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in merged.values())
    got = _logits(layout, {k: jnp.asarray(v) for k, v in merged.items()}, batch)
    ref = _torch_unmerged_logits(tm, config, lora, batch)
    valid = batch[1] == 1
    np.testing.assert_allclose(got[valid], ref[valid], atol=1e-4, rtol=1e-4)
    # The adapter changes the model: the check is not comparing two copies of the base.
    assert np.abs(got - _logits(layout, params, batch))[valid].max() > 0.1
    # Applied inside a jitted forward (how the trainer uses it): the same outputs.
    inside = jax.jit(lambda p, lo: merge_model(layout, apply_lora(p, lo, ALPHA, RANK)).mlm_logits(*batch))
    np.testing.assert_allclose(np.asarray(inside(params, lora)), got, atol=1e-5)


def test_bad_rank_and_adapter(tiny):
    _, layout, params, _, _ = tiny
    targets = lora_targets(layout, ("ffn",))
    for rank in (0, -2):
        with pytest.raises(ValueError, match="rank must be a positive integer"):
            init_lora(layout.shapes, targets, rank, 0)
        with pytest.raises(ValueError, match="rank must be a positive integer"):
            apply_lora(params, {}, ALPHA, rank)
    lora = init_lora(layout.shapes, targets, RANK, 0)
    with pytest.raises(ValueError, match="at rank 2"):
        apply_lora(params, lora, ALPHA, 2)
    with pytest.raises(ValueError, match="pairs"):
        apply_lora(params, {k: v for k, v in lora.items() if k.endswith(".lora_a")}, ALPHA, RANK)
