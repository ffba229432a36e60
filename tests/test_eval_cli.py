"""evaluate.py end to end on a tiny random model: BEIR + BM25 + mixed pool + exports, and --config mode."""
import json

import pytest
from tiny_models import make_hf_folder

import evaluate

PAGES = {"p1": "the cat sat on the mat", "p2": "northern lights causes", "p3": "hello world", "p4": "what sat"}
QUERIES = {"q1": "cat mat", "q2": "northern lights", "q3": "hello"}
QRELS = {"q1": "p1", "q2": "p2", "q3": "p3"}


def _beir(folder, pages, queries, qrels):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n"
                                                 for i, t in pages.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries.items()))
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                              "".join(f"{q}\t{d}\t1\n" for q, d in qrels.items()))
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    make_hf_folder(tmp / "tiny")
    target = _beir(tmp / "target", PAGES, QUERIES, QRELS)
    english = _beir(tmp / "english", {k: v.upper() for k, v in PAGES.items()}, {}, {})
    return tmp, target, english


def test_cli_models_bm25_mixed_and_export(setup):
    tmp, target, english = setup
    out = tmp / "out"
    rows = evaluate.main(["--model", str(tmp / "tiny"), "--model", str(tmp / "tiny"), "--name", "a", "--name", "b",
                          "--beir", str(target), "--mixed", str(target), str(english), "--bm25",
                          "--measures", "nDCG@10", "R@10", "--depth", "10", "--complete-at", "2", "8",
                          "--query-max-length", "16", "--doc-max-length", "16", "--batch-size", "4",
                          "--out", str(out), "--export", "anserini", "pisa", "ciff", "es"])
    saved = json.loads((out / "results.json").read_text())["results"]
    assert saved == json.loads(json.dumps(rows))
    assert [(r["model"], "mixed" in r["dataset"]) for r in rows] == [
        ("BM25", False), ("BM25", True), ("a", False), ("a", True), ("b", False), ("b", True)]
    bm25 = rows[0]
    assert bm25["nDCG@10"] == pytest.approx(1.0) and bm25["num_docs"] == 4
    assert rows[1]["num_docs"] == 8 and rows[1]["Complete@8"] == pytest.approx(1.0)  # pool is 8 docs
    for r in rows[2:]:
        assert {"nDCG@10", "R@10", "flops", "query_active_dims", "doc_active_dims"} <= set(r)
    assert rows[2]["nDCG@10"] == rows[4]["nDCG@10"]  # same weights, same numbers (second one from the cache)
    assert "Max@R" in rows[3] and "Max@R" not in rows[2]
    md = (out / "results.md").read_text()
    assert md.count("\n") == 2 + len(rows) and "| nDCG@10 |" in md
    assert (out / "flops_vs_nDCG_at_10.png").stat().st_size > 1000
    docs = list((out / "export" / "a").rglob("anserini/docs/docs.jsonl"))
    assert len(docs) == 2 and all([p.name for p in d.parent.iterdir()] == ["docs.jsonl"] for d in docs)
    assert len(list((out / "export" / "a").rglob("pisa/index/inv.docs"))) == 2
    assert len(list((out / "export" / "a").rglob("ciff/index.ciff"))) == 2
    assert len(list((out / "export" / "b").rglob("es/bulk.ndjson"))) == 2
    # target docs, pool docs, and the queries (the pool's queries are the target's: one cache entry)
    assert len(list((out / "cache").glob("*.npz"))) == 3


def test_cli_config_mode(setup, tmp_path):
    tmp, target, english = setup
    cfg = tmp_path / "configs" / "tiny_eval.py"
    cfg.parent.mkdir()
    cfg.write_text(f'''from sembridge_jax.config import default_config


def get_config():
    c = default_config()
    c.source, c.target_tokenizer = "a/b", "c/d"
    c.data.train.path = {str(tmp_path)!r}
    c.workdir = {str(tmp_path / "run")!r}
    c.eval.beir = {str(target)!r}
    c.eval.metrics = ("nDCG@10", "R@10")
    c.eval.k = 10
    c.model.max_query_length = 16
    c.model.max_doc_length = 16
    c.eval.mixed.target = {str(target)!r}
    c.eval.mixed.english = {str(english)!r}
    c.eval.mixed.complete_at = (3,)
    return c
''')
    rows = evaluate.main(["--config", str(cfg), "--model", str(tmp / "tiny"), "--config.eval.max_queries=2"])
    assert len(rows) == 2 and all(r["num_queries"] == 2 for r in rows)
    assert set(rows[0]) >= {"nDCG@10", "R@10"} and "Max@R" not in rows[0]
    assert {"Max@R", "Complete@3"} <= set(rows[1])  # the mixed pool comes from eval.mixed
    assert (tmp_path / "run" / "eval" / "results.json").is_file()
