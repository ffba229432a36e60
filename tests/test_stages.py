"""The adaptation stages (training/stages.py) on tiny random models (tests/stages_tiny.py): each trains,
vocab_warmup moves only vocabulary rows, a LoRA stage moves only its adapted kernels and its merged model
equals the adapted one, every stage has its own curves, kill -9 inside any stage resumes to the same bits,
and bad inputs fail before any work with a message naming the file, line or config key."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from sembridge_jax.config import default_config, load_config
from sembridge_jax.data.text import DataError
from sembridge_jax.models.lora import SUFFIX_A, SUFFIX_B, lora_targets
from sembridge_jax.models.state import merge_model, split_model
from sembridge_jax.schema import ConfigError
from sembridge_jax.training import stages, trainer
from sembridge_jax.training.checkpoint import Checkpointer
from sembridge_jax.training.monitor import STAGE_PLOTTED, read_metrics

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import stages_tiny  # noqa: E402
from train_tiny import params_of, tiny_model  # noqa: E402

DEMO = TESTS.parent / "configs" / "demo_ko.py"
NAMES = ("vocab_warmup", "mlm", "align")


def _ckpt_params(stage_dir: Path) -> dict[str, np.ndarray]:
    ckpt = Checkpointer(stage_dir, read_only=True)
    try:
        return ckpt.restore_params()
    finally:
        ckpt.close()


# ----------------------------------------------------------------------------- the chain, in process


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """vocab_warmup -> mlm (LoRA rank 4) -> align (whole model), 6 steps each: (workdir, init, final)."""
    workdir = tmp_path_factory.mktemp("chain")
    tokenizer = stages_tiny.prepare(workdir)
    init = params_of(tiny_model(len(tokenizer)))
    model, stopped = stages_tiny.run(workdir)
    assert stopped is None
    return workdir, init, params_of(model)


@pytest.mark.slow  # compiles three train steps
def test_each_stage_writes_its_curves_and_checkpoints(chain):
    workdir, _, _ = chain
    for name in NAMES:
        folder = workdir / "stages" / name
        assert [r["step"] for r in read_metrics(folder / "metrics.jsonl")] == list(range(1, 7)), name
        assert (folder / "training_curves.png").read_bytes()[:4] == b"\x89PNG", name
        assert list((folder / "tensorboard").glob("events.out.tfevents.*")), name
        ckpt = Checkpointer(folder, read_only=True)
        assert ckpt.latest_step() == 6
        ckpt.close()
    assert not (workdir / "checkpoints").exists()  # the retrieval stage's place stays free
    written = {k for name in NAMES for r in read_metrics(workdir / "stages" / name / "metrics.jsonl") for k in r}
    assert set(STAGE_PLOTTED) - {"hidden_mse"} <= written  # hidden_mse: test_each_stage_lowers_its_loss


@pytest.mark.slow
def test_vocab_warmup_changes_only_vocabulary_rows(chain):
    workdir, init, _ = chain
    after = _ckpt_params(workdir / "stages" / "vocab_warmup")
    layout, _ = split_model(tiny_model(128))
    vocab = {k for k, axes in layout.logical_axes.items() if axes and axes[0] == "vocab"}
    assert vocab and after.keys() == init.keys()
    for k in init:
        changed = not np.array_equal(after[k], init[k])
        assert changed == (k in vocab), k


@pytest.mark.slow
def test_lora_stage_changes_only_adapted_kernels_and_merge_equals_adapted(chain):
    workdir, _, _ = chain
    base = _ckpt_params(workdir / "stages" / "vocab_warmup")
    saved = _ckpt_params(workdir / "stages" / "mlm")
    lora = {k: v for k, v in saved.items() if k.endswith((SUFFIX_A, SUFFIX_B))}
    frozen = {k: v for k, v in saved.items() if k not in lora}
    layout, _ = split_model(tiny_model(128))
    targets = lora_targets(layout, ("attention", "ffn"))
    assert {k.rsplit(".", 1)[0] for k in lora} == set(targets)
    for k in base:  # the base never moved: the stage trained the adapter only
        np.testing.assert_array_equal(frozen[k], base[k], err_msg=k)
    adapter = stages.adapter_of(stages_tiny.stage_config(workdir), "mlm")
    merged = params_of(trainer.plain_model(layout, saved, adapter))
    for k in base:
        assert (not np.array_equal(merged[k], base[k])) == (k in targets), k
    # The merged plain model gives the outputs of the base model with the adapter applied on the fly.
    _, _, to_model = trainer.adapter_space(layout, adapter, seed=0)
    ids = jnp.asarray(np.random.default_rng(0).integers(5, 128, (3, 12)), jnp.int32)
    mask = jnp.ones_like(ids)
    unmerged = to_model({k: jnp.asarray(v) for k, v in saved.items()}).mlm_logits(ids, mask)
    plain = merge_model(layout, {k: jnp.asarray(v) for k, v in merged.items()}).mlm_logits(ids, mask)
    np.testing.assert_allclose(np.asarray(plain), np.asarray(unmerged), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_next_stage_starts_from_the_previous_ones_final_params(chain):
    workdir, _, final = chain
    align = _ckpt_params(workdir / "stages" / "align")
    assert align.keys() == final.keys()
    for k in final:
        np.testing.assert_array_equal(align[k], final[k], err_msg=k)
    first = read_metrics(workdir / "stages" / "align" / "metrics.jsonl")[0]
    assert first["loss"] > 0


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_gives_the_same_model(chain):
    workdir, _, final = chain
    mtime = (workdir / "stages" / "mlm" / "metrics.jsonl").stat().st_mtime_ns
    model, stopped = stages_tiny.run(workdir)
    assert stopped is None
    assert (workdir / "stages" / "mlm" / "metrics.jsonl").stat().st_mtime_ns == mtime  # not trained again
    again = params_of(model)
    for k in final:
        np.testing.assert_array_equal(again[k], final[k], err_msg=k)


@pytest.mark.slow
def test_after_stage_sees_each_stage_in_order_and_a_read_back_stage_has_no_time(chain):
    """The hook (pipeline's eval.after_stages): one call per stage, in order, with the model the next stage
    starts from; stages read back finished (this rerun) report no wall time."""
    workdir, _, final = chain
    tokenizer = stages_tiny.prepare(workdir)
    config = stages_tiny.stage_config(workdir)
    calls = []
    stages.run_stages(config, tiny_model(len(tokenizer)), workdir, stages.load_stage_inputs(config), tokenizer,
                      stages_tiny.teacher_of(tokenizer), after_stage=lambda *call: calls.append(call))
    assert [(name, seconds) for name, _, seconds in calls] == [(name, None) for name in NAMES]
    warm = params_of(calls[0][1])  # vocab_warmup trains the parameters themselves: its checkpoint is its model
    for k, v in _ckpt_params(workdir / "stages" / "vocab_warmup").items():
        np.testing.assert_array_equal(warm[k], v, err_msg=k)
    last = params_of(calls[-1][1])
    for k in final:
        np.testing.assert_array_equal(last[k], final[k], err_msg=k)


# ----------------------------------------------------------------------------- every stage learns


def _losses(workdir: Path, name: str) -> list[float]:
    return [r["loss"] for r in read_metrics(workdir / "stages" / name / "metrics.jsonl")]


@pytest.mark.slow
# (stage, settings, learning rate, relative drop of the mean loss from the first 4 steps to the last 4):
# a rank-4 adapter cannot move the vocabulary rows, so on a random model its MLM loss falls slowest.
@pytest.mark.parametrize("name,settings,lr,drop", [
    ("vocab_warmup", {}, 3e-3, 0.03),
    ("mlm", {"mlm_rank": 0}, 3e-3, 0.03),
    ("mlm", {"mlm_rank": 4}, 1e-2, 0.01),
    ("align", {"align_loss": "sparse_mse"}, 3e-3, 0.03),
    ("align", {"align_loss": "hidden_mse"}, 3e-3, 0.03),
    ("align", {"align_loss": "xling_js"}, 3e-3, 0.03),
    ("align", {"align_loss": "sparse_mse", "align_rank": 4}, 1e-2, 0.03),
], ids=["vocab_warmup", "mlm", "mlm_lora", "align_sparse_mse", "align_hidden_mse", "align_xling_js", "align_lora"])
def test_each_stage_lowers_its_loss(tmp_path, monkeypatch, name, settings, lr, drop):
    make = stages_tiny.stage_config

    def config(*args, **kwargs):
        c = make(*args, **kwargs)
        c[name].learning_rate = lr
        return c

    monkeypatch.setattr(stages_tiny, "stage_config", config)
    stages_tiny.run(tmp_path, steps=16, stages=(name,), **settings)
    losses = _losses(tmp_path, name)
    assert len(losses) == 16
    if name == "align":
        assert settings["align_loss"] in read_metrics(tmp_path / "stages" / name / "metrics.jsonl")[0]
    assert np.mean(losses[-4:]) < (1 - drop) * np.mean(losses[:4]), losses


# ----------------------------------------------------------------------------- kill -9 inside each stage


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp().parent / "jax_cache"
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
                PYTHONPATH=str(TESTS.parent))


def _cmd(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TESTS / "stages_tiny.py"), str(workdir), "--out", str(workdir / "final.npz"), *extra]


def _run(workdir: Path, env) -> str:
    proc = subprocess.run(_cmd(workdir), capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STAGES done" in proc.stdout
    return proc.stdout


def _logged(stage_dir: Path) -> int:
    path = stage_dir / "metrics.jsonl"
    return max((r["step"] for r in read_metrics(path)), default=0) if path.exists() else 0


def _saved(stage_dir: Path) -> list[int]:
    folder = stage_dir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
    workdir = tmp_path_factory.mktemp("reference")
    _run(workdir, env)
    with np.load(workdir / "final.npz") as f:
        return dict(f)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_sigkill_inside_a_stage_then_rerun_matches_uninterrupted(tmp_path, env, reference, name):
    stage_dir = tmp_path / "stages" / name
    proc = subprocess.Popen(_cmd(tmp_path, "--delay", "0.4"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.time() + 900
    while _logged(stage_dir) < 3 or not _saved(stage_dir):  # mid-stage, after its first checkpoint
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, f"the run never reached the middle of {name}"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert max(_saved(stage_dir)) < stages_tiny.STEPS
    meta = json.loads((stage_dir / "checkpoints" / str(max(_saved(stage_dir))) / "meta" / "metadata").read_text())
    assert meta["stage"] == name
    _run(tmp_path, env)
    with np.load(tmp_path / "final.npz") as f:
        final = dict(f)
    assert final.keys() == reference.keys()
    for k in final:
        np.testing.assert_array_equal(final[k], reference[k], err_msg=k)
    for other in NAMES:  # every stage's metrics once per step, across the restart
        steps = [r["step"] for r in read_metrics(tmp_path / "stages" / other / "metrics.jsonl")]
        assert steps == list(range(1, stages_tiny.STEPS + 1)), (other, steps)


# ----------------------------------------------------------------------------- bad input, before any work


def test_stages_are_off_by_default():
    c = default_config()
    assert [c[name].steps for name in NAMES] == [0, 0, 0]
    assert stages.active_stages(load_config(DEMO)) == []


@pytest.mark.parametrize("overrides,key", [
    (["--config.mlm.steps=10"], "data.text.path"),
    (["--config.vocab_warmup.steps=10"], "data.text.path"),
    (["--config.align.steps=10"], "data.parallel.path"),
    (["--config.mlm.lora_rank=-1"], "mlm.lora_rank"),
    (["--config.align.lora_rank=-2"], "align.lora_rank"),
    (["--config.mlm.steps=10", "--config.mlm.warmup_steps=20", "--config.data.text.path=configs/demo_ko.py"],
     "mlm.warmup_steps"),
    (["--config.data.text.path=/no/such/ko.txt"], "data.text.path"),
    (["--config.align.loss=kl"], "align.loss"),
])
def test_stage_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(DEMO, overrides)


@pytest.mark.parametrize("stage,key,name,content,error,match", [
    ("mlm", "data.text.path", "ko.txt", "\n  \n", DataError, "ko.txt: no text"),
    ("mlm", "data.text.path", "ko.txt", "하나\n둘\n", ValueError,
     "mlm: 2 texts are fewer than one batch of mlm.batch_size=32"),
    ("align", "data.parallel.path", "en_ko.tsv", "en\tko\nhello\t안녕\nno tab here\n", DataError,
     r"en_ko.tsv:3: expected 'english<TAB>target'"),
], ids=["empty_text", "too_few_texts", "malformed_parallel_line"])
def test_bad_stage_data_fails_before_work(tmp_path, stage, key, name, content, error, match):
    """The config is valid (the file exists); reading the stages' inputs, the pipeline's first step, fails."""
    path = tmp_path / name
    path.write_text(content)
    c = load_config(DEMO, [f"--config.{stage}.steps=10", f"--config.{key}={path}"])
    with pytest.raises(error, match=match):
        stages.load_stage_inputs(c)


def test_adapter_rank_must_be_positive(tmp_path):
    model = tiny_model(128)
    c = stages_tiny.stage_config(tmp_path)
    with pytest.raises(ValueError, match="LoRA rank must be a positive integer"):
        trainer.fit(c, model, tmp_path, data=None, adapter=trainer.Adapter(0, 8.0))
