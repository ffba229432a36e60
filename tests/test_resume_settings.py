"""Artifacts and runs keyed by their settings (training/run_settings.py), through `python train.py` on the tiny
setup: a rerun with another batch size refuses naming the key before touching config.json; the demo's own
`--config.init.alpha=20` rerun refuses, and with resume_policy=new_run rebuilds the alignment (not the
random one, which alpha does not determine) and starts over with the old steps set aside; config.json, the
alignment, the checkpoints and the export record the same settings. A NaN stop names the step to restart
from, and lowering the learning rate with checkpoint.restart_from rescues the run."""
import json
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest

from sembridge_jax.schema import settings_digest
from sembridge_jax.training.run_settings import SettingsChangedError, prepare_resume, run_settings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_train_cli import _env, setup  # noqa: E402,F401  (the tiny train.py setup fixture)


def _train(setup, workdir, env, *overrides) -> subprocess.CompletedProcess:  # noqa: F811
    return subprocess.run([sys.executable, "train.py", "--config", str(setup / "cfg.py"), "--workdir", str(workdir),
                           *overrides], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _refused(proc) -> str:
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def _saved_config(workdir: Path) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))


def _meta(workdir: Path, step: int) -> dict:
    return json.loads((workdir / "checkpoints" / str(step) / "meta" / "metadata").read_text())


@pytest.fixture(scope="module")
def finished(setup, tmp_path_factory):  # noqa: F811
    workdir = setup / "keyed_run"
    env = _env(tmp_path_factory)
    _ok(_train(setup, workdir, env))
    return workdir, env


@pytest.mark.slow
def test_changed_batch_size_refuses_naming_the_key(finished, setup):  # noqa: F811
    workdir, env = finished
    before = (workdir / "config.json").read_text()
    last = _refused(_train(setup, workdir, env, "--config.train.batch_size=4"))
    assert "train.batch_size: 8 -> 4" in last and "restart_from" in last and "resume_policy=new_run" in last, last
    assert (workdir / "config.json").read_text() == before  # config.json still tells what the workdir holds
    # settings that do not change training may change freely on resume (here: evaluation depth, logging)
    _ok(_train(setup, workdir, env, "--config.eval.k=20", "--config.train.log_every=2"))


@pytest.mark.slow
def test_alpha_rerun_refuses_then_new_run_rebuilds_the_alignment(finished, setup):  # noqa: F811
    from sembridge_jax.bridge.build import alignment_settings
    from sembridge_jax.pipeline import EXPORT_SETTINGS

    workdir, env = finished
    random_npz = workdir / "alignments" / "random" / "alignment.npz"
    random_mtime = random_npz.stat().st_mtime_ns
    old = json.loads((workdir / "alignments" / "sembridge" / "alignment.json").read_text())
    assert old["settings"]["alpha"] == 4.0

    last = _refused(_train(setup, workdir, env, "--config.init.alpha=20"))
    assert "init.alpha: 4.0 -> 20.0" in last, last

    _ok(_train(setup, workdir, env, "--config.init.alpha=20", "--config.resume_policy=new_run"))
    config = _saved_config(workdir)
    assert config.init.alpha == 20.0 and config.resume_policy == "new_run"
    new = json.loads((workdir / "alignments" / "sembridge" / "alignment.json").read_text())
    assert new["alpha"] == 20.0 and new["settings"] == alignment_settings(config, "sembridge")
    assert new["settings_hash"] == settings_digest(new["settings"]) != old["settings_hash"]
    assert random_npz.stat().st_mtime_ns == random_mtime  # alpha does not determine the random init: reused
    # the old run is set aside, not deleted; the new checkpoints and the export record config.json's settings
    assert sorted(p.name.split("-")[0] for p in (workdir / "checkpoints" / "previous").iterdir()) == ["3", "6"]
    assert _meta(workdir, 6)["settings"] == run_settings(config)
    export = json.loads((workdir / "export" / EXPORT_SETTINGS).read_text())
    assert export["settings"] == run_settings(config) and export["step"] == 6
    assert export["settings_hash"] == settings_digest(run_settings(config))


@pytest.mark.slow
def test_lowering_the_learning_rate_rescues_a_nan_run(setup, tmp_path_factory):  # noqa: F811
    workdir = setup / "nan_run"
    env = _env(tmp_path_factory)
    fast = ["--config.compare.methods=()"]
    _ok(_train(setup, workdir, env, *fast, "--config.train.num_steps=3"))
    # more steps at an absurd learning rate: NaN after step 3, which stays the newest checkpoint
    last = _refused(_train(setup, workdir, env, *fast, "--config.train.num_steps=6",
                           "--config.train.learning_rate=1e30", "--config.checkpoint.restart_from=3"))
    assert last.startswith("error: non-finite training values at step "), last
    assert "newest good checkpoint is step 3" in last and "--config.checkpoint.restart_from=3" in last, last
    assert "--config.train.learning_rate=5e+29" in last, last
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [3]
    # the suggested restart with a sane learning rate finishes
    _ok(_train(setup, workdir, env, *fast, "--config.train.num_steps=6", "--config.train.learning_rate=1e-3",
               "--config.checkpoint.restart_from=3"))
    assert json.loads((workdir / "results.json").read_text())[0]["steps"] == 6
    assert _meta(workdir, 6)["settings"]["train.learning_rate"] == 1e-3


class FakeCheckpoints:
    """The part of Checkpointer that prepare_resume uses, over a dict {step: settings}."""

    directory = Path("/w/checkpoints")

    def __init__(self, steps: dict):
        self.steps, self.moved = dict(steps), []

    def newest_settings(self):
        return (max(self.steps), self.steps[max(self.steps)]) if self.steps else None

    def all_steps(self):
        return sorted(self.steps)

    def move_aside(self, step, reason, under="corrupt"):
        self.moved.append((step, under))
        del self.steps[step]
        return self.directory / under / f"{step}-{reason}"


def _config(lr=1e-3, restart_from=None, policy="rebuild"):
    from sembridge_jax.config import default_config

    c = default_config()
    c.train.learning_rate, c.checkpoint.restart_from, c.resume_policy = lr, restart_from, policy
    return c


def test_prepare_resume_decisions():
    old = run_settings(_config())
    new = run_settings(_config(lr=5e-4))
    same = FakeCheckpoints({3: old, 6: old})
    prepare_resume(_config(), same, old)  # same settings: resume, nothing moved
    assert same.moved == []
    with pytest.raises(SettingsChangedError, match=r"train.learning_rate: 0.001 -> 0.0005.*have \[3, 6\]"):
        prepare_resume(_config(lr=5e-4), FakeCheckpoints({3: old, 6: old}), new)
    with pytest.raises(SettingsChangedError, match="no checkpoint of step 4"):
        prepare_resume(_config(lr=5e-4, restart_from=4), FakeCheckpoints({3: old, 6: old}), new)
    ckpts = FakeCheckpoints({3: old, 6: old})
    prepare_resume(_config(lr=5e-4, restart_from=3), ckpts, new)
    assert ckpts.moved == [(6, "previous")] and ckpts.all_steps() == [3]
    ckpts.steps[6] = new  # the restarted run saved step 6 with the new settings: the same command resumes it
    prepare_resume(_config(lr=5e-4, restart_from=3), ckpts, new)
    assert ckpts.all_steps() == [3, 6]
    fresh = FakeCheckpoints({3: old, 6: old})
    prepare_resume(_config(lr=5e-4, policy="new_run"), fresh, new)
    assert fresh.all_steps() == [] and {u for _, u in fresh.moved} == {"previous"}
    # keys that cannot change what is trained are not part of the run's settings
    free = _config()
    free.eval.k, free.train.log_every, free.checkpoint.keep = 7, 3, 5
    assert run_settings(free) == old


def test_a_stale_artifact_is_rebuilt_or_refused(caplog):
    from sembridge_jax.training.run_settings import artifact_is_current

    old, new = {"alpha": 4.0, "seed": 0}, {"alpha": 20.0, "seed": 0}
    assert artifact_is_current("alignment A", old, dict(old), "refuse")
    assert not artifact_is_current("alignment A", old, new, "rebuild")
    assert "alignment A was built with other settings (alpha: 4.0 -> 20.0): rebuilding it" in caplog.text
    assert not artifact_is_current("alignment A", None, new, "new_run")  # recorded nothing: never trusted
    with pytest.raises(SettingsChangedError, match=r"alignment A .*alpha: 4.0 -> 20.0.*resume_policy='refuse'"):
        artifact_is_current("alignment A", old, new, "refuse")
