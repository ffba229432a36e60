"""Export encoded collections for existing engines (commands in docs/serving.md).

Anserini / Pyserini impact index (JsonVectorCollection): one JSON object per line,
  {"id": doc id, "contents": text, "vector": {token: int}}
with weights quantised as q = round(w * scale) (scale 100 by default, the SPLADE/Anserini practice);
tokens whose q is 0 are dropped. Queries go to a TSV `qid<TAB>tokens` in which every token is repeated
q times (Anserini's `-impact -pretokenized` query format: the query weight is the term frequency).

OpenSearch / Elasticsearch bulk (NDJSON, field type `rank_features`):
  {"index": {"_index": name, "_id": doc id}}
  {"text": text, "<field>": {escaped token: float}}
rank_features accepts only positive finite values (zero weights are dropped; float32 kept, the engine
itself keeps 9 significant bits), and a key containing "." would be read as an object path, so keys are
escaped: "%" -> "%25", "." -> "%2E" (`unescape_feature` inverts it). Queries go to JSONL search bodies
(bool/should of rank_feature clauses with linear scoring, boost = query weight), which score the dot
product of the two vectors.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sembridge_jax.evaluation.encode import SparseCollection


def quantize(weights: np.ndarray, scale: float = 100.0) -> np.ndarray:
    """Integer impacts round(w * scale) (round half to even, as numpy rounds)."""
    return np.rint(np.asarray(weights, dtype=np.float64) * scale).astype(np.int64)


def escape_feature(token: str) -> str:
    return token.replace("%", "%25").replace(".", "%2E")


def unescape_feature(key: str) -> str:
    return key.replace("%2E", ".").replace("%25", "%")


def _rows(coll: SparseCollection) -> Iterator[tuple[str, list[str], np.ndarray]]:
    m = coll.matrix.tocsr()
    for r, doc_id in enumerate(coll.ids):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        order = np.argsort(m.indices[lo:hi], kind="stable")
        yield doc_id, [coll.vocab[i] for i in m.indices[lo:hi][order]], m.data[lo:hi][order]


def _check_unique(tokens: list[str], doc_id: str) -> None:
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"document {doc_id!r}: two vocabulary ids share one token string; cannot key by token")


def export_anserini_docs(coll: SparseCollection, path: str | Path, *, texts: list[str] | None = None,
                         scale: float = 100.0) -> Path:
    """JsonVectorCollection file (one doc per line) for `pyserini.index.lucene --impact --pretokenized`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for n, (doc_id, toks, w) in enumerate(_rows(coll)):
            _check_unique(toks, doc_id)
            q = quantize(w, scale)
            vec = {t: int(v) for t, v in zip(toks, q, strict=True) if v > 0}
            f.write(json.dumps({"id": doc_id, "contents": texts[n] if texts else "", "vector": vec},
                               ensure_ascii=False) + "\n")
    return path


def export_anserini_queries(coll: SparseCollection, path: str | Path, *, scale: float = 100.0) -> Path:
    """TSV `qid<TAB>token token ...`, each token repeated round(w * scale) times."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for qid, toks, w in _rows(coll):
            if "\t" in qid or "\n" in qid:
                raise ValueError(f"query id {qid!r} contains a tab or newline")
            words = [t for t, v in zip(toks, quantize(w, scale), strict=True) for _ in range(max(int(v), 0))]
            f.write(f"{qid}\t{' '.join(words)}\n")
    return path


def _features(toks: list[str], w: np.ndarray, doc_id: str) -> dict[str, float]:
    _check_unique(toks, doc_id)
    return {escape_feature(t): float(v) for t, v in zip(toks, w, strict=True) if v > 0 and np.isfinite(v)}


def export_es_bulk(coll: SparseCollection, path: str | Path, *, index: str, field: str = "splade",
                   texts: list[str] | None = None) -> Path:
    """Bulk NDJSON for OpenSearch / Elasticsearch (`curl -H 'Content-Type: application/x-ndjson'
    --data-binary @file .../_bulk`), vectors in a `rank_features` field."""
    if "." in field:
        raise ValueError(f"field name {field!r} must not contain '.'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for n, (doc_id, toks, w) in enumerate(_rows(coll)):
            f.write(json.dumps({"index": {"_index": index, "_id": doc_id}}) + "\n")
            f.write(json.dumps({"text": texts[n] if texts else "", field: _features(toks, w, doc_id)},
                               ensure_ascii=False) + "\n")
    return path


def es_mapping(field: str = "splade") -> dict:
    """Index body with the `rank_features` mapping the bulk file expects."""
    return {"mappings": {"properties": {field: {"type": "rank_features"}, "text": {"type": "text"}}}}


def export_es_queries(coll: SparseCollection, path: str | Path, *, field: str = "splade", size: int = 100) -> Path:
    """JSONL `{"id": qid, "body": search body}`; the body's score is sum_t w_q(t) * w_d(t)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for qid, toks, w in _rows(coll):
            should = [{"rank_feature": {"field": f"{field}.{k}", "linear": {}, "boost": v}}
                      for k, v in _features(toks, w, qid).items()]
            f.write(json.dumps({"id": qid, "body": {"size": size, "query": {"bool": {"should": should}}}},
                               ensure_ascii=False) + "\n")
    return path


def read_anserini_docs(path: str | Path) -> dict[str, dict[str, int]]:
    """doc id -> {token: impact} from a JsonVectorCollection file."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                out[row["id"]] = row["vector"]
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{path}:{n}: not a JsonVectorCollection line ({e})") from None
    return out


def read_es_bulk(path: str | Path, field: str = "splade") -> dict[str, dict[str, float]]:
    """doc id -> {token (unescaped): weight} from a bulk NDJSON file."""
    out = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if len(lines) % 2:
        raise ValueError(f"{path}: a bulk file has action/source line pairs, got {len(lines)} lines")
    for n in range(0, len(lines), 2):
        action, source = json.loads(lines[n]), json.loads(lines[n + 1])
        out[action["index"]["_id"]] = {unescape_feature(k): v for k, v in source[field].items()}
    return out
