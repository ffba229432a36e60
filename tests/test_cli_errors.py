"""Every command line reports an error as one line `error: ...` with exit status 1 (the traceback only with
--debug or SEMBRIDGE_DEBUG=1), documents its exit codes in --help, and names a full disk as the last line."""
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sembridge_jax.cli import EXIT_CODES, error_line, run_cli

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from train_tiny import tiny_beir  # noqa: E402


def _run(args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", **env))


def _one_error_line(proc, *fragments):
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-3000:]
    for f in fragments:
        assert f in last, last
    return last


@pytest.mark.slow
def test_train_py_config_error_is_one_line_and_debug_shows_the_traceback():
    args = ["train.py", "--config", "configs/demo_ko.py", "--config.train.learnig_rate=1e-3"]
    _one_error_line(_run(args), "unknown config key 'train.learnig_rate'", "train.learning_rate")
    for proc in (_run([*args, "--debug"]), _run(args, SEMBRIDGE_DEBUG="1")):
        assert proc.returncode == 1 and "Traceback" in proc.stderr
        assert "unknown config key" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_help_documents_the_exit_codes():
    for args in (["train.py"], ["evaluate.py"], ["-m", "sembridge_jax.bridge"], ["-m", "sembridge_jax.export"]):
        proc = _run([*args, "--help"])
        assert proc.returncode == 0, proc.stderr
        text = " ".join(proc.stdout.split())
        assert "0 done" in text and "75 preempted" in text and "--debug" in text, (args, proc.stdout[-800:])


def test_missing_files_are_one_line(tmp_path):
    _one_error_line(_run(["-m", "sembridge_jax.bridge", "show", "--alignment", str(tmp_path / "nope")]), "nope")
    _one_error_line(_run(["-m", "sembridge_jax.export", "--checkpoint", str(tmp_path / "nope"),
                          "--out", str(tmp_path / "out")]), "nope")


def test_disk_full_is_the_last_line(tmp_path):
    """evaluate.py writing its report onto a full device (/dev/full): the cause is the last line."""
    beir = tiny_beir(tmp_path / "beir")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink("/dev/full", out / "results.json")
    proc = _run(["evaluate.py", "--bm25", "--beir", str(beir), "--out", str(out), "--measures", "nDCG@10"])
    _one_error_line(proc, "disk full", "rerun the same command")


def test_error_line_finds_a_buried_disk_full_and_names_unexpected_errors():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/w/checkpoints/9/state")
        except OSError as inner:
            raise RuntimeError("async save failed") from inner
    except RuntimeError as e:
        line = error_line(e)
    assert line.startswith("error: disk full writing /w/checkpoints/9/state")
    assert error_line(TypeError("bad")) == "error: TypeError: bad (rerun with --debug for the traceback)"
    assert error_line(FileNotFoundError("no file x")) == "error: no file x"

    def boom(argv):
        raise ValueError(f"bad value in {argv}")

    assert run_cli(boom, ["--debug", "a"]) == 1
    assert run_cli(lambda argv: None, []) == 0 and run_cli(lambda argv: 75, []) == 75
    assert "75 preempted" in EXIT_CODES


def test_keep_freed_memory_applies_on_glibc_only():
    import platform

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    # in a child process: the settings hold for the rest of a process's life
    out = subprocess.run([sys.executable, "-c", "from sembridge_jax.cli import keep_freed_memory as k; print(k())"],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1]).stdout
    assert out.strip() == str(glibc)  # each mallopt accepted where glibc runs, a no-op elsewhere
