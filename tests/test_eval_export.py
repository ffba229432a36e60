"""Serving exports parse back to the same weights (after the documented quantisation / escaping)."""
import json

import numpy as np
import scipy.sparse as sp

from sembridge_jax.evaluation.encode import SparseCollection
from sembridge_jax.evaluation.serving_export import (
    escape_feature,
    export_anserini_docs,
    export_anserini_queries,
    export_es_bulk,
    export_es_queries,
    quantize,
    read_anserini_docs,
    read_es_bulk,
    unescape_feature,
)

VOCAB = ["[PAD]", "hello", "##ing", "a.b", "50%", "서울", "tiny"]


def _coll():
    m = sp.csr_matrix(np.array([[0, 1.234, 0.5, 2.0, 0, 0, 0.004],
                                [0, 0, 0, 0.01, 3.3, 1.0, 0],
                                [0, 0, 0, 0, 0, 0, 0]], dtype=np.float32))
    return SparseCollection(["d1", "d/2", "empty"], m, VOCAB)


def test_anserini_round_trip(tmp_path):
    coll = _coll()
    got = read_anserini_docs(export_anserini_docs(coll, tmp_path / "docs.jsonl", texts=["x", "y", "z"]))
    dense = coll.matrix.toarray()
    for r, doc_id in enumerate(coll.ids):
        want = {VOCAB[v]: int(round(float(dense[r, v]) * 100)) for v in np.flatnonzero(dense[r])}
        assert got[doc_id] == {t: q for t, q in want.items() if q > 0}
    assert got["d1"] == {"hello": 123, "##ing": 50, "a.b": 200}  # 0.004 -> 0 is dropped
    assert quantize(np.array([0.005, 0.015])).tolist() == [0, 2]  # round half to even (documented)
    lines = export_anserini_queries(coll, tmp_path / "q.tsv").read_text().splitlines()
    qid, toks = lines[1].split("\t")
    assert qid == "d/2" and toks.split().count("50%") == 330 and toks.split().count("a.b") == 1


def test_es_round_trip(tmp_path):
    coll = _coll()
    got = read_es_bulk(export_es_bulk(coll, tmp_path / "bulk.ndjson", index="idx"))
    dense = coll.matrix.toarray()
    for r, doc_id in enumerate(coll.ids):
        assert got[doc_id] == {VOCAB[v]: float(dense[r, v]) for v in np.flatnonzero(dense[r])}
    raw = [json.loads(line) for line in (tmp_path / "bulk.ndjson").read_text().splitlines()]
    keys = [k for row in raw[1::2] for k in row["splade"]]
    assert all("." not in k for k in keys) and "a%2Eb" in keys and "50%25" in keys
    assert all(v > 0 for row in raw[1::2] for v in row["splade"].values())
    assert unescape_feature(escape_feature("%2E.x%")) == "%2E.x%"
    body = json.loads(export_es_queries(coll, tmp_path / "q.jsonl").read_text().splitlines()[0])["body"]
    clauses = body["query"]["bool"]["should"]
    assert {c["rank_feature"]["field"]: c["rank_feature"]["boost"] for c in clauses}["splade.a%2Eb"] == 2.0
