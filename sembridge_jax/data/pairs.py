"""Label-free training pairs from a target-language document collection (a BEIR corpus.jsonl, nothing else).

Two kinds of (pseudo-query, positive document) pairs:
  * title -> body: a document's title as the query, its body as the positive (documents with both);
  * span -> document: a random contiguous span of the body's words as the query, the document as the
    positive, by default WITHOUT the span: the inverse cloze task (Lee, Chang & Toutanova 2019,
    "Latent Retrieval for Weakly Supervised Open Domain QA": a sentence as the query, the rest of its
    passage as the context, removed from it 90% of the time), in its cropping form from Contriever
    (Izacard et al. 2022, "Unsupervised Dense Information Retrieval with Contrastive Learning":
    random spans of one document as query and key). With the span left in, the model can match it
    word for word; taking it out asks for the document's other words, closer to a real query.
Words are whitespace-separated runs (for a script written without spaces, a "word" is a whole run).
A span has `span_words` = (min, max) words but never more than half of the body, so the positive
keeps most of its document; a body too short for `min` gives no span pair. Each document draws from
its own generator, seeded by (seed, document id): the pairs of a document do not depend on the others.
"""
from __future__ import annotations

import dataclasses
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sembridge_jax.data.examples import Example
from sembridge_jax.lines import DataError, numbered_lines

PAIR_KINDS = ("title", "span")
_WORD = re.compile(r"\S+")


@dataclasses.dataclass(frozen=True)
class CorpusPair:
    """A label-free training example and where it came from (doc_id: for mining, which must exclude
    the source document, and for grouping pairs of the same document)."""

    doc_id: str
    kind: str  # one of PAIR_KINDS
    example: Example


def _corpus_record(line: str | None) -> tuple[str, dict[str, str]]:
    if line is None:
        raise ValueError("not valid UTF-8")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON ({err.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("_id"), (str, int)):
        raise ValueError(f"expected an object with an '_id', got {line[:80]!r}")
    doc = {key: record.get(key) or "" for key in ("title", "text")}
    if not all(isinstance(v, str) for v in doc.values()):
        raise ValueError(f"'title' and 'text' must be strings, got {line[:80]!r}")
    return str(record["_id"]), doc


def read_corpus(path: str | Path, *, skip_bad_lines: bool = False) -> dict[str, dict[str, str]]:
    """{doc id: {"title", "text"}} from a BEIR corpus.jsonl (or the BEIR folder that holds one).

    A line that is not a JSON object with an "_id" (and string "title" / "text" when present) fails
    with file:line, or is skipped with skip_bad_lines.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise DataError(f"corpus file {path} does not exist")
    corpus = {}
    for number, line in numbered_lines(path):
        try:
            doc_id, doc = _corpus_record(line)
        except ValueError as err:
            if not skip_bad_lines:
                raise DataError(f"{path}:{number}: {err}") from None
            continue
        corpus[doc_id] = doc
    if not corpus:
        raise DataError(f"{path}: no documents")
    return corpus


def _check(kinds: Sequence[str], spans_per_doc: int, span_words: Sequence[int]) -> None:
    unknown = sorted(set(kinds) - set(PAIR_KINDS))
    if unknown or not kinds:
        raise ValueError(f"pair kinds must be a non-empty subset of {PAIR_KINDS}, got {tuple(kinds)}")
    if spans_per_doc < 0:
        raise ValueError(f"spans_per_doc must be >= 0, got {spans_per_doc}")
    if len(span_words) != 2 or not 1 <= span_words[0] <= span_words[1]:
        raise ValueError(f"span_words must be (min, max) with 1 <= min <= max, got {tuple(span_words)}")


def _span_pair(rng: np.random.Generator, title: str, body: str, words: list[re.Match], span_words,
               remove_span: bool) -> Example | None:
    longest = min(span_words[1], len(words) // 2)
    if longest < span_words[0]:
        return None
    length = int(rng.integers(span_words[0], longest + 1))
    first = int(rng.integers(0, len(words) - length + 1))
    start, end = words[first].start(), words[first + length - 1].end()
    query = " ".join(w.group() for w in words[first:first + length])
    rest = f"{body[:start].rstrip()} {body[end:].lstrip()}".strip() if remove_span else body
    return Example(query, f"{title} {rest}" if title else rest)


def corpus_pairs(corpus: Mapping[str, Mapping[str, str]], *, kinds: Sequence[str] = PAIR_KINDS,
                 spans_per_doc: int = 1, span_words: Sequence[int] = (8, 24), remove_span: bool = True,
                 seed: int = 0) -> list[CorpusPair]:
    """The label-free pairs of every document, in corpus order (title pair first, then its spans).

    corpus {doc id: {"title", "text"}}; a document with an empty body gives nothing. The positive of
    a span pair is "title body" (the BEIR convention), without the span when remove_span.
    """
    _check(kinds, spans_per_doc, span_words)
    out = []
    for doc_id, doc in corpus.items():
        title, body = (doc.get("title") or "").strip(), (doc.get("text") or "").strip()
        if not body:
            continue
        if "title" in kinds and title:
            out.append(CorpusPair(doc_id, "title", Example(title, body)))
        if "span" in kinds and spans_per_doc:
            rng = np.random.default_rng([seed, zlib.crc32(doc_id.encode())])
            words = list(_WORD.finditer(body))
            for _ in range(spans_per_doc):
                example = _span_pair(rng, title, body, words, span_words, remove_span)
                if example is None:
                    break
                out.append(CorpusPair(doc_id, "span", example))
    if not out:
        raise DataError("corpus_pairs: no document gives a pair (every body is empty or shorter than "
                        f"{2 * span_words[0]} words, and no document has a title)")
    return out
