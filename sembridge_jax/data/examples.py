"""Readers that turn a `data.train` source spec into a list of `Example`s (host side).

Sources: JSONL / TSV files, BEIR folders (one example per positive qrel), Hugging Face
datasets and tensorflow-datasets. A malformed record fails with `file:line` (or dataset
split + row), or is skipped and counted when `skip_bad_lines` is set. The table of readers per
`data.train.type` and the loading with mined hard negatives are in data/sources.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sembridge_jax.data.retrieval import load_beir
from sembridge_jax.lines import DataError, numbered_lines


@dataclasses.dataclass(frozen=True)
class Example:
    """One training example: a query, its positive, hard negatives and teacher scores.

    `scores`, when present, holds teacher scores for (positive, *negatives) in that order. The ids, where
    the source has them (BEIR qrels, corpus pairs, mined negatives), identify the query and documents for
    hard-negative mining and the query-grouped sampler; '' (or no negative_ids) = the text is the identity.
    """

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    scores: tuple[float, ...] | None = None
    query_id: str = ""
    positive_id: str = ""
    negative_ids: tuple[str, ...] = ()


@dataclasses.dataclass
class LoadedExamples:
    """What a reader returns: the examples and how many bad records it skipped."""

    examples: list[Example]
    skipped: int
    source: str  # human-readable description for logs
    corpus: dict[str, dict[str, str]] | None = None  # {doc id: {"title", "text"}} of a source that has one


def _text(value: Any, field: str) -> str:
    if isinstance(value, bytes):  # tfds Text features come back as bytes
        value = value.decode("utf-8")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {field!r} must be a non-empty string, got {value!r:.80}")
    return value


def _record_to_example(record: Any, spec) -> Example:
    """Map a dict-like record to an Example using the field names of `spec`."""
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type(record).__name__}")
    for field in (spec.query_field, spec.positive_field):
        if field not in record:
            raise ValueError(f"missing field {field!r} (has {sorted(record)[:8]})")
    query = _text(record[spec.query_field], spec.query_field)
    positive = _text(record[spec.positive_field], spec.positive_field)
    negatives: tuple[str, ...] = ()
    if spec.negatives_field and record.get(spec.negatives_field) is not None:
        raw = record[spec.negatives_field]
        raw = [raw] if isinstance(raw, (str, bytes)) else list(raw)
        negatives = tuple(_text(n, spec.negatives_field) for n in raw)
    scores = None
    if spec.scores_field and record.get(spec.scores_field) is not None:
        raw = record[spec.scores_field]
        scores = tuple(float(s) for s in (raw if not isinstance(raw, (int, float)) else [raw]))
        if len(scores) != 1 + len(negatives):
            raise ValueError(f"field {spec.scores_field!r} has {len(scores)} scores for "
                             f"1 positive + {len(negatives)} negatives")
    return Example(query, positive, negatives, scores)


def _fit_negatives(example: Example, num_hard_negatives: int) -> Example:
    """Keep exactly `num_hard_negatives` negatives (static shapes); too few is an error."""
    if len(example.negatives) < num_hard_negatives:
        raise ValueError(f"has {len(example.negatives)} hard negatives, "
                         f"data.train.num_hard_negatives={num_hard_negatives}")
    keep = 1 + num_hard_negatives
    return dataclasses.replace(
        example, negatives=example.negatives[:num_hard_negatives],
        scores=None if example.scores is None else example.scores[:keep])


def _collect(records: Iterable[tuple[str, Callable[[], Example]]], spec, source: str,
             corpus: dict[str, dict[str, str]] | None = None) -> LoadedExamples:
    """Build examples from (location, thunk) pairs, failing or skipping on bad records. With
    mine_negatives the source's own negatives are kept whole: mining replaces them (data/sources.py)."""
    examples, skipped = [], 0
    wanted = 0 if spec.get("mine_negatives") else spec.num_hard_negatives
    for where, make in records:
        try:
            example = _fit_negatives(make(), wanted)
        except (ValueError, TypeError, KeyError) as err:
            if not spec.skip_bad_lines:
                raise DataError(f"{where}: {err}") from None
            skipped += 1
            continue
        examples.append(example)
        if spec.max_examples and len(examples) >= spec.max_examples:
            break
    if not examples:
        raise DataError(f"{source}: no usable examples ({skipped} bad records skipped)")
    return LoadedExamples(examples, skipped, source, corpus)


def _decoded(line: str | None) -> str:
    if line is None:
        raise ValueError("not valid UTF-8")
    return line


def read_jsonl(spec) -> LoadedExamples:
    """One JSON object per line with spec.query_field / positive_field (/ negatives, scores)."""
    path = Path(spec.path)

    def records():
        for number, line in numbered_lines(path):
            def make(line=line):
                try:
                    record = json.loads(_decoded(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"invalid JSON ({err.msg})") from None
                return _record_to_example(record, spec)
            yield f"{path}:{number}", make

    return _collect(records(), spec, str(path))


def read_tsv(spec) -> LoadedExamples:
    """Tab-separated `query<TAB>positive[<TAB>negative...]`; no csv quoting (texts hold '"')."""
    path = Path(spec.path)

    def records():
        for number, line in numbered_lines(path):
            if number == 1 and spec.tsv_header:
                continue

            def make(line=line):
                cols = _decoded(line).split("\t")
                if len(cols) < 2:
                    raise ValueError(f"expected >= 2 tab-separated columns, got {len(cols)}")
                texts = [_text(c, f"column {i + 1}") for i, c in enumerate(cols)]
                return Example(texts[0], texts[1], tuple(texts[2:]))
            yield f"{path}:{number}", make

    return _collect(records(), spec, str(path))


def read_beir(spec) -> LoadedExamples:
    """One example per positive qrel (score > 0) of spec.split: (query text, document text).

    The folder is read by `data.retrieval.load_beir` (the same reader the evaluation uses).
    """
    folder = Path(spec.path)
    try:
        data = load_beir(folder, spec.split, skip_bad_lines=spec.skip_bad_lines)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise DataError(f"{folder}: {err}") from None
    texts = dict(zip(data.doc_ids(), data.doc_texts(), strict=True)) if spec.title_in_doc else {
        k: v["text"] for k, v in data.corpus.items()}
    qrels_path = folder / "qrels" / f"{spec.split}.tsv"

    def records():
        for qid in sorted(data.qrels):
            for docid, score in sorted(data.qrels[qid].items()):
                if score <= 0:
                    continue

                def make(qid=qid, docid=docid):
                    if docid not in texts:
                        raise ValueError(f"corpus id {docid!r} not in corpus.jsonl")
                    return Example(_text(data.queries[qid], "query"), _text(texts[docid], "document"),
                                   query_id=qid, positive_id=docid)
                yield f"{qrels_path} (query {qid}, doc {docid})", make

    return _collect(records(), spec, f"{folder} [{spec.split}]", data.corpus)


def read_hf(spec) -> LoadedExamples:
    """A Hugging Face dataset: hub id (+ subset) or a local builder ("json"/"parquet") with
    spec.path as data_files. Rows are mapped with the spec's field names.

    With `max_examples` a hub dataset is streamed: only the first rows are downloaded (WebFAQ-ko is
    millions of rows), in the same file order as the full download. Without it the whole split is
    downloaded once into the datasets cache.
    """
    import datasets  # heavy optional: only hf sources pay its import time

    kwargs = {"split": spec.split}
    if spec.path:
        kwargs["data_files"] = spec.path
    elif spec.max_examples:
        kwargs["streaming"] = True
    label = f"hf:{spec.name}{'/' + spec.subset if spec.subset else ''} [{spec.split}]"
    try:
        dataset = datasets.load_dataset(spec.name, spec.subset or None, **kwargs)
    except ValueError as err:  # unknown split / config: datasets lists the valid ones
        raise DataError(f"{label}: {err}") from None

    def records():
        for i, row in enumerate(dataset):
            yield f"{label} row {i}", (lambda row=row: _record_to_example(row, spec))

    return _collect(records(), spec, label)


def read_tfds(spec) -> LoadedExamples:
    """A prepared tensorflow-datasets dataset (e.g. xquad/tydi_qa: question -> context).

    Reads through `as_data_source` (array_record files), which needs no TensorFlow; prepare the
    dataset once with `tfds build NAME --file_format=array_record [--data_dir DIR]`.
    """
    import tensorflow_datasets as tfds  # heavy optional: only tfds sources pay its import time

    label = f"tfds:{spec.name} [{spec.split}]"
    builder = tfds.builder(spec.name, data_dir=spec.data_dir or None)
    try:
        source = builder.as_data_source(split=spec.split)
    except Exception as err:  # tfds raises several types for "not prepared" / wrong file format
        raise DataError(f"{label}: cannot open as a data source ({err}); prepare it with "
                        f"`tfds build {spec.name} --file_format=array_record`") from None

    def records():
        for i in range(len(source)):
            yield f"{label} row {i}", (lambda i=i: _record_to_example(dict(source[i]), spec))

    return _collect(records(), spec, label)


def read_parallel_tsv(path: str | Path, *, max_pairs: int = 0, skip_bad_lines: bool = False,
                      ) -> tuple[list[tuple[str, str]], int]:
    """Parallel pairs "english<TAB>target" with a header line; split on tab, no csv quoting.

    Returns (pairs, skipped). A line without exactly two non-empty columns fails with file:line
    unless skip_bad_lines.
    """
    path = Path(path)
    pairs, skipped = [], 0
    for number, line in numbered_lines(path):
        if number == 1:
            continue  # header, e.g. "en\tko"
        cols = [] if line is None else line.split("\t")
        if len(cols) != 2 or not cols[0].strip() or not cols[1].strip():
            if not skip_bad_lines:
                problem = "not valid UTF-8" if line is None else "expected 'english<TAB>target' (2 non-empty columns)"
                raise DataError(f"{path}:{number}: {problem}")
            skipped += 1
            continue
        pairs.append((cols[0], cols[1]))
        if max_pairs and len(pairs) >= max_pairs:
            break
    if not pairs:
        raise DataError(f"{path}: no parallel pairs")
    return pairs, skipped
