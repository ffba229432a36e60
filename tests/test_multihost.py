"""Multi-host correctness on one machine: several local CPU processes, each with simulated devices,
joined by ``jax.distributed`` (gloo collectives) through ``training/distributed.py``.

Every worker runs in its own process group under a deadline; a hung worker is killed with its group
and the test fails with the workers' logs.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gcs_emulator import free_port

from sembridge_jax.training.distributed import (
    DistributedPlan,
    barrier,
    initialise_distributed,
    plan_distributed,
    run_on_main_process,
)

REPO = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).resolve().parent / "multihost"


def worker_env(processes: int, devices: int, **extra: str) -> dict[str, str]:
    """The environment of ``processes`` workers with ``devices`` simulated CPU devices each (one process:
    no coordinator, as a user's single-host run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEMBRIDGE_", "JAX_COORDINATOR"))}
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        **extra,
    )
    if processes > 1:
        env.update(SEMBRIDGE_COORDINATOR=f"localhost:{free_port()}", SEMBRIDGE_NUM_PROCESSES=str(processes))
    return env


@contextlib.contextmanager
def workers(script: str, args: list[str], *, processes: int, devices: int, logs: Path, **extra_env: str):
    """Start ``processes`` copies of ``tests/multihost/<script>``, each in its own process group with its
    output in ``logs/<script>-<i>.log``; on leaving, any still running dies with its whole group."""
    env = worker_env(processes, devices, **extra_env)
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        procs = []
        try:
            for i in range(processes):
                log = stack.enter_context(open(logs / f"{Path(script).stem}-{i}.log", "w"))
                procs.append(subprocess.Popen(
                    [sys.executable, str(WORKERS / script), *args],
                    env={**env, "SEMBRIDGE_PROCESS_ID": str(i)} if processes > 1 else env,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
                ))
            yield procs
        finally:
            for p in procs:  # a hung or orphaned worker dies with its whole process group
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


def wait_all(procs, deadline: float) -> bool:
    """Wait until every worker exits or ``deadline`` (monotonic) passes; once one fails, the others get
    10 s (they would wait for it until their own timeouts). Returns whether all exited in time."""
    while any(p.poll() is None for p in procs):
        if any(p.poll() for p in procs):
            deadline = min(deadline, time.monotonic() + 10)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def worker_logs(script: str, logs: Path, codes) -> str:
    return "\n".join(f"--- process {i} (exit {c}) ---\n" + _tail(logs / f"{Path(script).stem}-{i}.log")
                     for i, c in enumerate(codes))


def launch(script: str, args: list[str], *, processes: int, devices: int, logs: Path, timeout_s: float = 150,
           expect: int = 0, **extra_env: str) -> None:
    """Run the workers (see ``workers``) and fail with their logs unless all exit with ``expect`` in time."""
    with workers(script, args, processes=processes, devices=devices, logs=logs, **extra_env) as procs:
        in_time = wait_all(procs, time.monotonic() + timeout_s)
    codes = [p.returncode for p in procs]
    if not in_time or any(c != expect for c in codes):
        pytest.fail(f"{script} x{processes}: {'timed out' if not in_time else 'failed'}\n"
                    f"{worker_logs(script, logs, codes)}")


def _tail(path: Path, lines: int = 40) -> str:
    kept = [s for s in path.read_text().splitlines() if not s.startswith("[Gloo]")]
    return "\n".join(kept[-lines:])


# ---- the decision, single process ------------------------------------------------------------

def test_plan_single_by_default():
    assert plan_distributed({}, cloud_tpu_vm=False) == DistributedPlan("single")


def test_plan_explicit_from_env():
    env = {"SEMBRIDGE_COORDINATOR": "10.0.0.1:1234", "SEMBRIDGE_NUM_PROCESSES": "4", "SEMBRIDGE_PROCESS_ID": "3"}
    assert plan_distributed(env, cloud_tpu_vm=True) == DistributedPlan("explicit", "10.0.0.1:1234", 4, 3)


def test_plan_auto_for_launchers_jax_detects():
    for env in ({"TPU_WORKER_HOSTNAMES": "h0,h1"}, {"SLURM_NTASKS": "8"}, {"OMPI_COMM_WORLD_SIZE": "2"},
                {"JAX_COORDINATOR_ADDRESS": "h0:1"}, {"SEMBRIDGE_DISTRIBUTED": "1"}):
        assert plan_distributed(env, cloud_tpu_vm=False).mode == "auto", env
    assert plan_distributed({}, cloud_tpu_vm=True).mode == "auto"
    assert plan_distributed({"SEMBRIDGE_DISTRIBUTED": "0"}, cloud_tpu_vm=True).mode == "single"
    assert plan_distributed({"TPU_WORKER_HOSTNAMES": "h0", "SLURM_NTASKS": "1"}, cloud_tpu_vm=False).mode == "single"


@pytest.mark.parametrize("env, match", [
    ({"SEMBRIDGE_COORDINATOR": "h:1", "SEMBRIDGE_PROCESS_ID": "0"}, "SEMBRIDGE_NUM_PROCESSES must be set"),
    ({"SEMBRIDGE_COORDINATOR": "h:1", "SEMBRIDGE_NUM_PROCESSES": "two", "SEMBRIDGE_PROCESS_ID": "0"},
     "SEMBRIDGE_NUM_PROCESSES='two' is not an integer"),
    ({"SEMBRIDGE_COORDINATOR": "h:1", "SEMBRIDGE_NUM_PROCESSES": "2", "SEMBRIDGE_PROCESS_ID": "2"},
     r"SEMBRIDGE_PROCESS_ID=2 must lie in \[0, SEMBRIDGE_NUM_PROCESSES=2\)"),
    ({"SEMBRIDGE_COORDINATOR": "h", "SEMBRIDGE_NUM_PROCESSES": "2", "SEMBRIDGE_PROCESS_ID": "0"}, "host:port"),
    ({"SEMBRIDGE_DISTRIBUTED": "yes"}, "SEMBRIDGE_DISTRIBUTED='yes'"),
])
def test_plan_rejects_bad_settings(env, match):
    with pytest.raises(ValueError, match=match):
        plan_distributed(env, cloud_tpu_vm=False)


def test_initialise_single_process_is_idempotent():
    plan = initialise_distributed({"SEMBRIDGE_DISTRIBUTED": "0"})
    assert plan == DistributedPlan("single") and initialise_distributed() is plan
    barrier("noop")  # one process: returns at once


def test_run_on_main_process_single(tmp_path):
    calls = []

    def build(path):
        calls.append(path)
        path.write_text("rows")

    out = tmp_path / "cache" / "alignment.txt"
    assert run_on_main_process(build, out, load_fn=lambda p: p.read_text()) == "rows"
    assert run_on_main_process(build, out) == out and len(calls) == 1  # reused
    run_on_main_process(build, out, reuse=False)
    assert len(calls) == 2 and not list(out.parent.glob(".*tmp*"))  # built in a temp path, renamed

    def broken(path):
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_on_main_process(broken, tmp_path / "broken.txt")
    assert not (tmp_path / "broken.txt").exists()
    with pytest.raises(FileNotFoundError, match="without writing its artifact"):
        run_on_main_process(lambda p: None, tmp_path / "never.txt")


# ---- several processes ------------------------------------------------------------------------

@pytest.mark.slow
def test_run_on_main_process_two_processes(tmp_path):
    """Built once by process 0; the build outlasts the 30 s that CPU (gloo) collectives wait for a
    late process, so a device barrier would fail here; errors reach every process."""
    launch("distributed_worker.py", [str(tmp_path), "32"], processes=2, devices=2, logs=tmp_path / "logs",
           timeout_s=150)
    assert (tmp_path / "builds.txt").read_text() == "process 0\n"  # built once, by process 0, not rebuilt
    for i in range(2):
        r = json.loads((tmp_path / f"result-{i}.json").read_text())
        assert r["plan"] == ["explicit", 2, i] and r["idempotent"]
        assert r["process_count"] == 2 and r["devices"] == 4
        assert r["first"] == r["second"] == {"built_by": 0, "rows": [1, 2, 3]}
        expected = "OSError: disk full (simulated)" if i == 0 else "RuntimeError: process 0 failed to build"
        assert r["failure"].startswith(expected), r["failure"]
        assert r["gathered"] == [0, 1]


# ---- the real pipeline: bridge precompute + trainer.fit over 8 devices, in 1, 2 and 4 processes --------

STEPS, RESUME_AT = 6, 4
CLI_STEPS = 8
CLI_CONFIG = f'''"""train.py on the multi-host test setup (tests/test_multihost.py): tiny BERT, jax bridge, BEIR dev set."""
from pathlib import Path

from sembridge_jax.config import default_config

SETUP = Path(__file__).parent


def get_config():
    c = default_config()
    c.workdir = str(SETUP / "work")  # the tests pass --workdir
    c.source = c.bridge.model = str(SETUP / "source")
    c.target_tokenizer = str(SETUP / "target")
    c.bridge.backend = "jax"
    c.bridge.cache_dir = str(SETUP / "bridge_cache")
    c.model.max_query_length, c.model.max_doc_length, c.model.splade_chunk_size = 8, 16, 8
    c.data.train.type, c.data.train.path = "jsonl", str(SETUP / "train.jsonl")
    c.data.dev.beir = c.eval.beir = str(SETUP / "beir")
    c.loss.preset, c.loss.lambda_q, c.loss.lambda_d, c.loss.flops_warmup_steps = "none", 1e-3, 1e-3, 0
    c.train.num_steps, c.train.batch_size, c.train.learning_rate = {CLI_STEPS}, 8, 1e-3
    c.train.warmup_steps, c.train.log_every, c.train.eval_every = 0, 1, 2
    c.checkpoint.every_steps, c.checkpoint.keep = 3, 3
    c.mesh.axes = (("data", -1), ("fsdp", 2))  # parameters split over fsdp, batch over data x fsdp
    c.mesh.rules = (("vocab", "fsdp"), ("mlp", "fsdp"))
    c.eval.k, c.eval.metrics = 10, ("nDCG@10", "R@10")
    c.init.method = "sembridge"  # pinned: these tests name its alignment and rows
    c.compare.methods = ()
    return c
'''


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory, worker_id) -> Path:
    """A folder all pytest-xdist workers of this session share (the session's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def make_setup(root: Path) -> None:
    """A tiny source BERT (also the bridge), a target tokenizer that permutes and extends the source
    vocabulary (copies + new tokens that need bridge weights), lexical-match training data, a BEIR dev
    set and the train.py config (``CLI_CONFIG``)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    sys.path.insert(0, str(REPO / "tests"))
    from train_tiny import NUM_WORDS, SPECIALS, tiny_beir, tiny_dataset

    words = [f"w{i}" for i in range(NUM_WORDS)]
    vocabs = {"source": SPECIALS + words,
              "target": SPECIALS + words[::-1] + ["z0", "z1", "z2", "##s", "w1w2"]}
    for name, vocab in vocabs.items():
        (root / name).mkdir(parents=True)
        # transformers 5: BertTokenizerFast(vocab_file=...) keeps only the special tokens; build from the dict.
        BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(root / name)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocabs["source"]), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32)
    BertForMaskedLM(cfg).save_pretrained(root / "source")
    tiny_beir(root / "beir")  # the train.py runs' dev and held-out evaluations
    (root / "cli_config.py").write_text(CLI_CONFIG)
    tiny_dataset(root / "train.jsonl")  # written last: the marker of a finished setup


def train(setup: Path, workdir: str | Path, out: Path, *, processes: int, devices: int, resume_at: int = 0) -> None:
    args = [str(setup), str(workdir), "--out", str(out), "--steps", str(STEPS)]
    args += ["--resume-at", str(resume_at)] if resume_at else []
    launch("train_worker.py", args, processes=processes, devices=devices, logs=out / "logs", timeout_s=300)


def outcome(workdir: str | Path, out: Path) -> dict:
    """What a finished run left: result.json, the build log, losses per step, final parameters."""
    from sembridge_jax.storage import as_path
    from sembridge_jax.training.monitor import read_metrics

    workdir = as_path(workdir)
    metrics = {r["step"]: r for r in read_metrics(workdir / "metrics.jsonl")}
    return {
        "result": json.loads((out / "result.json").read_text()),
        "builds": (out / "builds.txt").read_text().splitlines(),
        "losses": [metrics[s]["loss"] for s in range(1, STEPS + 1)],
        "params": dict(np.load(out / "params.npz")),
        "checkpoints": sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()),
    }


@pytest.fixture(scope="session")
def setup_dir(shared_dir) -> Path:
    """The setup folder (``make_setup``), made once per session under a lock by whichever xdist worker asks first."""
    from filelock import FileLock

    setup = shared_dir / "multihost" / "setup"
    with FileLock(str(shared_dir / "multihost-setup.lock")):
        if not (setup / "train.jsonl").is_file():
            make_setup(setup)
    return setup


@pytest.fixture(scope="session")
def reference(shared_dir, setup_dir) -> tuple[Path, dict]:
    """The setup folder and a run of one process with 8 devices, 6 uninterrupted steps (made once
    per session, under a lock, whichever xdist worker asks first)."""
    from filelock import FileLock

    setup, workdir = setup_dir, shared_dir / "multihost" / "single"
    with FileLock(str(shared_dir / "multihost.lock")):
        if not (workdir / "result.json").is_file():
            train(setup, workdir, workdir, processes=1, devices=8)
    run = outcome(workdir, workdir)
    assert run["result"]["plan"] == ["single", 1] and run["result"]["devices"] == 8
    assert run["builds"] == ["process 0 of 1"]
    return setup, run


@pytest.mark.slow
@pytest.mark.parametrize("processes, resume_at, storage", [(2, RESUME_AT, "gcs"), (4, 0, "local")])
def test_multiprocess_training_matches_single_process(reference, tmp_path, request, processes, resume_at, storage):
    """N processes x 8/N devices: bridge built once on process 0, same losses and parameters as
    1 process x 8 devices. With 2 processes the run restores its step-4 checkpoint onto a randomly
    initialised model half-way; the 4-process checkpoint is restored here, in 1 process on 1 device.
    The 2-process run has a pod's layout: its workdir (alignment, the Orbax checkpoints both
    processes write, metrics) is in a gs:// bucket (a local GCS server); the 4 processes share a
    local disk (the shared-disk path: NFS, a gcsfuse mount)."""
    from sembridge_jax.training.checkpoint import Checkpointer

    setup, single = reference
    workdir = request.getfixturevalue("gcs").path(f"multihost-{processes}") if storage == "gcs" else tmp_path
    train(setup, workdir, tmp_path, processes=processes, devices=8 // processes, resume_at=resume_at)
    run = outcome(workdir, tmp_path)
    assert run["result"] == dict(single["result"], plan=["explicit", processes])
    assert run["result"]["mesh"] == {"data": 4, "fsdp": 2} and run["result"]["step"] == STEPS
    assert run["builds"] == [f"process 0 of {processes}"]  # the precompute ran once, on process 0
    assert run["checkpoints"][-1] == STEPS and (not resume_at or resume_at in run["checkpoints"])
    assert np.isfinite(single["losses"]).all() and single["losses"][-1] < single["losses"][0]
    np.testing.assert_allclose(run["losses"], single["losses"], rtol=1e-5, atol=1e-5)
    ckpt = Checkpointer(workdir, every_steps=1, keep=10, async_save=False)
    try:
        restored = ckpt.restore_params(STEPS)
    finally:
        ckpt.close()
    assert run["params"].keys() == single["params"].keys() == restored.keys()
    for k, ref in single["params"].items():
        np.testing.assert_allclose(run["params"][k], ref, rtol=1e-5, atol=1e-5, err_msg=k)
        np.testing.assert_array_equal(restored[k], run["params"][k], err_msg=k)


# ---- train.py itself: 2 processes x 2 devices, dev evaluation, export, SIGTERM to one process, resume -------

def train_py(setup: Path, workdir: Path, logs: Path, *, processes: int, devices: int, expect: int = 0,
             **env: str) -> None:
    launch("train_cli.py", ["--config", str(setup / "cli_config.py"), "--workdir", str(workdir)],
           processes=processes, devices=devices, logs=logs, timeout_s=300, expect=expect, **env)


def job_outcome(workdir: Path) -> dict:
    """What a finished train.py run left: its table, per-step losses, dev metrics and exported weights."""
    from safetensors.numpy import load_file

    from sembridge_jax.training.monitor import read_metrics

    records = read_metrics(workdir / "metrics.jsonl")
    return {
        "rows": json.loads((workdir / "results.json").read_text()),
        "losses": {r["step"]: r["loss"] for r in records if "loss" in r},
        "dev": {r["step"]: r["dev/nDCG@10"] for r in records if "dev/nDCG@10" in r},
        "export": load_file(workdir / "export" / "model.safetensors"),
    }


def assert_same_job(run: dict, ref: dict) -> None:
    assert [r["method"] for r in run["rows"]] == [r["method"] for r in ref["rows"]] == ["sembridge"]
    for got, want in zip(run["rows"], ref["rows"], strict=True):
        assert got.keys() == want.keys()
        for k, v in want.items():
            if isinstance(v, float):
                assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
            else:
                assert got[k] == v, k
    assert sorted(run["losses"]) == list(range(1, CLI_STEPS + 1))  # no step lost or repeated by the restart
    np.testing.assert_allclose([run["losses"][s] for s in sorted(ref["losses"])],
                               [ref["losses"][s] for s in sorted(ref["losses"])], rtol=1e-5, atol=1e-5)
    assert run["dev"].keys() == ref["dev"].keys() == {2, 4, 6, 8}
    np.testing.assert_allclose([run["dev"][s] for s in ref["dev"]], list(ref["dev"].values()), atol=1e-6)
    assert run["export"].keys() == ref["export"].keys()
    for k, v in ref["export"].items():
        np.testing.assert_allclose(run["export"][k], v, rtol=1e-5, atol=1e-5, err_msg=k)


@pytest.fixture(scope="session")
def cli_reference(shared_dir, setup_dir) -> dict:
    """train.py in one process with 4 devices (the same 2 x 2 mesh), uninterrupted; made once per session."""
    from filelock import FileLock

    workdir = shared_dir / "multihost" / "cli-single"
    with FileLock(str(shared_dir / "multihost-cli.lock")):
        if not (workdir / "results.json").is_file():
            train_py(setup_dir, workdir, workdir.parent / "cli-single-logs", processes=1, devices=4)
    return job_outcome(workdir)


@pytest.mark.slow
def test_train_py_two_processes_sigterm_to_one_then_resume(setup_dir, cli_reference, tmp_path):
    """The whole job of train.py on 2 processes x 2 devices: zero-shot and periodic dev evaluations and the
    export gather the sharded parameters on every process. A SIGTERM to process 1 alone stops BOTH at the
    same step (jax's preemption sync) with a checkpoint and exit status 75; the same command again resumes
    there and ends with the table, curves and exported weights of the uninterrupted 1-process run."""
    workdir, logs = tmp_path / "work", tmp_path / "logs"
    args = ["--config", str(setup_dir / "cli_config.py"), "--workdir", str(workdir)]
    with workers("train_cli.py", args, processes=2, devices=2, logs=logs, SEMBRIDGE_TEST_BATCH_DELAY="1") as procs:
        deadline = time.monotonic() + 240
        log1 = logs / "train_cli-1.log"
        while "batch 2\n" not in log1.read_text() and time.monotonic() < deadline and procs[1].poll() is None:
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGTERM)  # this process only, not its group nor process 0
        in_time = wait_all(procs, deadline)
    codes = [p.returncode for p in procs]
    assert in_time and codes == [75, 75], worker_logs("train_cli.py", logs, codes)
    stops = {int(re.search(r"preempted during 'sembridge' at step (\d+)", (logs / f"train_cli-{i}.log").read_text())
                 .group(1)) for i in range(2)}
    assert len(stops) == 1, stops  # both processes stopped at the same step ...
    stop = stops.pop()
    assert 1 <= stop < CLI_STEPS  # mid-run (batches are prefetched: 'batch 2' can precede step 1's end)
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved[-1] == stop  # ... and saved it together
    assert not (workdir / "results.json").exists() and not (workdir / "export").exists()

    train_py(setup_dir, workdir, tmp_path / "logs-resumed", processes=2, devices=2)
    for i in range(2):
        assert re.search(rf"resumed from \S+ step {stop}\b", (tmp_path / "logs-resumed" / f"train_cli-{i}.log").read_text())
    assert_same_job(job_outcome(workdir), cli_reference)
