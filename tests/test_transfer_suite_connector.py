"""The connector route's recipe row of benchmarks/transfer_suite.py (benchmarks/recipe_rows.py) on the tiny
connector job of tests/test_connector_job.py: a table row per stage with the job's own scores (target ->
target, the cross-lingual view as a column) and the stage's wall time; a rerun reads the stages back."""
import json

import pytest

from benchmarks import recipe_rows
from benchmarks import transfer_suite as ts
from sembridge_jax.connector import STAGES as CONNECTOR_STAGES
from tests import test_connector_job

setup = test_connector_job.setup  # the fixture of the tiny connector job: models, data, cfg.py
pytestmark = pytest.mark.slow  # three connector stages compiled, trained and evaluated
STAGES = CONNECTOR_STAGES  # the tiny job runs every stage


def _suite(setup, out, monkeypatch) -> dict[str, dict]:
    row = ts.recipe_row("conn", recipe_rows.Recipe(str(setup / "cfg.py"), recipe_rows.CONNECTOR))
    monkeypatch.setitem(ts.ROW_NAMES, "conn", row)
    assert ts.main(["--data", str(setup / "beir"), "--split", "dev", "--out", str(out), "--rows", "BM25", "conn"]) == 0
    return {r["name"]: r for r in json.loads((out / "results.json").read_text())["runs"]}


def test_connector_row_per_stage_and_rerun(setup, tmp_path, monkeypatch):
    runs = _suite(setup, tmp_path, monkeypatch)
    assert list(runs) == ["BM25", *(f"conn: {s}" for s in STAGES)]
    workdir, = (tmp_path / "recipes").iterdir()
    job = {r["model"]: r for r in json.loads((workdir / "results.json").read_text())["results"]}
    for stage in STAGES:
        r = runs[f"conn: {stage}"]
        assert r["nDCG@10"] == job[f"connector/{stage} (target)"]["nDCG@10"], stage
        assert r["xling nDCG@10"] == job[f"connector/{stage} (xling)"]["nDCG@10"], stage
        assert r["stage_s"] > 0, stage
    assert runs[f"conn: {STAGES[-1]}"]["total_s"] > sum(runs[f"conn: {s}"]["stage_s"] for s in STAGES)
    assert "| xling nDCG@10 |" in (tmp_path / "results.md").read_text()

    for cached in (tmp_path / "rows").glob("conn/*.json"):
        cached.unlink()
    again = _suite(setup, tmp_path, monkeypatch)
    for stage in STAGES:
        assert again[f"conn: {stage}"]["stage_s"] is None, stage  # read back finished: no wall time
        assert again[f"conn: {stage}"]["nDCG@10"] == runs[f"conn: {stage}"]["nDCG@10"], stage
