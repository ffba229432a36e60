"""Export encoded collections for existing engines (commands and checked versions in docs/serving.md).

Impact engines store integer weights q = round(w * scale) (round half to even, as numpy rounds);
tokens whose q is 0 are dropped. `export_scale` picks the scale per engine: 100 by default (the
SPLADE/Anserini practice), and for the CIFF export, whose main consumer BMP stores 8-bit impacts and
silently wraps larger ones, the largest scale that keeps every document impact within 255.

Anserini / Pyserini impact index (JsonVectorCollection, `docs/docs.jsonl`, alone in its folder because
Anserini parses every file of its input folder as documents): one JSON object per line,
  {"id": doc id, "contents": text, "vector": {token: int}}
Queries go to a TSV `qid<TAB>tokens` in which every token is repeated q times (Anserini's
`-impact -pretokenized` query format: the query weight is the term frequency).

PISA: its binary inverted collection (`inv.docs`, `inv.freqs`, `inv.sizes`) with the term and document
lexicons (`fwd.terms`, `fwd.documents` and their binary `fwd.termlex`, `fwd.doclex`), which PISA's
`compress_inverted_index` and pyterrier-pisa read as is; queries as `qid:tokens` lines, tokens repeated
q times (PISA's `--weighted` queries; BMP reads the same format, at most 32 repeats).

CIFF (evaluation/ciff.py): the same inverted index in the Common Index File Format.

OpenSearch / Elasticsearch bulk (NDJSON, field type `rank_features`):
  {"index": {"_index": name, "_id": doc id}}
  {"text": text, "<field>": {escaped token: float}}
rank_features accepts only positive finite values (zero weights are dropped; float32 kept, the engine
itself keeps 9 significant bits, truncated: ~0.4%), and a key containing "." would be read as an object
path, so keys are escaped: "%" -> "%25", "." -> "%2E" (`unescape_feature` inverts it). Queries go to JSONL
search bodies (bool/should of rank_feature clauses with linear scoring, boost = query weight), which
score the dot product of the two vectors.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sembridge_jax.evaluation.ciff import write_ciff
from sembridge_jax.evaluation.encode import SparseCollection

DEFAULT_SCALE = 100.0
# The largest document impact each export's engines store exactly (None: 32-bit term frequencies).
MAX_IMPACT = {"anserini": None, "pisa": None, "ciff": 255}
# BMP (the 8-bit CIFF consumer): query weights above 32 are rescaled to 32 by BMP itself; scores are
# summed and term ids stored in 16 bits.
BMP_QUERY_LEVELS = 32
BMP_MAX_SCORE = 65535
BMP_MAX_TERMS = 65536


def quantize(weights: np.ndarray, scale: float = DEFAULT_SCALE) -> np.ndarray:
    """Integer impacts round(w * scale) (round half to even, as numpy rounds)."""
    return np.rint(np.asarray(weights, dtype=np.float64) * scale).astype(np.int64)


def export_scale(docs: SparseCollection, engine: str, scale: float | str = "auto") -> float:
    """The scale of `engine`'s impacts. "auto": DEFAULT_SCALE, or for an engine with MAX_IMPACT the
    largest scale that keeps every document impact within it. A number is used as given; one that
    would overflow the engine's impacts raises ValueError naming --export-scale and the largest valid one."""
    limit = MAX_IMPACT[engine]
    top = float(docs.matrix.max()) if docs.matrix.nnz else 0.0
    if scale == "auto":
        return DEFAULT_SCALE if limit is None or top <= 0 else limit / top
    scale = float(scale)
    if not scale > 0:
        raise ValueError(f"--export-scale must be > 0 or 'auto', got {scale}")
    if limit is not None and top > 0 and quantize(top, scale) > limit:
        raise ValueError(f"--export-scale {scale:g}: the largest {engine} impact would be {int(quantize(top, scale))} "
                         f"> {limit} (BMP stores 8-bit impacts and wraps larger ones); use 'auto' or at most "
                         f"{limit / top:.6g}")
    return scale


def impacts(coll: SparseCollection, scale: float) -> sp.csr_matrix:
    """The quantised [N, V] matrix; impacts <= 0 removed (SPLADE weights are never negative)."""
    m = coll.matrix.tocsr()
    out = sp.csr_matrix((np.maximum(quantize(m.data, scale), 0), m.indices.copy(), m.indptr.copy()), shape=m.shape)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def escape_feature(token: str) -> str:
    return token.replace("%", "%25").replace(".", "%2E")


def unescape_feature(key: str) -> str:
    return key.replace("%2E", ".").replace("%25", "%")


def _rows(coll: SparseCollection, matrix: sp.spmatrix | None = None) -> Iterator[tuple[str, list[str], np.ndarray]]:
    """(id, tokens, weights) per row of `matrix` (default the collection's), ordered by vocabulary id."""
    m = (coll.matrix if matrix is None else matrix).tocsr()
    for r, doc_id in enumerate(coll.ids):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        order = np.argsort(m.indices[lo:hi], kind="stable")
        yield doc_id, [coll.vocab[i] for i in m.indices[lo:hi][order]], m.data[lo:hi][order]


def _check_unique(tokens: list[str], doc_id: str) -> None:
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"document {doc_id!r}: two vocabulary ids share one token string; cannot key by token")


def _check_word(text: str, what: str) -> None:
    """Text formats split on whitespace: a token or id holding any cannot be written."""
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"{what} {text!r} is empty or contains whitespace; this export format splits on it")


def export_anserini_docs(coll: SparseCollection, path: str | Path, *, texts: list[str] | None = None,
                         scale: float = DEFAULT_SCALE) -> Path:
    """JsonVectorCollection file (one doc per line) for `pyserini.index.lucene --impact --pretokenized`.
    Keep it alone in its folder: Anserini indexes every file of the input folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for n, (doc_id, toks, q) in enumerate(_rows(coll, impacts(coll, scale))):
            _check_unique(toks, doc_id)
            vec = {t: int(v) for t, v in zip(toks, q, strict=True)}
            f.write(json.dumps({"id": doc_id, "contents": texts[n] if texts else "", "vector": vec},
                               ensure_ascii=False) + "\n")
    return path


def export_weighted_queries(coll: SparseCollection, path: str | Path, *, scale: float = DEFAULT_SCALE,
                            separator: str = "\t") -> Path:
    """`qid<separator>token token ...`, each token repeated round(w * scale) times: Anserini's TSV
    (separator tab) or PISA's / BMP's query file (separator ":")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for qid, toks, q in _rows(coll, impacts(coll, scale)):
            if separator in qid or "\n" in qid:
                raise ValueError(f"query id {qid!r} contains {separator!r} or a newline")
            for t in toks:
                _check_word(t, "query token")
            f.write(qid + separator + " ".join(t for t, v in zip(toks, q, strict=True) for _ in range(v)) + "\n")
    return path


def export_anserini_queries(coll: SparseCollection, path: str | Path, *, scale: float = DEFAULT_SCALE) -> Path:
    """TSV `qid<TAB>token token ...` for SearchCollection `-topicreader TsvString -impact -pretokenized`."""
    return export_weighted_queries(coll, path, scale=scale, separator="\t")


def bmp_query_scale(queries: SparseCollection) -> float:
    """The query scale whose largest impact is BMP_QUERY_LEVELS: BMP then scores the exported weights
    as they are instead of rescaling them."""
    top = float(queries.matrix.max()) if queries.matrix.nnz else 0.0
    return BMP_QUERY_LEVELS / top if top > 0 else DEFAULT_SCALE


def bmp_score_bound(queries: sp.spmatrix, docs: sp.spmatrix) -> int:
    """An upper bound on every query-document score of these impact matrices (each query impact
    times the largest document impact of its term), to compare with BMP's 16-bit BMP_MAX_SCORE."""
    term_max = np.asarray(docs.max(axis=0).todense()).ravel()
    return int((queries @ term_max).max(initial=0))


def bmp_warnings(queries: sp.spmatrix, docs: sp.spmatrix) -> list[str]:
    """What BMP's 16-bit scores and term ids would get wrong with these impact matrices."""
    out = []
    bound = bmp_score_bound(queries, docs)
    if bound > BMP_MAX_SCORE:
        out.append(f"scores may reach {bound} > {BMP_MAX_SCORE}, which BMP's 16-bit scores wrap; prune the "
                   "queries (--query-top-k) or lower --export-scale")
    terms = int(np.count_nonzero(np.diff(docs.tocsc().indptr)))
    if terms > BMP_MAX_TERMS:
        out.append(f"{terms} distinct tokens > {BMP_MAX_TERMS}, which BMP's 16-bit term ids cannot tell apart")
    return out


def _postings(coll: SparseCollection, scale: float) -> tuple[sp.csr_matrix, list[tuple[str, np.ndarray, np.ndarray]]]:
    """The impact matrix and its inverted lists (term, docids ascending, impacts), terms in UTF-8 byte
    order (the order of PISA's lexicon and of Anserini's CIFF exports)."""
    m = impacts(coll, scale)
    by_term = m.tocsc()
    by_term.sort_indices()
    used = np.flatnonzero(np.diff(by_term.indptr))
    terms = [coll.vocab[v] for v in used]
    if len(set(terms)) != len(terms):
        raise ValueError("two vocabulary ids share one token string; cannot key postings by token")
    lists = [(t, by_term.indices[by_term.indptr[v]:by_term.indptr[v + 1]],
              by_term.data[by_term.indptr[v]:by_term.indptr[v + 1]]) for t, v in zip(terms, used, strict=True)]
    return m, sorted(lists, key=lambda x: x[0].encode("utf-8"))


def export_ciff(coll: SparseCollection, path: str | Path, *, scale: float, description: str = "") -> Path:
    """The collection as a CIFF file (tf = impact, doclength = sum of impacts)."""
    m, lists = _postings(coll, scale)
    return write_ciff(path, lists, list(coll.ids), np.asarray(m.sum(axis=1)).ravel(), num_terms=len(lists),
                      description=description or f"sembridge-jax impacts, scale {scale:g}")


def _payload_vector(items: list[str]) -> bytes:
    """PISA's binary lexicon (Payload_Vector): count, count + 1 byte offsets (uint64), the UTF-8 bytes."""
    data = [x.encode("utf-8") for x in items]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in data])]).astype("<u8")
    return np.array([len(data)], "<u8").tobytes() + offsets.tobytes() + b"".join(data)


def export_pisa(coll: SparseCollection, folder: str | Path, *, scale: float = DEFAULT_SCALE) -> Path:
    """PISA's binary inverted collection + lexicons in `folder`: uint32 sequences, each prefixed by its
    length; inv.docs starts with the sequence [num_docs], then per term its docids; inv.freqs per
    term its impacts; inv.sizes the document lengths (sum of impacts)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    m, lists = _postings(coll, scale)
    for t, _, _ in lists:
        _check_word(t, "token")
    for doc_id in coll.ids:
        _check_word(doc_id, "document id")

    def seq(values) -> bytes:
        return np.concatenate([[len(values)], values]).astype("<u4").tobytes()

    (folder / "inv.docs").write_bytes(seq([len(coll.ids)]) + b"".join(seq(d) for _, d, _ in lists))
    (folder / "inv.freqs").write_bytes(b"".join(seq(q) for _, _, q in lists))
    (folder / "inv.sizes").write_bytes(seq(np.asarray(m.sum(axis=1)).ravel()))
    terms = [t for t, _, _ in lists]
    (folder / "fwd.terms").write_text("".join(t + "\n" for t in terms), encoding="utf-8")
    (folder / "fwd.termlex").write_bytes(_payload_vector(terms))
    (folder / "fwd.documents").write_text("".join(d + "\n" for d in coll.ids), encoding="utf-8")
    (folder / "fwd.doclex").write_bytes(_payload_vector(list(coll.ids)))
    return folder


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
