"""The recipe rows of benchmarks/transfer_suite.py (benchmarks/recipe_rows.py) on the tiny train.py setup of
tests/test_train_cli.py: a recipe with an mlm stage gives a row per stage with its score and wall time;
the score after a stage is that of the stage's final parameters, evaluated independently (ir-measures on
dense scores); a rerun reads finished stages back (no wall time); a recipe evaluated on another set than
the suite's --data / --split fails before any work."""
import json
import sys
from pathlib import Path

import ir_measures
import pytest

from benchmarks import recipe_rows
from benchmarks import transfer_suite as ts
from sembridge_jax.api import SparseEncoder
from sembridge_jax.data.retrieval import load_beir
from sembridge_jax.export.checkpoint import load_model_from_checkpoint
from sembridge_jax.models.state import merge_model, split_model
from sembridge_jax.training import stages

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_train_cli  # noqa: E402
from stages_tiny import tiny_texts  # noqa: E402

setup = test_train_cli.setup  # the fixture of the tiny job: source, target tokenizer, data, cfg.py

STEPS = 2


def _recipe(setup_dir: Path) -> recipe_rows.Recipe:
    texts = tiny_texts(setup_dir / "texts.txt")
    return recipe_rows.Recipe(str(setup_dir / "cfg.py"), "sembridge", (
        "train.num_steps=4", "train.eval_every=0", f"mlm.steps={STEPS}", "mlm.batch_size=8", "mlm.max_length=16",
        f"data.text.path={texts}"))


def _suite(setup_dir: Path, out: Path, monkeypatch, rows=("BM25", "tiny")) -> dict:
    monkeypatch.setitem(ts.ROW_NAMES, "tiny", ts.recipe_row("tiny", _recipe(setup_dir)))
    assert ts.main(["--data", str(setup_dir / "beir"), "--split", "dev", "--out", str(out), "--rows", *rows]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")  # the tests that use it are slow: an alignment, two train steps compiled
def suite(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    with pytest.MonkeyPatch.context() as mp:
        return out, _suite(setup, out, mp)


@pytest.mark.slow
def test_recipe_row_scores_every_stage_with_its_wall_time(suite):
    out, results = suite
    runs = {r["name"]: r for r in results["runs"]}
    assert list(runs) == ["BM25", "tiny: zero-shot", "tiny: mlm", "tiny: fine-tuned"]
    for name in ("tiny: zero-shot", "tiny: mlm", "tiny: fine-tuned"):
        assert 0 <= runs[name]["nDCG@10"] <= 1 and 0 <= runs[name]["R@10"] <= 1, name
    assert runs["tiny: zero-shot"]["stage_s"] is None
    assert runs["tiny: mlm"]["stage_s"] > 0 and runs["tiny: fine-tuned"]["stage_s"] > 0
    assert runs["tiny: fine-tuned"]["total_s"] > runs["tiny: mlm"]["stage_s"] + runs["tiny: fine-tuned"]["stage_s"]
    assert runs["tiny: fine-tuned"]["steps"] == 4
    table = (out / "results.md").read_text()
    assert "| stage s | total s |" in table and "| tiny: mlm | 1 |" in table
    workdir, = (out / "recipes").iterdir()
    assert workdir.name.startswith("tiny-") and (workdir / "stages" / "mlm" / "checkpoints" / str(STEPS)).is_dir()


def _independent_scores(model, tokenizer, beir: Path) -> dict:
    """nDCG@10 / R@10 of `model` on `beir` dev by ir-measures from dense dot products (query 8 / document 16
    tokens, the config's lengths)."""
    ds = load_beir(beir, "dev")
    encoder = SparseEncoder(model, tokenizer)
    q = encoder.encode(list(ds.queries.values()), max_length=8).toarray()
    d = encoder.encode(ds.doc_texts(), max_length=16).toarray()
    scores = q @ d.T
    run = {qid: {did: float(s) for did, s in zip(ds.doc_ids(), row, strict=True)}
           for qid, row in zip(ds.queries, scores, strict=True)}
    measures = [ir_measures.parse_measure("nDCG@10"), ir_measures.parse_measure("R@10")]
    return {str(m): v for m, v in ir_measures.calc_aggregate(measures, ds.qrels, run).items()}


@pytest.mark.slow
def test_stage_score_is_the_stage_final_parameters_score(suite, setup):
    out, results = suite
    runs = {r["name"]: r for r in results["runs"]}
    workdir, = (out / "recipes").iterdir()
    tuned, tokenizer, _ = load_model_from_checkpoint(workdir)
    layout, _ = split_model(tuned)
    after_mlm = merge_model(layout, stages.finished_params(workdir / "stages" / "mlm", STEPS))
    for model, name in ((after_mlm, "tiny: mlm"), (tuned, "tiny: fine-tuned")):
        expected = _independent_scores(model, tokenizer, setup / "beir")
        for m in ("nDCG@10", "R@10"):
            assert runs[name][m] == pytest.approx(expected[m], abs=1e-6), (name, m)


@pytest.mark.slow
def test_rerun_reads_finished_stages_back_without_a_wall_time(suite, setup, tmp_path, monkeypatch):
    out, results = suite
    for cached in (out / "rows").glob("tiny/*.json"):
        cached.unlink()  # the row is recomputed: its stages come back from their checkpoints
    again = {r["name"]: r for r in _suite(setup, out, monkeypatch)["runs"]}
    first = {r["name"]: r for r in results["runs"]}
    for name in ("tiny: zero-shot", "tiny: mlm", "tiny: fine-tuned"):
        assert again[name]["nDCG@10"] == first[name]["nDCG@10"], name
        assert again[name]["stage_s"] is None, name
    assert len(list((out / "recipes").iterdir())) == 1  # the same workdir


def test_recipe_evaluated_elsewhere_fails_before_any_work(setup, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setitem(ts.ROW_NAMES, "tiny", ts.recipe_row("tiny", _recipe(setup)))
    with pytest.raises(SystemExit, match=r"row 'tiny': .*cfg.py evaluates on eval.beir=.*beir eval.split=dev, "
                                         r"the suite's table on --data .*other --split dev"):
        ts.main(["--data", str(other), "--split", "dev", "--out", str(tmp_path / "out"), "--rows", "BM25", "tiny"])
    with pytest.raises(recipe_rows.EvalMismatchError, match="eval.split=dev.*--split test"):
        recipe_rows.load("tiny", _recipe(setup), str(setup / "beir"), "test", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written
