"""Retrieval benchmarks as one in-memory shape: BEIR folders, MIRACL / Mr.TyDi (their hub repos through
`data.hub`, local json/parquet files through HF `datasets`), and mixed English + target-language pools for
the English-inclination metrics."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sembridge_jax.data import hub
from sembridge_jax.lines import DataError, numbered_lines

log = logging.getLogger(__name__)


@dataclass
class RetrievalDataset:
    """corpus: doc id -> {"title", "text"}; queries: query id -> text (only judged queries);
    qrels: query id -> {doc id: graded relevance}."""

    name: str
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def doc_ids(self) -> list[str]:
        return list(self.corpus)

    def doc_texts(self) -> list[str]:
        """Title and body joined by a space, the BEIR / sentence-transformers convention."""
        return [_join_title(d) for d in self.corpus.values()]


def _join_title(doc: dict) -> str:
    title, text = (doc.get("title") or "").strip(), doc.get("text") or ""
    return f"{title} {text}" if title else text


class _BadLines:
    """Counts the records skipped with `skip_bad_lines`; without it the first bad record is a DataError."""

    def __init__(self, skip: bool):
        self.skip, self.count = skip, 0

    def __call__(self, where: str, problem: str) -> None:
        if not self.skip:
            raise DataError(f"{where}: {problem}")
        self.count += 1


def _read_jsonl(path: Path, bad: _BadLines, fields: dict[str, type]) -> Iterator[tuple[str, dict]]:
    """(file:line, object) per JSON line holding `fields` (name -> type; str ids may also be ints)."""
    for n, line in numbered_lines(path):
        where = f"{path}:{n}"
        if line is None:
            bad(where, "not valid UTF-8")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            bad(where, f"not valid JSON ({e.msg})")
            continue
        problem = _field_problem(row, fields)
        if problem:
            bad(where, problem)
            continue
        yield where, row


def _field_problem(row, fields: dict[str, type]) -> str | None:
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    for name, kind in fields.items():
        if name not in row:
            return f"no {name!r} field (has {sorted(row)[:8]})"
        ok = (str, int) if name == "_id" else kind
        if not isinstance(row[name], ok) or isinstance(row[name], bool):
            return f"{name!r} must be a {kind.__name__}, got {row[name]!r:.80}"
    return None


QRELS_HEADER_SCORES = ("score", "relevance", "grade", "label")  # the third column's name in a header line


def read_qrels_tsv(path: Path, bad: _BadLines | None = None) -> dict[str, dict[str, int]]:
    """BEIR qrels: header line, then `query-id<TAB>corpus-id<TAB>score` (an integer grade)."""
    bad = bad or _BadLines(False)
    qrels: dict[str, dict[str, int]] = {}
    for n, line in numbered_lines(path):
        where = f"{path}:{n}"
        parts = None if line is None else line.split("\t")
        if parts is not None and n == 1 and parts[-1].strip().lower() in QRELS_HEADER_SCORES:
            continue  # header
        if parts is None:
            bad(where, "not valid UTF-8")
        elif len(parts) != 3:
            bad(where, f"expected 3 tab-separated fields, got {len(parts)}")
        elif not parts[2].strip().lstrip("-").isdigit():
            bad(where, f"score {parts[2]!r} is not an integer grade")
        else:
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


# More than this share of the relevant judgements naming documents absent from the corpus is an error (the
# qrels most likely belong to another corpus or split); fewer are a counted warning and stay judged (they
# count as relevant and are never retrieved, as in trec_eval and BEIR).
MAX_UNKNOWN_RELEVANT = 0.5


def beir_split_problem(source: str, split: str) -> str | None:
    """Config check of a benchmark setting: a local BEIR folder (one with corpus.jsonl) has queries.jsonl and
    qrels/<split>.tsv; other values (hub ids, local json/parquet files) are checked when read."""
    folder = Path(source)
    if not source or not (folder / "corpus.jsonl").is_file():
        return None
    missing = [p for p in ("queries.jsonl", f"qrels/{split}.tsv") if not (folder / p).is_file()]
    return f"BEIR folder {folder} has no {' and no '.join(missing)}" if missing else None


def load_beir(folder: str | Path, split: str = "dev", *, queries: bool = True,
              skip_bad_lines: bool = False) -> RetrievalDataset:
    """A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv); keeps the judged queries with a relevant
    document (the others are dropped with a counted warning: their metrics are undefined).

    Errors (DataError, naming the file and line): a bad record (not UTF-8, not JSON, no `_id` / `text`, a
    non-integer grade; with `skip_bad_lines` skipped and counted), an empty corpus, a judged query that is
    empty or missing from queries.jsonl, no judged query with a relevant document (unless `queries` is False:
    only the corpus is used, e.g. the non-query side of a mixed pool), more than MAX_UNKNOWN_RELEVANT of the
    relevant judgements naming documents not in the corpus (fewer: a counted warning).
    """
    folder = Path(folder)
    corpus_path, queries_path, qrels_path = folder / "corpus.jsonl", folder / "queries.jsonl", \
        folder / "qrels" / f"{split}.tsv"
    for p in (corpus_path, queries_path, qrels_path):
        if not p.is_file():
            raise FileNotFoundError(f"BEIR folder {folder}: missing {p.relative_to(folder)}")
    bad = _BadLines(skip_bad_lines)
    corpus = {str(r["_id"]): {"title": r.get("title") or "", "text": r.get("text") or ""}
              for _, r in _read_jsonl(corpus_path, bad, {"_id": str})}
    if not corpus:
        raise DataError(f"{corpus_path}: empty corpus (no documents)")
    all_queries = {str(r["_id"]): (where, r["text"])
                   for where, r in _read_jsonl(queries_path, bad, {"_id": str, "text": str})}
    qrels = read_qrels_tsv(qrels_path, bad)
    if bad.count:
        log.warning("%s: skipped %d bad records", folder, bad.count)
    missing = [q for q in qrels if q not in all_queries]
    if missing and not bad.count:
        raise DataError(f"{qrels_path}: query ids not in queries.jsonl, e.g. {missing[:3]}")
    if missing:  # their query lines were skipped as bad records
        log.warning("%s: dropped %d judged queries not in queries.jsonl", qrels_path, len(missing))
        qrels = {q: rels for q, rels in qrels.items() if q in all_queries}
    judged = with_relevant(qrels)
    if len(judged) < len(qrels):
        log.warning("%s: dropped %d of %d judged queries without a relevant document (grade > 0)", qrels_path,
                    len(qrels) - len(judged), len(qrels))
    if queries and not judged:
        raise DataError(f"{qrels_path}: no judged query with a relevant document (grade > 0)")
    empty = [all_queries[q][0] for q in judged if not all_queries[q][1].strip()]
    if empty:
        raise DataError(f"{empty[0]}: empty query text ({len(empty)} judged queries are empty)")
    _check_unknown_documents(judged, corpus, qrels_path, corpus_path)
    name = "/".join(folder.resolve().parts[-2:])
    return RetrievalDataset(f"{name}/{split}", corpus, {q: all_queries[q][1] for q in judged}, judged)


def _check_unknown_documents(qrels, corpus, qrels_path: Path, corpus_path: Path) -> None:
    relevant = [(q, d) for q, rels in qrels.items() for d, g in rels.items() if g > 0]
    unknown = [(q, d) for q, d in relevant if d not in corpus]
    if not unknown:
        return
    message = (f"{qrels_path}: {len(unknown)} of {len(relevant)} relevant judgements name documents not in "
               f"{corpus_path.name}, e.g. {unknown[:3]}")
    if len(unknown) > MAX_UNKNOWN_RELEVANT * len(relevant):
        raise DataError(f"{message}; more than {MAX_UNKNOWN_RELEVANT:.0%}: wrong corpus or split?")
    log.warning("%s (kept: relevant, never retrieved)", message)


def _hf_load(source: str, config_name: str | None, split: str, revision: str | None):
    """`source` is a hub id (e.g. miracl/miracl) or local json/jsonl/parquet file(s) / folder."""
    import datasets  # heavy optional: only hub/parquet benchmarks pay its import time

    path = Path(source)
    if path.exists():
        files = sorted(str(p) for p in (path.iterdir() if path.is_dir() else [path])
                       if p.suffix in (".json", ".jsonl", ".parquet"))
        if not files:
            raise FileNotFoundError(f"{source}: no .json/.jsonl/.parquet files")
        kind = "parquet" if files[0].endswith(".parquet") else "json"
        return datasets.load_dataset(kind, data_files=files, split="train")
    return datasets.load_dataset(source, config_name, split=split, revision=revision)


def with_relevant(qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The queries with at least one relevant (grade > 0) document: nDCG and recall are undefined for the
    others (MIRACL's qrels also list judged, non-relevant passages with grade 0)."""
    return {q: rels for q, rels in qrels.items() if any(g > 0 for g in rels.values())}


def is_hub_benchmark(source: str) -> bool:
    """Whether `source` names a hub repo that `data.hub` reads file by file (MIRACL, Mr.TyDi), not a local path."""
    return source in hub.RETRIEVAL_LOADERS and not Path(source).exists()


def load_hf_retrieval(queries_source: str, corpus_source: str | None = None, *, language: str | None = None,
                      split: str = "dev", corpus_split: str = "train", revision: str | None = None,
                      name: str | None = None, max_queries: int = 0, max_docs: int = 0) -> RetrievalDataset:
    """MIRACL / Mr.TyDi: the hub repos, or local files in the layout of their loading scripts.

    Hub ids `miracl/miracl` (+ `miracl/miracl-corpus`) and `castorini/mr-tydi` (+ `castorini/mr-tydi-corpus`)
    are read file by file by `data.hub` (script datasets, which `datasets` >= 4 refuses), with `language`
    as the subset ("ko"; Mr.TyDi also takes "korean"). Local json/jsonl/parquet files hold query rows
    {query_id, query, positive_passages, negative_passages} (passages {docid, title, text}) and corpus rows
    {docid, title, text}. Without `corpus_source` the pool is only the judged passages of the queries, a
    much easier task than the full corpus; say so when reporting it. Queries without a relevant document
    are dropped; `max_queries` keeps the first N in sorted id order and `max_docs` caps the corpus (see
    `subsample`; on the hub, corpus shards stop downloading once enough passages are in).
    """
    if is_hub_benchmark(queries_source):
        if not language:
            raise ValueError(f"{queries_source}: give the language subset (e.g. 'ko')")
        corpus, queries, qrels = hub.load_retrieval(
            queries_source, language, split, corpus_repo=corpus_source or None, revision=revision,
            corpus=True if corpus_source else "judged", max_queries=max_queries, max_docs=max_docs)
        qrels = with_relevant(qrels)
        ds = RetrievalDataset(name or f"{queries_source}:{language}/{split}", corpus,
                              {q: queries[q] for q in qrels}, qrels)
        return subsample(ds, max_docs=max_docs) if max_docs else ds
    rows = _hf_load(queries_source, language, split, revision)
    missing = {"query_id", "query", "positive_passages"} - set(rows.column_names)
    if missing:
        raise ValueError(f"{queries_source}: query rows lack columns {sorted(missing)}")
    queries, qrels, corpus = {}, {}, {}
    for r in rows:
        qid = str(r["query_id"])
        queries[qid] = r["query"]
        qrels[qid] = {str(p["docid"]): 1 for p in r["positive_passages"]}
        if corpus_source is None:
            for p in list(r["positive_passages"]) + list(r.get("negative_passages") or []):
                corpus[str(p["docid"])] = {"title": p.get("title", ""), "text": p["text"]}
    if corpus_source is not None:
        for r in _hf_load(corpus_source, language, corpus_split, revision):
            corpus[str(r["docid"])] = {"title": r.get("title", ""), "text": r["text"]}
    qrels = with_relevant(qrels)  # MIRACL has queries without positives
    ds = RetrievalDataset(name or f"{queries_source}:{language or ''}/{split}", corpus,
                          {q: queries[q] for q in qrels}, qrels)
    return subsample(ds, max_queries=max_queries, max_docs=max_docs) if max_queries or max_docs else ds


def build_mixed_pool(target: RetrievalDataset, english: RetrievalDataset, *, id_map: dict[str, str] | None = None,
                     prefixes: tuple[str, str] = ("ko:", "en:"), queries: str = "target") -> RetrievalDataset:
    """One pool of both corpora with prefixed ids; each query's relevant docs are its pages in BOTH languages.

    `id_map` maps target doc ids to English doc ids (identity when None). `queries` picks the query side:
    "target" uses target's queries and qrels, "english" uses english's. Queries with a relevant page that
    lacks its parallel are dropped, since the metrics ask for all parallel copies.
    """
    tp, ep = prefixes
    t2e = id_map if id_map is not None else {d: d for d in target.corpus if d in english.corpus}
    e2t = {e: t for t, e in t2e.items()}
    corpus = {tp + d: doc for d, doc in target.corpus.items()}
    corpus.update({ep + d: doc for d, doc in english.corpus.items()})
    if queries == "target":
        src, pairs = target, lambda d: (tp + d, ep + t2e[d]) if d in t2e and t2e[d] in english.corpus else None
    elif queries == "english":
        src, pairs = english, lambda d: (tp + e2t[d], ep + d) if d in e2t and e2t[d] in target.corpus else None
    else:
        raise ValueError(f"queries must be 'target' or 'english', got {queries!r}")
    qrels = {}
    for q, rels in src.qrels.items():
        pos = {d: s for d, s in rels.items() if s > 0}
        both = [pairs(d) for d in pos]
        if pos and all(both):
            qrels[q] = {doc: pos[d] for d, pair in zip(pos, both, strict=True) for doc in pair}
    if not qrels:
        raise ValueError(f"mixed pool {target.name} + {english.name}: no query has all relevant pages in both")
    return RetrievalDataset(f"mixed[{target.name}+{english.name}]", corpus,
                            {q: src.queries[q] for q in qrels}, qrels)


def load_id_map(path: str | Path) -> dict[str, str]:
    """TSV `target_id<TAB>english_id` (no header), for pools whose parallel documents have different ids."""
    out = {}
    for n, line in numbered_lines(path):
        parts = None if line is None else line.split("\t")
        if parts is None or len(parts) != 2:
            raise DataError(f"{path}:{n}: " + ("not valid UTF-8" if parts is None else "expected 2 tab-separated ids"))
        out[parts[0]] = parts[1]
    return out


def subsample(ds: RetrievalDataset, *, max_queries: int = 0, max_docs: int = 0, seed: int = 0) -> RetrievalDataset:
    """A deterministic smaller benchmark: the first `max_queries` queries in sorted id order (0 = all), ALL
    their judged documents, and a seeded uniform sample of the other documents up to `max_docs` in total
    (0 = keep every document). Corpus order is kept."""
    qids = sorted(ds.qrels)[:max_queries] if max_queries else sorted(ds.qrels)
    qrels = {q: ds.qrels[q] for q in qids}
    if max_docs:
        judged = {d for r in qrels.values() for d in r if d in ds.corpus}
        others = sorted(set(ds.corpus) - judged)
        rng = np.random.default_rng(seed)
        n_extra = max(0, min(len(others), max_docs - len(judged)))
        keep = judged | {others[i] for i in rng.choice(len(others), n_extra, replace=False)}
        corpus = {d: doc for d, doc in ds.corpus.items() if d in keep}
    else:
        corpus = ds.corpus
    name = ds.name + (f"[q{max_queries},d{max_docs},s{seed}]" if max_queries or max_docs else "")
    return RetrievalDataset(name, corpus, {q: ds.queries[q] for q in qids}, qrels)


def load_eval_dataset(source: str, *, split: str = "dev", subset: str = "", corpus: str = "", max_queries: int = 0,
                      max_docs: int = 0) -> RetrievalDataset:
    """One entry point for configs (`eval.beir`, `eval.subset`, `eval.corpus`, `eval.split`, `eval.max_queries`,
    `eval.max_docs`; the same under `data.dev`): a local BEIR folder, or MIRACL / Mr.TyDi topics (hub id or
    local files) joined with `corpus` when given. `max_queries` / `max_docs`: see `subsample` (0 = all)."""
    path = Path(source)
    if path.is_dir() and (path / "corpus.jsonl").is_file():
        ds = load_beir(path, split)
        return subsample(ds, max_queries=max_queries, max_docs=max_docs) if max_queries or max_docs else ds
    return load_hf_retrieval(source, corpus or None, language=subset or None, split=split, max_queries=max_queries,
                             max_docs=max_docs)
