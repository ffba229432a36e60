"""tpu_setup: exact gcloud commands for three settings, clear errors before any output, the
watch policy, the worker scripts run for real under bash (fake TPU metadata and python), and
gcloud's own argument parser accepting every command we print (when gcloud is installed)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tpu_setup import commands as C
from tpu_setup import create, data, install, launch, logs, status, teardown, watch

PROJECT = "my-project-123"
V4_32_QR = [
    "--name=sembridge-v4", f"--project={PROJECT}", "--zone=us-central2-b",
    "--accelerator_type=v4-32", "--queued", "--provisioning=spot",
]  # fmt: skip
V5E_64_VM = [
    "--name=sembridge-v5e", f"--project={PROJECT}", "--zone=us-west4-a",
    "--accelerator_type=v5e-64",
]  # fmt: skip
V4_8_VM = [
    "--name=sembridge-v4-8", f"--project={PROJECT}", "--zone=us-central2-b", "--accelerator_type=v4-8",
]  # fmt: skip
JOB = ["--config=configs/ko_splade.py", "--workdir=gs://my-bucket/runs/ko"]
SCOPE = "--scopes=https://www.googleapis.com/auth/cloud-platform"


def commands_of(main, argv, capsys) -> list[str]:
    """The command lines a script prints with --dry_run (comment lines dropped)."""
    assert main(["--dry_run", *argv]) == 0  # before any `--` (train.py arguments)
    out = capsys.readouterr().out
    return [line for line in out.splitlines() if line and not line.startswith("#")]


def ssh_prefix(name: str, zone: str) -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", name, f"--project={PROJECT}", f"--zone={zone}"]


# ------------------------------------------------------------------ exact commands


def test_v4_32_queued_spot(capsys):
    lines = commands_of(create.main, V4_32_QR, capsys)
    assert lines == [
        "gcloud compute tpus queued-resources create sembridge-v4 --project=my-project-123 "
        "--zone=us-central2-b --node-id=sembridge-v4 --accelerator-type=v4-32 "
        f"--runtime-version=tpu-ubuntu2204-base --spot {SCOPE}"
    ]
    (line,) = commands_of(teardown.main, V4_32_QR, capsys)
    assert line == (
        "gcloud compute tpus queued-resources delete sembridge-v4 --project=my-project-123 "
        "--zone=us-central2-b --force --quiet"
    )
    (line,) = commands_of(launch.main, [*V4_32_QR, *JOB, "--", "--config.batch_size=128"], capsys)
    argv = shlex.split(line)
    assert argv[:-2] == ssh_prefix("sembridge-v4", "us-central2-b")
    assert argv[-2] == "--worker=all"
    script = argv[-1].removeprefix("--command=")
    assert script == C.launch_script(
        C.RemoteLayout(),
        config="configs/ko_splade.py",
        workdir="gs://my-bucket/runs/ko",
        train_args=["--config.batch_size=128"],
        env=C.default_env("gs://my-bucket/runs/ko"),
    )
    assert (
        "env PYTHONUNBUFFERED=1 JAX_PLATFORMS=tpu SEMBRIDGE_DISTRIBUTED=1 "
        "JAX_COMPILATION_CACHE_DIR=gs://my-bucket/runs/ko/jax_cache setsid nohup bash -c "
        '\'"$HOME"/sembridge-venv/bin/python train.py --config configs/ko_splade.py '
        "--workdir gs://my-bucket/runs/ko --config.batch_size=128; "
        'echo $? > "$HOME"/sembridge-logs/exit_code\' '
        '>> "$HOME"/sembridge-logs/worker-"$W".log 2>&1 < /dev/null &'
    ) in script
    assert "training is already running" in script  # no --restart: refuse to double-launch


def test_v5e_64_tpu_vm(capsys):
    lines = commands_of(create.main, V5E_64_VM, capsys)
    assert lines == [
        "gcloud compute tpus tpu-vm create sembridge-v5e --project=my-project-123 --zone=us-west4-a "
        f"--accelerator-type=v5litepod-64 --version=v2-alpha-tpuv5-lite {SCOPE}"
    ]
    install_lines = commands_of(install.main, [*V5E_64_VM, "--repo_url=https://example.com/s.git"], capsys)
    (line,) = install_lines
    argv = shlex.split(line)
    assert argv[:-2] == ssh_prefix("sembridge-v5e", "us-west4-a") and argv[-2] == "--worker=all"
    script = argv[-1].removeprefix("--command=")
    assert 'git clone --quiet https://example.com/s.git "$HOME"/sembridge-jax' in script
    assert 'python3 -m uv venv --python 3.11 "$HOME"/sembridge-venv' in script
    assert (
        "-r requirements.txt 'jax[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
        in script
    )
    (line,) = commands_of(teardown.main, V5E_64_VM, capsys)
    assert line == (
        "gcloud compute tpus tpu-vm delete sembridge-v5e --project=my-project-123 --zone=us-west4-a --quiet"
    )


def test_v4_8_single_host(capsys):
    lines = commands_of(create.main, [*V4_8_VM, "--provisioning=reserved"], capsys)
    assert lines == [
        "gcloud compute tpus tpu-vm create sembridge-v4-8 --project=my-project-123 --zone=us-central2-b "
        f"--accelerator-type=v4-8 --version=tpu-ubuntu2204-base --reserved {SCOPE}"
    ]
    # scp mode: pack the working tree, copy it to every worker, unpack and install.
    pack, scp, ssh = commands_of(install.main, V4_8_VM, capsys)
    assert shlex.split(pack)[:2] == ["bash", "-c"] and "ls-files -z --cached --others" in pack
    assert scp == (
        "gcloud compute tpus tpu-vm scp /tmp/sembridge-jax-src.tar.gz sembridge-v4-8:sembridge-jax-src.tar.gz "
        "--project=my-project-123 --zone=us-central2-b --worker=all"
    )
    assert 'tar -xzf "$HOME"/sembridge-jax-src.tar.gz -C "$HOME"/sembridge-jax' in ssh
    (line,) = commands_of(launch.main, [*V4_8_VM, *JOB, "--restart", "--env=HF_HOME=/mnt/hf"], capsys)
    assert shlex.split(line)[:-1] == [*ssh_prefix("sembridge-v4-8", "us-central2-b"), "--worker=all"]
    assert "HF_HOME=/mnt/hf setsid nohup" in line and "kill -TERM --" in line


def test_data_logs_status(capsys, tmp_path):
    lines = commands_of(
        data.main,
        [*V4_32_QR, f"--upload={tmp_path}", "--data_src=gs://my-bucket/data/ko", "--data_dest=data/ko"],
        capsys,
    )
    assert lines[0] == f"gcloud storage rsync --recursive {tmp_path} gs://my-bucket/data/ko"
    assert lines[1].endswith(
        '\'--command=set -e; mkdir -p "$HOME"/data/ko; '
        'gcloud storage rsync --recursive gs://my-bucket/data/ko "$HOME"/data/ko\''
    )
    (mount,) = commands_of(
        data.main, [*V4_32_QR, "--data_src=gs://my-bucket/data/ko", "--data_mode=mount"], capsys
    )
    assert 'gcsfuse --implicit-dirs -o ro --only-dir data/ko my-bucket "$HOME"/data' in mount
    (follow,) = commands_of(logs.main, [*V4_32_QR, "--follow"], capsys)
    assert "--worker=0" in follow and "tail -n 50 -F" in follow
    to_gcs, download = commands_of(logs.main, [*V4_32_QR, "--collect=out", "--workdir=gs://b-1/run/"], capsys)
    assert "--worker=all" in to_gcs and "gcloud storage cp" in to_gcs
    assert download == "gcloud storage rsync --recursive gs://b-1/run/logs out"
    state, probe = commands_of(status.main, V4_32_QR, capsys)
    assert state == (
        "gcloud compute tpus queued-resources describe sembridge-v4 --project=my-project-123 "
        "--zone=us-central2-b '--format=value(state.state)'"
    )
    assert "--worker=all" in probe


def test_watch_dry_run_prints_the_recovery_plan(capsys):
    argv = [*V4_32_QR, *JOB, "--repo_url=https://example.com/s.git", "--teardown_when_done"]
    assert watch.main(["--dry_run", *argv]) == 0
    out = capsys.readouterr().out
    assert "queued-resources delete sembridge-v4" in out and "queued-resources create sembridge-v4" in out
    assert out.count("kill -TERM") == 2  # setup launch and relaunch both replace a stale job
    assert "SUSPENDED" in out


# ------------------------------------------------------------------ errors before any output


@pytest.mark.parametrize(
    "accelerator, message",
    [
        ("v4_32", "not of the form <generation>-<size>"),
        ("tpu-8", "not of the form"),
        ("v9-8", "unknown TPU generation 'v9'"),
        ("v4-12", "multiple of 8"),
        ("v5litepod-48", "must be one of 1, 4, 8, 16"),
    ],
)
def test_bad_accelerator_fails_before_printing(accelerator, message, capsys):
    argv = ["--name=t", f"--project={PROJECT}", "--zone=us-central2-b", f"--accelerator_type={accelerator}"]
    with pytest.raises(SystemExit) as exit_info:
        create.main(["--dry_run", *argv])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and "--accelerator_type" in captured.err


@pytest.mark.parametrize(
    "main, argv, message",
    [
        (create.main, ["--name=t", "--zone=us-central2-b", "--accelerator_type=v4-8"], "--project is required"),
        (create.main, ["--name=t", f"--project={PROJECT}", "--accelerator_type=v4-8"], "--zone is required"),
        (create.main, ["--name=t", f"--project={PROJECT}", "--zone=us-central2-b"], "--accelerator_type is required"),
        (create.main, [*V4_32_QR, "--provisioning=preemptible"], "only for plain TPU VMs"),
        (create.main, ["--name=Bad_Name", f"--project={PROJECT}", "--zone=us-central2-b", "--accelerator_type=v4-8"],
         "--name="),
        (launch.main, [*V4_8_VM, "--config=c.py", "--workdir=/tmp/run"], "--workdir='/tmp/run' is not a gs://"),
        (launch.main, [*V4_8_VM, *JOB, "--env=NOVALUE"], "--env='NOVALUE' is not KEY=VALUE"),
        (logs.main, [*V4_8_VM, "--collect=out"], "--collect needs --workdir"),
        (watch.main, [*V4_32_QR[:3], *JOB], "--accelerator_type is required"),
    ],
)  # fmt: skip
def test_bad_settings_fail_before_printing(main, argv, message, capsys, monkeypatch):
    monkeypatch.delenv("CLOUDSDK_CORE_PROJECT", raising=False)
    monkeypatch.delenv("CLOUDSDK_COMPUTE_ZONE", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--dry_run", *argv])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_project_and_zone_from_gcloud_environment(capsys, monkeypatch):
    monkeypatch.setenv("CLOUDSDK_CORE_PROJECT", PROJECT)
    monkeypatch.setenv("CLOUDSDK_COMPUTE_ZONE", "us-central2-b")
    (line,) = commands_of(teardown.main, ["--name=t"], capsys)
    assert line.endswith("--project=my-project-123 --zone=us-central2-b --quiet")


# ------------------------------------------------------------------ slice shapes and watch policy


@pytest.mark.parametrize(
    "accelerator, name, chips, hosts, runtime",
    [
        ("v4-8", "v4-8", 4, 1, "tpu-ubuntu2204-base"),
        ("v4-32", "v4-32", 16, 4, "tpu-ubuntu2204-base"),
        ("v5e-64", "v5litepod-64", 64, 16, "v2-alpha-tpuv5-lite"),
        ("v5litepod-8", "v5litepod-8", 8, 1, "v2-alpha-tpuv5-lite"),
        ("v5p-8", "v5p-8", 4, 1, "v2-alpha-tpuv5"),
        ("v6e-256", "v6e-256", 256, 64, "v2-alpha-tpuv6e"),
        ("v3-32", "v3-32", 16, 4, "tpu-ubuntu2204-base"),
    ],
)
def test_accelerator_shapes(accelerator, name, chips, hosts, runtime):
    acc = C.parse_accelerator(accelerator)
    assert (acc.name, acc.chips, acc.hosts, acc.runtime_version) == (name, chips, hosts, runtime)


def test_watch_policy():
    job = lambda w, s, c=None: C.WorkerJob(w, s, c, "")
    assert C.resource_health(None, queued=True) == "missing"
    assert C.resource_health("WAITING_FOR_RESOURCES", queued=True) == "pending"
    assert C.resource_health("SUSPENDED", queued=True) == "lost"
    assert C.resource_health("PREEMPTED", queued=False) == "lost"
    assert C.resource_health("READY", queued=False) == "ready"
    assert C.job_health([job(0, "exited", 0), job(1, "exited", 0)], 2) == "done"
    assert C.job_health([job(0, "running"), job(1, "running")], 2) == "running"
    assert C.job_health([job(0, "running"), job(1, "exited", 1)], 2) == "failed"
    assert C.job_health([job(0, "running")], 2) == "failed"  # a worker did not answer
    assert C.job_health([job(0, "absent"), job(1, "absent")], 2) == "absent"
    assert C.job_health([], 2) == "absent"
    assert [C.next_action(r, j) for r, j in [("missing", None), ("lost", None), ("pending", None)]] == [
        "create", "recreate", "wait",
    ]  # fmt: skip
    assert [C.next_action("ready", j) for j in ("done", "running", "absent", "failed")] == [
        "finish", "wait", "setup_and_launch", "relaunch",
    ]  # fmt: skip


# ------------------------------------------------------------------ worker scripts, run for real


def _fake_worker(tmp_path: Path, worker: int) -> dict[str, str]:
    """A $HOME with the repo dir and a venv whose `python` is a shell stub, and a `curl` that
    answers the metadata query with the worker number."""
    home = tmp_path / "home"
    (home / "sembridge-jax").mkdir(parents=True)
    (home / "sembridge-venv" / "bin").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        home
        / "sembridge-venv"
        / "bin"
        / "python": '#!/bin/bash\necho "args: $*"; echo "env: $JAX_PLATFORMS"\n'
        'sleep "${FAKE_SLEEP:-0}"; exit "${FAKE_EXIT:-0}"\n',
        bin_dir / "curl": f"#!/bin/sh\necho {worker}\n",
    }
    for path, text in stubs.items():
        path.write_text(text)
        path.chmod(0o755)
    return {**os.environ, "HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)


def _probe(env) -> list[C.WorkerJob]:
    return C.parse_probe(_bash(C.probe_script(C.RemoteLayout()), env).stdout)


def _wait_until_exited(env) -> list[C.WorkerJob]:
    for _ in range(100):
        jobs = _probe(env)
        if jobs and jobs[0].state == "exited":
            return jobs
        time.sleep(0.1)
    raise AssertionError(f"job did not finish: {jobs}")


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs util-linux setsid")
def test_launch_probe_and_restart_scripts_run(tmp_path):
    env = _fake_worker(tmp_path, worker=3)
    layout = C.RemoteLayout()
    home = Path(env["HOME"])
    assert _probe(env) == [C.WorkerJob(3, "absent", None, "")]

    run = lambda restart, **extra: _bash(
        C.launch_script(layout, config="configs/x.py", workdir="gs://b-1/r", env={"JAX_PLATFORMS": "tpu"},
                        restart=restart),
        {**env, **extra},
    )  # fmt: skip
    started = run(False)
    assert started.returncode == 0, started.stderr
    assert "worker 3: started pid" in started.stdout
    jobs = _wait_until_exited(env)
    assert jobs == [C.WorkerJob(3, "exited", 0, "env: tpu")]
    assert C.job_health(jobs, 1) == "done"
    log = (home / "sembridge-logs" / "worker-3.log").read_text()
    assert "args: train.py --config configs/x.py --workdir gs://b-1/r" in log

    # A crash is reported with its exit status: watch would relaunch.
    assert run(False, FAKE_EXIT="7").returncode == 0
    jobs = _wait_until_exited(env)
    assert (jobs[0].code, C.job_health(jobs, 1)) == (7, "failed")

    # A running job blocks a plain launch; --restart stops it and starts anew.
    assert run(False, FAKE_SLEEP="30").returncode == 0
    assert _probe(env)[0].state == "running"
    refused = run(False)
    assert refused.returncode == 1 and "already running" in refused.stderr
    old_pid = int((home / "sembridge-logs" / "train.pid").read_text())
    assert run(True, FAKE_SLEEP="0").returncode == 0
    assert int((home / "sembridge-logs" / "train.pid").read_text()) != old_pid
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
    assert _wait_until_exited(env)[0].code == 0


def test_every_worker_script_is_valid_bash():
    layout = C.RemoteLayout()
    scripts = [
        C.install_script(layout, repo_url="https://example.com/s.git"),
        C.install_script(layout, repo_url=None, torch_index=None, check=False),
        C.data_copy_script("gs://b-1/data", "data"),
        C.data_mount_script("gs://b-1", "/mnt/data"),
        C.tail_script(layout, 20, follow=True),
        C.collect_logs_script(layout, "gs://b-1/logs"),
        C.stop_script(layout),
        C.launch_script(layout, config="c.py", workdir="gs://b-1/r", restart=True),
        C.probe_script(layout),
    ]
    for script in scripts:
        result = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, (script, result.stderr)


# ------------------------------------------------------------------ gcloud accepts what we print


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud CLI not installed")
def test_gcloud_parses_every_kind_of_printed_command(tmp_path, capsys):
    """Without credentials gcloud parses the arguments first: a flag it does not know fails with
    'unrecognized arguments' (exit 2); a valid command gets as far as the missing account.
    One command of each kind (gcloud takes ~2 s of CPU to start)."""
    (tmp_path / "up").mkdir()
    printed = [
        *commands_of(create.main, V4_32_QR, capsys),  # queued-resources create --spot
        *commands_of(create.main, [*V4_8_VM, "--provisioning=preemptible"], capsys),  # tpu-vm create
        *commands_of(teardown.main, V4_32_QR, capsys),  # queued-resources delete --force
        *commands_of(status.main, V4_32_QR, capsys),  # describe --format, ssh --worker=all
        commands_of(install.main, V4_8_VM, capsys)[1],  # scp --worker=all
        commands_of(data.main, [*V4_8_VM, f"--upload={tmp_path / 'up'}", "--data_src=gs://b-1/d"], capsys)[0],
    ]
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    env.pop("CLOUDSDK_CORE_PROJECT", None)
    for line in printed:
        argv = shlex.split(line)
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert "unrecognized arguments" not in result.stderr, (argv, result.stderr)
        assert result.returncode == 1 and "active account" in result.stderr, (argv, result.stderr)


def test_watch_loop_recreates_after_preemption_then_finishes(monkeypatch):
    """A scripted sequence: ACTIVE + running -> SUSPENDED (preempted) -> ACTIVE, no job yet ->
    ACTIVE + one worker crashed -> ACTIVE + all exited 0."""
    states = iter(["ACTIVE", "SUSPENDED", "ACTIVE", "ACTIVE", "ACTIVE"])
    probes = iter([["running"] * 4, ["absent"] * 4, ["running", "exited"] + ["running"] * 2, ["exited"] * 4])
    codes = {"running": "-", "absent": "-", "exited": "0"}

    class FakeRunner:
        ran: list[str] = []

        def run(self, argv):
            self.ran.append(" ".join(argv[:5]) + (" launch" if "setsid" in argv[-1] else ""))

        def run_all(self, cmds):
            for argv in cmds:
                self.run(argv)

        def capture(self, argv):
            jobs = next(probes)
            crashed = jobs == ["running", "exited", "running", "running"]
            lines = [
                f"sembridge-job worker={i} state={s} code={'1' if crashed and s == 'exited' else codes[s]} | x"
                for i, s in enumerate(jobs)
            ]
            return subprocess.CompletedProcess(argv, 0, "\n".join(lines), "")

    monkeypatch.setattr(watch.cli, "query_state", lambda runner, spec: next(states))
    monkeypatch.setattr(watch.time, "sleep", lambda s: None)
    args = [*V4_32_QR, *JOB, "--repo_url=https://example.com/s.git", "--teardown_when_done"]
    plan = watch.build_plan(watch.cli.parse(watch.make_parser(), args))
    runner = FakeRunner()
    assert watch.watch(runner, plan, poll_seconds=0, max_relaunches=3) == 0
    assert runner.ran == [
        "gcloud compute tpus queued-resources delete",  # SUSPENDED: recreate
        "gcloud compute tpus queued-resources create",
        "gcloud compute tpus tpu-vm ssh",  # fresh node: install ...
        "gcloud compute tpus tpu-vm ssh launch",  # ... and launch
        "gcloud compute tpus tpu-vm ssh launch",  # crash on worker 1: relaunch
        "gcloud compute tpus queued-resources delete",  # all done: teardown
    ]
