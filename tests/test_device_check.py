"""benchmarks/device_check.sh, the prepared accelerator check, runs end to end on CPU at tiny sizes
(--smoke): every section succeeds, the JSON and the markdown table are written, and the analytic FLOP
count of the train step and of encoding agrees with XLA's cost analysis of the compiled programs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # five subprocesses that import jax and compile
def test_device_check_smoke_run_writes_json_and_table(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "device_check.sh"), str(tmp_path), "--smoke",
                           "--peak-tflops", "1"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "device_check.json").read_text())
    sections = report["sections"]
    assert [(s["section"], s.get("batch")) for s in sections] == [
        ("env", None), ("train", 4), ("train", 8), ("encode", 8), ("bridge", None)]
    assert all(s["status"] == "ok" for s in sections), [(s["section"], s.get("error")) for s in sections]
    assert report["env"]["platform"] == "cpu" and report["env"]["matmul_tflops"] > 0
    for s in sections[1:4]:
        assert s["examples_per_s"] > 0 and s["step_s"] > 0
        # XLA also counts normalisations, activations and the optimiser: a little above the matmuls
        assert 0.8 < s["flops_analytic"] / s["flops_xla"] <= 1.0, s
        assert 0 < s["mfu_analytic"] < s["mfu_xla"]
    for s in sections[1:3]:
        assert s["tokens_per_s"] == pytest.approx(s["examples_per_s"] * (s["query_len"] + s["doc_len"]))
        assert s["last_loss"] == s["last_loss"]  # finite training, not NaN
    bridge = sections[4]
    assert bridge["rows_summing_to_one"] and bridge["nnz_per_row"] >= 1
    table = (tmp_path / "device_check.md").read_text()
    assert table.count("| ok |") == 5 and "MFU (analytic)" in table
    assert (tmp_path / "device_check.log").read_text().rstrip().endswith("exit 0")


def test_a_section_out_of_time_is_killed_and_recorded(tmp_path):
    """A 3-second budget for the train sections alone: the first is killed at its limit (import and compile take
    longer), the second is skipped, and the report is still written."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "device_check.py"), "--out", str(tmp_path),
                           "--smoke", "--budget", "3", "--only", "train"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = json.loads((tmp_path / "device_check.json").read_text())["sections"]
    assert first["status"].startswith("timeout") and second["status"].startswith("skipped"), (first, second)
    assert first["wall_s"] < 30
    assert "| timeout after" in (tmp_path / "device_check.md").read_text()
