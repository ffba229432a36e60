"""Mesh + logical-axis rules, and a sharded train step equal to the single-device one."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from sembridge_jax.training import sharding

TESTS = Path(__file__).resolve().parent


def test_mesh_shape_resolves_the_rest():
    assert sharding.mesh_shape((("data", -1), ("fsdp", 2)), 8) == {"data": 4, "fsdp": 2}
    assert sharding.mesh_shape({"data": 2, "fsdp": 2, "tensor": 2}, 8) == {"data": 2, "fsdp": 2, "tensor": 2}
    with pytest.raises(ValueError, match="not divisible"):
        sharding.mesh_shape({"data": -1, "fsdp": 3}, 8)
    with pytest.raises(ValueError, match="needs 4 devices"):
        sharding.mesh_shape({"data": 2, "fsdp": 2}, 8)


def test_logical_to_spec_rules():
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "fsdp"))
    # size-1 mesh axes never split anything
    assert sharding.logical_to_spec(("vocab", "embed"), (10, 4), [("vocab", "fsdp")], mesh) == P(None, None)
    abstract = jax.sharding.AbstractMesh((2, 4), ("data", "fsdp"))
    rules = [("vocab", "fsdp"), ("embed", None), ("mlp", ("data", "fsdp")), ("heads", "fsdp")]
    assert sharding.logical_to_spec(("vocab", "embed"), (12, 4), rules, abstract) == P("fsdp", None)
    assert sharding.logical_to_spec(("vocab",), (10,), rules, abstract) == P(None)  # 10 % 4 != 0: replicate
    assert sharding.logical_to_spec(("embed", "mlp"), (4, 16), rules, abstract) == P(None, ("data", "fsdp"))
    assert sharding.logical_to_spec(("vocab", "heads"), (8, 8), rules, abstract) == P("fsdp", None)  # used once
    assert sharding.logical_to_spec(None, (3,), rules, abstract) == P()
    with pytest.raises(ValueError, match="not a mesh axis"):
        sharding.logical_to_spec(("vocab",), (8,), [("vocab", "model")], abstract)


def test_optimizer_state_follows_its_parameter():
    import optax

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("fsdp",))
    params = {"w": jax.ShapeDtypeStruct((4, 2), np.float32), "b": jax.ShapeDtypeStruct((2,), np.float32)}
    sh = {"w": jax.sharding.NamedSharding(mesh, P("fsdp", None)), "b": sharding.replicated(mesh)}
    opt = jax.eval_shape(optax.adamw(1e-3).init, params)
    out = sharding.like_params(opt, sh, {"w": (4, 2), "b": (2,)}, mesh)
    assert out[0].mu["w"] == sh["w"] and out[0].nu["w"] == sh["w"]
    assert out[0].count.spec == P()


# One train step of the tiny model on a 1-device mesh and on a data=4 x fsdp=2 mesh of 8 simulated
# CPU devices; the device count is fixed at jax start-up, hence the subprocess.
_SHARDED_STEP = r"""
import json, sys
from pathlib import Path
import jax, numpy as np, optax
sys.path.insert(0, sys.argv[1])
from train_tiny import tiny_config, tiny_dataset, tiny_model, tiny_tokenizer
from sembridge_jax.models.state import split_model
from sembridge_jax.training import losses, optim, sharding, trainer
from sembridge_jax.training.batches import TrainData

work = Path(sys.argv[2])
tok = tiny_tokenizer(work / "tok")
config = tiny_config(work, tiny_dataset(work / "train.jsonl"), steps=2)
config.train.batch_size = 16
batch = TrainData(config, tok, process_index=0, process_count=1).next_batch()
layout, params = split_model(tiny_model(len(tok)))
tx, _ = optim.make_optimizer(config.train, layout.shapes, layout.logical_axes)
objective = trainer.splade_objective(losses.loss_settings(config))
rules = (("vocab", "fsdp"), ("mlp", "fsdp"), ("embed", None))
out = {}
for name, devices, axes in (("one", jax.devices()[:1], (("data", -1), ("fsdp", 1))),
                            ("eight", jax.devices(), (("data", -1), ("fsdp", 2)))):
    mesh = sharding.make_mesh(axes, devices)
    step = trainer.build_sharded_step(layout, tx, objective, mesh, rules)
    state = trainer.init_state(params, tx, step.state_sharding)
    state, metrics = step.step(state, step.put_batch(batch))
    out[name] = (state, metrics, mesh)
(s1, m1, _), (s8, m8, mesh8) = out["one"], out["eight"]
diff = max(float(np.max(np.abs(np.asarray(s1["params"][k]) - np.asarray(s8["params"][k])))) for k in s1["params"])
moved = max(float(np.max(np.abs(np.asarray(s1["params"][k]) - np.asarray(params[k])))) for k in params)
print(json.dumps({
    "devices": jax.device_count(), "mesh": dict(mesh8.shape),
    "loss": [float(m1["loss"]), float(m8["loss"])], "param_diff": diff, "moved": moved,
    "word_spec": str(s8["params"]["embeddings.word"].sharding.spec),
    "word_shards": len(s8["params"]["embeddings.word"].addressable_shards),
    "mu_spec": str(optax.tree_utils.tree_get(s8["opt"], "mu")["embeddings.word"].sharding.spec),
}))
"""


@pytest.mark.slow
def test_sharded_step_matches_single_device(tmp_path, jax_cache_env):
    env = dict(jax_cache_env, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run([sys.executable, "-c", _SHARDED_STEP, str(TESTS), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["devices"] == 8 and r["mesh"] == {"data": 4, "fsdp": 2}
    assert r["word_spec"] == str(P("fsdp", None)) and r["mu_spec"] == r["word_spec"]
    assert r["moved"] > 1e-4  # the step did update the parameters
    np.testing.assert_allclose(r["loss"][0], r["loss"][1], rtol=1e-5, atol=1e-5)
    assert r["param_diff"] < 1e-5


@pytest.fixture
def jax_cache_env(tmp_path_factory):
    """Environment for jax subprocesses: CPU, a shared persistent compilation cache."""
    cache = tmp_path_factory.getbasetemp().parent / "jax_cache"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env
