"""Serving exports parse back to the same weights (after the documented quantisation / escaping); the
scale keeps 8-bit engines within 8 bits; CIFF and PISA files read back with independent parsers.
The real engines run in tests/test_eval_engines.py."""
import json

import numpy as np
import pytest
import scipy.sparse as sp
from google.protobuf.internal.decoder import _DecodeVarint32

from sembridge_jax.evaluation.ciff import MESSAGES, read_ciff, write_ciff
from sembridge_jax.evaluation.encode import SparseCollection
from sembridge_jax.evaluation.serving_export import (
    BMP_QUERY_LEVELS,
    bmp_query_scale,
    bmp_score_bound,
    bmp_warnings,
    escape_feature,
    export_anserini_docs,
    export_anserini_queries,
    export_ciff,
    export_es_bulk,
    export_es_queries,
    export_pisa,
    export_scale,
    export_weighted_queries,
    impacts,
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


def _as_dicts(m: sp.spmatrix, ids, vocab) -> dict[str, dict[str, int]]:
    m = m.tocsr()
    return {i: {vocab[v]: int(x) for v, x in zip(m[r].indices, m[r].data, strict=True)} for r, i in enumerate(ids)}


def test_scale_is_chosen_per_engine():
    coll = _coll()  # largest weight 3.3
    assert export_scale(coll, "anserini") == export_scale(coll, "pisa") == 100.0
    s = export_scale(coll, "ciff")
    assert s == pytest.approx(255 / 3.3) and impacts(coll, s).max() == 255
    assert quantize(np.float32(3.3), 100.0) == 330  # the default scale would overflow 8 bits
    assert export_scale(coll, "ciff", 50.0) == 50.0 and export_scale(coll, "anserini", 1000.0) == 1000.0
    with pytest.raises(ValueError, match=r"--export-scale 100: .* 330 > 255 .* at most 77\.27"):
        export_scale(coll, "ciff", 100.0)
    with pytest.raises(ValueError, match="--export-scale"):
        export_scale(coll, "pisa", -1.0)
    q = _coll()
    assert impacts(q, bmp_query_scale(q)).max() == BMP_QUERY_LEVELS
    d = impacts(coll, s)
    dense = d.toarray()
    bound = bmp_score_bound(d, d)
    assert bound == (dense @ dense.max(axis=0)).max() and bound >= (dense @ dense.T).max()
    qd = impacts(q, bmp_query_scale(q))
    assert bmp_warnings(qd, d) == [] and "16-bit scores" in bmp_warnings(d, d)[0]  # 8 bits x 8 bits
    many = sp.csr_matrix(np.ones((1, 70000)))
    assert "70000 distinct tokens" in bmp_warnings(many, many)[-1]


def test_weighted_query_files(tmp_path):
    """Anserini's TSV and PISA's / BMP's `qid:` lines repeat each token by its impact."""
    coll = _coll()
    lines = export_weighted_queries(coll, tmp_path / "q.txt", scale=10.0, separator=":").read_text().splitlines()
    assert lines[0].split(":", 1) == ["d1", "hello " * 12 + "##ing " * 5 + "a.b " * 19 + "a.b"]
    assert lines[2] == "empty:"
    bad = SparseCollection(["a:b"], sp.csr_matrix(np.ones((1, 1))), ["x"])
    with pytest.raises(ValueError, match="contains ':'"):
        export_weighted_queries(bad, tmp_path / "bad.txt", separator=":")
    spaced = SparseCollection(["q"], sp.csr_matrix(np.ones((1, 1))), ["two words"])
    with pytest.raises(ValueError, match="whitespace"):
        export_weighted_queries(spaced, tmp_path / "bad.txt")


def _read_ciff_independently(path):
    """Walk the size-prefixed messages with protobuf's own varint decoder."""
    data, pos, out = path.read_bytes(), 0, []
    while pos < len(data):
        size, pos = _DecodeVarint32(data, pos)
        out.append(data[pos:pos + size])
        pos += size
    header = MESSAGES["Header"].FromString(out[0])
    lists = [MESSAGES["PostingsList"].FromString(b) for b in out[1:1 + header.num_postings_lists]]
    docs = [MESSAGES["DocRecord"].FromString(b) for b in out[1 + header.num_postings_lists:]]
    return header, lists, docs


def test_ciff_round_trip(tmp_path):
    coll = _coll()
    scale = export_scale(coll, "ciff")
    path = export_ciff(coll, tmp_path / "index.ciff", scale=scale)
    want = impacts(coll, scale)
    index = read_ciff(path)
    assert index.doc_ids == coll.ids and index.doc_lengths.tolist() == np.asarray(want.sum(axis=1)).ravel().tolist()
    got = {d: {} for d in coll.ids}
    for term, (docids, tfs) in index.postings.items():
        for doc, tf in zip(docids, tfs, strict=True):
            got[coll.ids[doc]][term] = int(tf)
    assert got == _as_dicts(want, coll.ids, VOCAB)
    assert list(index.postings) == sorted(index.postings, key=lambda t: t.encode())  # engines' term order
    header, lists, docs = _read_ciff_independently(path)
    assert (header.version, header.num_postings_lists, header.num_docs) == (1, len(index.postings), 3)
    assert header.total_terms_in_collection == want.sum() and "scale" in header.description
    ab = next(p for p in lists if p.term == "a.b")  # in d1 (docid 0) and d/2 (docid 1): gaps 0, 1
    assert [(p.docid, p.tf) for p in ab.postings] == [(0, quantize(2.0, scale)), (1, 1)]
    assert ab.df == 2 and ab.cf == quantize(2.0, scale) + 1
    assert [(d.docid, d.collection_docid) for d in docs] == [(0, "d1"), (1, "d/2"), (2, "empty")]
    short = tmp_path / "short.ciff"
    short.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="short.ciff"):
        read_ciff(short)
    with pytest.raises(ValueError, match="num_terms=3"):
        write_ciff(tmp_path / "x.ciff", [], ["d"], np.ones(1), num_terms=3)


def _read_pisa(folder):
    """PISA's binary collection: uint32 sequences, each prefixed by its length."""
    def seqs(name):
        a, out, pos = np.fromfile(folder / name, "<u4"), [], 0
        while pos < len(a):
            out.append(a[pos + 1:pos + 1 + a[pos]])
            pos += 1 + a[pos]
        return out

    docs, freqs = seqs("inv.docs"), seqs("inv.freqs")
    terms = (folder / "fwd.terms").read_text(encoding="utf-8").splitlines()
    ids = (folder / "fwd.documents").read_text(encoding="utf-8").splitlines()
    assert docs[0].tolist() == [len(ids)] and len(docs) - 1 == len(freqs) == len(terms)
    got = {d: {} for d in ids}
    for term, d, f in zip(terms, docs[1:], freqs, strict=True):
        for doc, tf in zip(d, f, strict=True):
            got[ids[doc]][term] = int(tf)
    return got, terms, ids, seqs("inv.sizes")[0]


def test_pisa_round_trip(tmp_path):
    coll = SparseCollection(["d1", "d2", "empty"], _coll().matrix, VOCAB)  # PISA ids have no '/'
    folder = export_pisa(coll, tmp_path / "pisa", scale=100.0)
    got, terms, ids, sizes = _read_pisa(folder)
    want = impacts(coll, 100.0)
    assert got == _as_dicts(want, coll.ids, VOCAB) and ids == coll.ids
    assert terms == sorted(terms, key=str.encode) and sizes.tolist() == np.asarray(want.sum(axis=1)).ravel().tolist()
    # the binary lexicon: count, count + 1 uint64 offsets, the UTF-8 bytes
    lex = (folder / "fwd.termlex").read_bytes()
    n = int(np.frombuffer(lex[:8], "<u8")[0])
    offsets = np.frombuffer(lex[8:8 * (n + 2)], "<u8")
    blob = lex[8 * (n + 2):]
    assert [blob[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:], strict=True)] == terms
    with pytest.raises(ValueError, match="whitespace"):
        export_pisa(SparseCollection(["a b"], sp.csr_matrix(np.ones((1, 1))), ["x"]), tmp_path / "bad")


def test_export_scale_option():
    import evaluate

    parser = evaluate.build_parser()
    assert parser.parse_args([]).export_scale == "auto"
    assert parser.parse_args(["--export-scale", "50", "--export", "ciff", "pisa"]).export_scale == 50.0
    for bad in ("x", "-1", "0"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--export-scale", bad])
