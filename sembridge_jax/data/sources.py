"""The training examples of a `data.train` spec: the reader of its type, then, with `mine_negatives`,
hard negatives mined from a document collection.

READERS maps `data.train.type` to its reader: data/examples.py for labelled sources, and the label-free
`corpus` type, pairs made from the documents of `data.train.corpus` alone (data/pairs.py: title -> body,
span -> document). Mining needs the documents: BEIR and corpus sources bring theirs, other sources name
one with `data.train.corpus`. The miner ranks with BM25 or the dense bridge model (`mine_with`,
evaluation/mining.py, a layer above this one), so the caller passes it in: `load_examples(spec,
miner=mining.miner_from_config(config))`. A query's known positives are the documents of every example
with that query (its id, or its text), and every corpus document whose text equals one of them: the miner never
returns those. The mined ids replace the source's own negatives; the result is cached beside the corpus,
or under `<workdir>/mining/` when that folder is not writable.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from sembridge_jax.data.examples import LoadedExamples, read_beir, read_hf, read_jsonl, read_tfds, read_tsv
from sembridge_jax.data.pairs import corpus_pairs, read_corpus
from sembridge_jax.data.retrieval import RetrievalDataset
from sembridge_jax.lines import DataError
from sembridge_jax.storage import as_path


def pair_examples(corpus: Mapping[str, Mapping[str, str]], spec, max_examples: int = 0) -> list:
    """The label-free pairs of `corpus` (spec's pair_kinds, spans, seed), the first `max_examples` of them.

    Pair n of kind k of document d has the query id 'd#kn' and d as its positive id: the pairs of one
    document share their positive, which the grouped sampler keeps out of each other's batches; a
    labelled query's id cannot look like that.
    """
    pairs = corpus_pairs(corpus, kinds=tuple(spec.pair_kinds), spans_per_doc=spec.spans_per_doc,
                         span_words=tuple(spec.span_words), remove_span=spec.remove_span, seed=spec.seed)
    if max_examples:
        pairs = pairs[:max_examples]
    seen, examples = defaultdict(int), []
    for pair in pairs:
        n = seen[pair.doc_id, pair.kind]
        seen[pair.doc_id, pair.kind] += 1
        examples.append(dataclasses.replace(pair.example, query_id=f"{pair.doc_id}#{pair.kind}{n}",
                                            positive_id=pair.doc_id))
    return examples


def read_corpus_pairs(spec) -> LoadedExamples:
    """The label-free pairs of spec.corpus, seeded by spec.seed (the first max_examples of them)."""
    corpus = read_corpus(spec.corpus, skip_bad_lines=spec.skip_bad_lines)
    return LoadedExamples(pair_examples(corpus, spec, spec.max_examples), 0, f"{spec.corpus} [label-free pairs]",
                          corpus)


READERS = {"jsonl": read_jsonl, "tsv": read_tsv, "beir": read_beir, "hf": read_hf, "tfds": read_tfds,
           "corpus": read_corpus_pairs}


def first_records_problem(spec, n: int = 20) -> str | None:
    """What stops the first `n` usable records of a jsonl / tsv `data.train` source from being read (the
    reader's own checks: encoding, JSON, fields, negatives), or None: a config-time check, before any work."""
    if spec.type not in ("jsonl", "tsv") or not spec.path or not Path(spec.path).is_file():
        return None
    head = copy.deepcopy(spec)
    head.max_examples = n
    try:
        READERS[spec.type](head)
    except DataError as err:
        return str(err)
    return None


# mine_negatives(queries, qrels, corpus, *, depth, count, seed, skip_top, cache_dir) -> {qid: [doc id]}
Miner = Callable[..., Mapping[str, list[str]]]
MINE_WITH = ("bm25", "bridge")  # what ranks the corpus for the miner (evaluation/mining.py ranking_from_config)


def doc_texts(corpus: Mapping[str, Mapping[str, str]], title_in_doc: bool) -> dict[str, str]:
    """{doc id: the text a model sees}: 'title text' (the BEIR convention) or the body alone."""
    if title_in_doc:
        return dict(zip(corpus, RetrievalDataset("", dict(corpus), {}, {}).doc_texts(), strict=True))
    return {doc_id: doc.get("text") or "" for doc_id, doc in corpus.items()}


def mining_cache_dir(spec, workdir: str = "") -> str:
    """The folder of the mining corpus when it is writable, else `<workdir>/mining`."""
    source = Path(spec.corpus or spec.path)
    folder = source if source.is_dir() else source.parent
    if os.access(folder, os.W_OK) or not workdir:
        return str(folder)
    return str(as_path(workdir) / "mining")


def with_mined_negatives(loaded: LoadedExamples, corpus: Mapping[str, Mapping[str, str]], spec, miner: Miner,
                         cache_dir: str | None) -> LoadedExamples:
    """The examples with `spec.num_hard_negatives` mined negatives each (ids and texts), scores dropped.

    An example without a positive id gets the id of the corpus document with its positive's text, if any,
    so that the grouped sampler sees mined negatives and positives in one id space.
    """
    texts = doc_texts(corpus, spec.title_in_doc)
    by_text = defaultdict(list)  # a document's text (with and without its title) -> every id that has it
    for doc_id in sorted(corpus):
        for text in dict.fromkeys((texts[doc_id], corpus[doc_id].get("text") or "")):
            by_text[text.strip()].append(doc_id)
    queries, qrels, examples = {}, defaultdict(dict), []
    for e in loaded.examples:
        qid = e.query_id or e.query
        queries[qid] = e.query
        same = by_text.get(e.positive.strip(), [])
        positive_id = e.positive_id or (same[0] if same else "")
        for doc_id in ([positive_id] if positive_id else []) + same:
            qrels[qid][doc_id] = 1
        examples.append((qid, dataclasses.replace(e, query_id=qid, positive_id=positive_id)))
    negatives = miner(queries, dict(qrels), corpus, depth=spec.mine_depth, count=spec.num_hard_negatives,
                      seed=spec.seed, skip_top=spec.mine_skip_top, cache_dir=cache_dir)
    out = []
    for qid, e in examples:
        ids = tuple(negatives[qid])
        if len(ids) < spec.num_hard_negatives:
            raise DataError(f"{loaded.source}: query {qid!r} gets {len(ids)} mined negatives, "
                            f"data.train.num_hard_negatives={spec.num_hard_negatives}: the corpus has too few "
                            "documents that are not its positives")
        out.append(dataclasses.replace(e, negatives=tuple(texts[d] for d in ids), negative_ids=ids, scores=None))
    return dataclasses.replace(loaded, examples=out)


def load_examples(spec, *, miner: Miner | None = None, workdir: str = "") -> LoadedExamples:
    """Read the examples of a validated `data.train` spec (see data/settings.py), mining hard negatives
    with `miner` when spec.mine_negatives (`workdir`: the cache's fallback when the corpus folder is read-only)."""
    if spec.mine_negatives and miner is None:
        raise DataError("data.train.mine_negatives: no miner given (the pipeline passes "
                        "evaluation.mining.miner_from_config(config))")
    loaded = READERS[spec.type](spec)
    if not (spec.corpus_pairs or spec.mine_negatives):
        return loaded
    # The documents of the corpus pairs and of mining: data.train.corpus, else the source's own.
    corpus = loaded.corpus if spec.type == "corpus" or not spec.corpus else read_corpus(
        spec.corpus, skip_bad_lines=spec.skip_bad_lines)
    if spec.corpus_pairs:
        pairs = pair_examples(corpus, spec)
        loaded = dataclasses.replace(loaded, examples=loaded.examples + pairs, corpus=loaded.corpus or corpus,
                                     source=f"{loaded.source} + label-free pairs of its corpus")
    if not spec.mine_negatives:
        return loaded
    if not corpus:
        raise DataError(f"data.train.mine_negatives: {loaded.source} has no documents to mine; "
                        "set data.train.corpus to a BEIR corpus.jsonl")
    return with_mined_negatives(loaded, corpus, spec, miner, mining_cache_dir(spec, workdir))
