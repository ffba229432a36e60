"""Benchmark loaders: BEIR folders, MIRACL / Mr.TyDi layout through HF `datasets` on local files, subsets."""
import json

import pytest

from sembridge_jax.data.retrieval import load_beir, load_eval_dataset, load_hf_retrieval, subsample

TOPICS = [
    {"query_id": "1", "query": "서울은 어디?", "positive_passages": [{"docid": "a#0", "title": "서울", "text": "수도"}],
     "negative_passages": [{"docid": "b#0", "title": "", "text": "김치"}]},
    {"query_id": "2", "query": "김치", "positive_passages": [{"docid": "b#0", "title": "", "text": "김치"}],
     "negative_passages": []},
    {"query_id": "3", "query": "없음", "positive_passages": [], "negative_passages": []},
]
CORPUS = [{"docid": d, "title": t, "text": x} for d, t, x in [("a#0", "서울", "수도"), ("b#0", "", "김치"), ("c#0", "", "c")]]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_miracl_layout_from_local_json_and_parquet(tmp_path):
    import datasets

    topics = _write_jsonl(tmp_path / "topics.jsonl", TOPICS)
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    ds = load_hf_retrieval(str(topics), str(corpus))
    assert ds.qrels == {"1": {"a#0": 1}, "2": {"b#0": 1}}  # query 3 has no positive
    assert list(ds.queries) == ["1", "2"] and sorted(ds.corpus) == ["a#0", "b#0", "c#0"]
    assert ds.doc_texts()[0] == "서울 수도"
    pq = tmp_path / "pq"
    pq.mkdir()
    datasets.Dataset.from_list(CORPUS).to_parquet(str(pq / "corpus.parquet"))
    assert load_hf_retrieval(str(topics), str(pq)).corpus == ds.corpus
    # without a corpus: the judged passages form the pool
    assert sorted(load_hf_retrieval(str(topics)).corpus) == ["a#0", "b#0"]
    with pytest.raises(ValueError, match="lack columns"):
        load_hf_retrieval(str(corpus))


def _beir(tmp_path):
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    _write_jsonl(d / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": f"t{i}"} for i in range(10)])
    _write_jsonl(d / "queries.jsonl", [{"_id": f"q{i}", "text": f"x{i}"} for i in range(4)])
    (d / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td1\t1\nq0\td7\t1\nq1\td3\t2\n")
    return d


def test_beir_loader_and_subsample(tmp_path):
    d = _beir(tmp_path)
    ds = load_eval_dataset(str(d), split="dev")
    assert ds.qrels == {"q2": {"d1": 1}, "q0": {"d7": 1}, "q1": {"d3": 2}} and len(ds.corpus) == 10
    small = subsample(ds, max_queries=2, max_docs=4, seed=0)
    assert list(small.queries) == ["q0", "q1"]
    assert {"d7", "d3"} <= set(small.corpus) and len(small.corpus) == 4
    assert subsample(ds, max_queries=2, max_docs=4, seed=0).corpus == small.corpus  # deterministic
    (d / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td1\n")
    with pytest.raises(ValueError, match=r"dev.tsv:2: expected 3"):
        load_beir(d)
    with pytest.raises(FileNotFoundError, match="qrels/test.tsv"):
        load_beir(d, "test")
    (d / "corpus.jsonl").write_text('{"_id": "x", "text": "ok"}\n{broken\n')
    with pytest.raises(ValueError, match=r"corpus.jsonl:2"):
        load_beir(d)
