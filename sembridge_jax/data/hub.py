"""Retrieval benchmarks and training pairs read from the Hugging Face hub in their real file layouts.

MIRACL and Mr.TyDi are script datasets on the hub (miracl.py, mr-tydi.py, ...), which `datasets` >= 4
refuses to run ("Dataset scripts are no longer supported"). The loaders here read the files those scripts
read, through huggingface_hub (cached, resumable, HF_ENDPOINT / HF_HUB_OFFLINE aware):

  miracl/miracl          miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv   qid<TAB>query
                         miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv     qid Q0 docid rel
  miracl/miracl-corpus   miracl-corpus-v1.0-{lang}/docs-{i}.jsonl.gz                       {docid, title, text}
  castorini/mr-tydi      mrtydi-v1.1-{language}/{split}.jsonl.gz      {query_id, query, positive_passages, ...}
  castorini/mr-tydi-corpus  mrtydi-v1.1-{language}/corpus.jsonl.gz                         {docid, title, text}

WebFAQ (PaDaS-Lab/webfaq) is a plain data repo: one config per ISO 639-3 language code ("kor"), a single
split named "default", columns id, origin, url, question, answer (...); it loads with datasets.load_dataset.

Everything returns plain Python structures: corpus {docid: {"title", "text"}}, queries {qid: text},
qrels {qid: {docid: grade}} (grades as in the files; MIRACL's 0 = judged not relevant).
"""
from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from sembridge_jax.lines import DataError, numbered_lines

MIRACL_REPO = "miracl/miracl"
MIRACL_CORPUS_REPO = "miracl/miracl-corpus"
MRTYDI_REPO = "castorini/mr-tydi"
MRTYDI_CORPUS_REPO = "castorini/mr-tydi-corpus"
WEBFAQ_REPO = "PaDaS-Lab/webfaq"
WEBFAQ_SPLIT = "default"  # the only split of every WebFAQ config
WEBFAQ_QUERY_FIELD, WEBFAQ_ANSWER_FIELD = "question", "answer"

# MIRACL split names (the script's and the files') -> the name used in the file names.
MIRACL_SPLITS = {"train": "train", "dev": "dev", "testA": "test-a", "test-a": "test-a", "testB": "test-b",
                 "test-b": "test-b"}
MIRACL_TEST_SPLITS = {"test-a", "test-b"}  # topics only, qrels were not released with them
# ISO 639-1 -> the ISO 639-3 config names of WebFAQ (the paper's languages and MIRACL's).
ISO639_3 = {"ar": "ara", "bn": "ben", "de": "deu", "en": "eng", "es": "spa", "fa": "fas", "fi": "fin", "fr": "fra",
            "hi": "hin", "id": "ind", "ja": "jpn", "ko": "kor", "ru": "rus", "sw": "swa", "te": "tel", "th": "tha",
            "yo": "yor", "zh": "zho"}
# ISO 639-1 -> Mr.TyDi's language names.
MRTYDI_LANGUAGES = {"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
                    "ja": "japanese", "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu", "th": "thai"}

Corpus = dict[str, dict[str, str]]
Queries = dict[str, str]
Qrels = dict[str, dict[str, int]]


# -- hub access ----------------------------------------------------------------------------------------------
def _download(repo: str, filename: str, revision: str | None) -> Path:
    """One dataset file through the huggingface_hub cache; errors name the repo and the file."""
    where = f"{repo}@{revision or 'main'}"
    try:
        return Path(hf_hub_download(repo, filename, repo_type="dataset", revision=revision))
    except RemoteEntryNotFoundError:
        raise FileNotFoundError(f"dataset {where} has no file {filename!r}") from None
    except LocalEntryNotFoundError as e:
        raise FileNotFoundError(f"dataset {where}: {filename!r} is not in the local hub cache and the hub cannot "
                                f"be reached (offline?): {e}") from None
    except GatedRepoError:
        raise PermissionError(f"dataset {repo} is gated: accept its terms on the hub page and log in "
                              f"(HF_TOKEN) before loading {filename!r}") from None
    except RevisionNotFoundError:
        raise FileNotFoundError(f"dataset {repo} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"dataset repo {repo!r} not found on the hub (or private)") from None


def _language_files(repo: str, revision: str | None, root: str, language: str, pattern: str) -> list[str] | None:
    """The repo's files (None offline); a missing language folder `root` lists the languages available."""
    files = _list_files(repo, revision)
    if files is not None and not any(f.startswith(root + "/") for f in files):
        have = ", ".join(_languages(files, pattern))
        raise ValueError(f"dataset {repo} has no language {language!r} (no folder {root}/); available: {have}")
    return files


def _list_files(repo: str, revision: str | None) -> list[str] | None:
    """All file paths of a dataset repo, or None when the hub is offline (callers then probe the cache)."""
    try:
        return HfApi().list_repo_files(repo, repo_type="dataset", revision=revision)
    except OfflineModeIsEnabled:
        return None
    except GatedRepoError:
        raise PermissionError(f"dataset {repo} is gated: accept its terms on the hub page and log in (HF_TOKEN)"
                              ) from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"dataset repo {repo!r} not found on the hub (or private)") from None


def _languages(files: list[str], pattern: str) -> list[str]:
    """Language codes from top-level folder names matching `pattern` (one group)."""
    return sorted({m.group(1) for f in files if (m := re.fullmatch(pattern, f.split("/")[0]))})


def iter_jsonl_gz(path: str | Path) -> Iterator[dict]:
    """Rows of a gzipped JSON-lines file; errors name the file and line."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None


def read_topics(path: str | Path) -> Queries:
    """MIRACL / TREC topics: `qid<TAB>query` per line, no header."""
    out = {}
    for n, line in numbered_lines(path):
        qid, sep, text = ("", "", "") if line is None else line.partition("\t")
        if not sep:
            raise DataError(f"{path}:{n}: " + ("not valid UTF-8" if line is None else "expected 'qid<TAB>query'"))
        out[qid] = text
    return out


def read_trec_qrels(path: str | Path) -> Qrels:
    """TREC qrels: `qid Q0 docid grade` per line (MIRACL separates them by tabs)."""
    out: Qrels = {}
    for n, line in numbered_lines(path):
        parts = [] if line is None else line.split()
        if line is None or len(parts) != 4 or not parts[3].lstrip("-").isdigit():
            problem = ("not valid UTF-8" if line is None else
                       f"expected 'qid Q0 docid grade', got {len(parts)} fields" if len(parts) != 4 else
                       f"grade {parts[3]!r} is not an integer")
            raise DataError(f"{path}:{n}: {problem}")
        out.setdefault(parts[0], {})[parts[2]] = int(parts[3])
    return out


def _select(queries: Queries, qrels: Qrels, max_queries: int) -> tuple[Queries, Qrels]:
    """The queries with a relevant (grade > 0) judgement (all queries when there are no qrels: test splits),
    the first `max_queries` in sorted id order (the order data.retrieval.subsample uses); 0 keeps all.
    Grade-0 judgements of the kept queries stay in their qrels."""
    if qrels:
        qids = sorted(q for q in queries if any(g > 0 for g in qrels.get(q, {}).values()))
    else:
        qids = sorted(queries)
    if max_queries:
        qids = qids[:max_queries]
    return {q: queries[q] for q in qids}, {q: qrels[q] for q in qids if q in qrels}


def _enough(out: Corpus, wanted: set[str] | None, max_docs: int) -> bool:
    """Whether a corpus read can stop: every wanted (judged) passage is in and, for a capped full corpus
    (`max_docs` > 0), so are at least `max_docs` passages."""
    if wanted is None:
        return bool(max_docs) and len(out) >= max_docs
    return wanted.issubset(out) and len(out) >= max_docs


# -- MIRACL ----------------------------------------------------------------------------------------------
def load_miracl(language: str, split: str = "dev", *, corpus: bool | str = True, revision: str | None = None,
                corpus_revision: str | None = None, max_queries: int = 0, max_docs: int = 0, repo: str = MIRACL_REPO,
                corpus_repo: str = MIRACL_CORPUS_REPO) -> tuple[Corpus, Queries, Qrels]:
    """(corpus, queries, qrels) of MIRACL `language` (ISO 639-1, e.g. "ko") and `split`.

    Reads the files of miracl/miracl (topics + qrels TSVs) and miracl/miracl-corpus (jsonl.gz shards)
    that the repos' own loading scripts read. `split`: train, dev, testA/test-a, testB/test-b (the test
    splits have topics but no qrels: qrels come back empty and all topics are returned). `corpus`:
    True = every passage of the language (all shards: ko has 3, en 66), "judged" = only the passages
    judged for the returned queries (shards are read in order and reading stops once all are found),
    False = no corpus. Shards are downloaded one at a time into the hub cache and read line by line.
    `max_docs` > 0 with corpus=True stops after the shard in which every judged passage and `max_docs`
    passages in all have been read (a smaller pool for smoke runs; data.retrieval.subsample then samples it).
    Queries are those with a relevant judgement, the first `max_queries` in sorted id order when > 0.
    """
    split_name = MIRACL_SPLITS.get(split)
    if split_name is None:
        raise ValueError(f"MIRACL split {split!r} unknown; one of {sorted(MIRACL_SPLITS)}")
    if corpus not in (True, False, "judged"):
        raise ValueError(f"corpus must be True, False or 'judged', got {corpus!r}")
    root = f"miracl-v1.0-{language}"
    topics_file = f"{root}/topics/topics.miracl-v1.0-{language}-{split_name}.tsv"
    qrels_file = f"{root}/qrels/qrels.miracl-v1.0-{language}-{split_name}.tsv"
    files = _language_files(repo, revision, root, language, r"miracl-v1\.0-(.+)")
    if files is not None and topics_file not in files:
        have = sorted(f.rsplit("/", 1)[-1] for f in files if f.startswith(f"{root}/topics/"))
        raise FileNotFoundError(f"dataset {repo} has no {topics_file} (split {split!r}); {root}/topics/ has: "
                                f"{', '.join(have)}")
    queries = read_topics(_download(repo, topics_file, revision))
    qrels: Qrels = {}
    if files is None or qrels_file in files or split_name not in MIRACL_TEST_SPLITS:
        try:
            qrels = read_trec_qrels(_download(repo, qrels_file, revision))
        except FileNotFoundError:
            if split_name not in MIRACL_TEST_SPLITS:
                raise
    queries, qrels = _select(queries, qrels, max_queries)
    if not corpus:
        return {}, queries, qrels
    judged = {d for rels in qrels.values() for d in rels}
    if corpus == "judged":
        docs = _read_shards(corpus_repo, language, corpus_revision, judged, keep_all=False)
    else:
        docs = _read_shards(corpus_repo, language, corpus_revision, judged if max_docs else None, max_docs=max_docs)
    return docs, queries, qrels


def miracl_corpus_shards(language: str, *, revision: str | None = None,
                         corpus_repo: str = MIRACL_CORPUS_REPO) -> list[str] | None:
    """The docs-{i}.jsonl.gz shard paths of `language` in numeric order (None when the hub is offline)."""
    files = _list_files(corpus_repo, revision)
    if files is None:
        return None
    root = f"miracl-corpus-v1.0-{language}"
    shards = [f for f in files if re.fullmatch(re.escape(root) + r"/docs-\d+\.jsonl\.gz", f)]
    if not shards:
        have = ", ".join(_languages(files, r"miracl-corpus-v1\.0-(.+)"))
        raise ValueError(f"dataset {corpus_repo} has no corpus for language {language!r} "
                         f"(no {root}/docs-*.jsonl.gz); available: {have}")
    return sorted(shards, key=lambda f: int(re.search(r"docs-(\d+)\.", f).group(1)))


def _read_shards(corpus_repo: str, language: str, revision: str | None, wanted: set[str] | None, *,
                 keep_all: bool = True, max_docs: int = 0) -> Corpus:
    """Passages of the language's shards, in order. `keep_all` False keeps only the `wanted` ones. Reading
    stops once `_enough` says so (with wanted=None and max_docs=0: after the last shard)."""
    shards = miracl_corpus_shards(language, revision=revision, corpus_repo=corpus_repo)
    out: Corpus = {}
    i = 0
    while shards is None or i < len(shards):
        if (wanted is not None or max_docs) and _enough(out, wanted, max_docs):
            break
        name = shards[i] if shards is not None else f"miracl-corpus-v1.0-{language}/docs-{i}.jsonl.gz"
        try:
            path = _download(corpus_repo, name, revision)
        except FileNotFoundError:
            if shards is None and i > 0:  # offline: the cached shards end here
                break
            raise
        for row in iter_jsonl_gz(path):
            if keep_all or row["docid"] in wanted:
                out[str(row["docid"])] = {"title": row.get("title") or "", "text": row.get("text") or ""}
        i += 1
    return out


# -- Mr.TyDi ---------------------------------------------------------------------------------------------
def load_mrtydi(language: str, split: str = "test", *, corpus: bool | str = True, revision: str | None = None,
                corpus_revision: str | None = None, max_queries: int = 0, max_docs: int = 0, repo: str = MRTYDI_REPO,
                corpus_repo: str = MRTYDI_CORPUS_REPO) -> tuple[Corpus, Queries, Qrels]:
    """(corpus, queries, qrels) of Mr.TyDi `language` ("korean", or the ISO 639-1 code "ko") and `split`
    (train, dev, test).

    Reads mrtydi-v1.1-{language}/{split}.jsonl.gz of castorini/mr-tydi (rows {query_id, query,
    positive_passages, negative_passages}; qrels = the positive passages, grade 1) and, for corpus=True,
    mrtydi-v1.1-{language}/corpus.jsonl.gz of castorini/mr-tydi-corpus (one file per language, 228 MB for
    korean). corpus="judged" takes the passages carried by the query rows and downloads no corpus.
    `max_docs` > 0 with corpus=True stops reading the corpus once every judged passage and `max_docs`
    passages in all are in (the file is still downloaded whole: it is one file).
    """
    language = MRTYDI_LANGUAGES.get(language, language)
    if corpus not in (True, False, "judged"):
        raise ValueError(f"corpus must be True, False or 'judged', got {corpus!r}")
    root = f"mrtydi-v1.1-{language}"
    files = _language_files(repo, revision, root, language, r"mrtydi-v1\.1-(.+)")
    if files is not None and f"{root}/{split}.jsonl.gz" not in files:
        have = sorted(f.rsplit("/", 1)[-1].split(".")[0] for f in files
                      if re.fullmatch(re.escape(root) + r"/[^/]+\.jsonl\.gz", f))
        raise FileNotFoundError(f"dataset {repo} has no {root}/{split}.jsonl.gz; splits: {', '.join(have)}")
    queries: Queries = {}
    qrels: Qrels = {}
    passages: Corpus = {}
    for row in iter_jsonl_gz(_download(repo, f"{root}/{split}.jsonl.gz", revision)):
        qid = str(row["query_id"])
        queries[qid] = row["query"]
        qrels[qid] = {str(p["docid"]): 1 for p in row.get("positive_passages") or []}
        for p in list(row.get("positive_passages") or []) + list(row.get("negative_passages") or []):
            passages[str(p["docid"])] = {"title": p.get("title") or "", "text": p.get("text") or ""}
    queries, qrels = _select(queries, qrels, max_queries)
    if not corpus:
        return {}, queries, qrels
    if corpus == "judged":
        judged = {d for rels in qrels.values() for d in rels}
        return {d: p for d, p in passages.items() if d in judged}, queries, qrels
    judged = {d for rels in qrels.values() for d in rels}
    docs: Corpus = {}
    for r in iter_jsonl_gz(_download(corpus_repo, f"{root}/corpus.jsonl.gz", corpus_revision)):
        if max_docs and _enough(docs, judged, max_docs):
            break
        docs[str(r["docid"])] = {"title": r.get("title") or "", "text": r.get("text") or ""}
    return docs, queries, qrels


# One entry point for configs that name the query repo (eval.beir / eval.corpus / eval.subset / eval.split).
RETRIEVAL_LOADERS = {MIRACL_REPO: load_miracl, MRTYDI_REPO: load_mrtydi}


def load_retrieval(repo: str, language: str, split: str, *, corpus_repo: str | None = None, corpus: bool | str = True,
                   revision: str | None = None, max_queries: int = 0, max_docs: int = 0
                   ) -> tuple[Corpus, Queries, Qrels]:
    """load_miracl / load_mrtydi chosen by the query repo id (miracl/miracl, castorini/mr-tydi)."""
    if repo not in RETRIEVAL_LOADERS:
        raise ValueError(f"no hub loader for {repo!r}; known: {sorted(RETRIEVAL_LOADERS)}")
    kwargs = {"corpus_repo": corpus_repo} if corpus_repo else {}
    return RETRIEVAL_LOADERS[repo](language, split, corpus=corpus, revision=revision, max_queries=max_queries,
                                   max_docs=max_docs, **kwargs)


# -- WebFAQ ----------------------------------------------------------------------------------------------
def webfaq_config(language: str) -> str:
    """WebFAQ's config name for `language`: ISO 639-3 ("kor"); ISO 639-1 codes ("ko") are mapped."""
    return ISO639_3.get(language, language)


def load_webfaq(language: str, split: str = WEBFAQ_SPLIT, *, revision: str | None = None, max_rows: int = 0,
                streaming: bool = False, repo: str = WEBFAQ_REPO) -> list[dict[str, str]]:
    """Question/answer records of WebFAQ `language` ("kor" or "ko"), in file order.

    Follows the layout of PaDaS-Lab/webfaq: configs named by ISO 639-3 code, one split "default", columns
    id, origin, url, question, answer (+ semantic_similarity_score, topic, question_type). Loads with
    datasets.load_dataset(repo, config, split="default"); records keep the real column names:
    {"id", "origin", "url", "question", "answer"}. Rows with an empty question or answer are skipped.
    `max_rows` > 0 stops after that many rows (with streaming=True without downloading the rest).
    """
    import datasets  # heavy optional: only WebFAQ training data pays its import time

    config = webfaq_config(language)
    try:
        ds = datasets.load_dataset(repo, config, split=split, revision=revision, streaming=streaming)
    except ValueError as e:
        if "BuilderConfig" in str(e) or "not found" in str(e):
            raise ValueError(f"dataset {repo} has no config {config!r} for language {language!r}: {e}") from None
        raise
    missing = {"question", "answer"} - set(ds.column_names or [])
    if missing:
        raise ValueError(f"dataset {repo} config {config!r}: no column(s) {sorted(missing)}; has {ds.column_names}")
    out = []
    for row in ds:
        if max_rows and len(out) >= max_rows:
            break
        q, a = (row.get("question") or "").strip(), (row.get("answer") or "").strip()
        if q and a:
            out.append({"id": str(row.get("id", "")), "origin": row.get("origin") or "", "url": row.get("url") or "",
                        "question": q, "answer": a})
    return out
