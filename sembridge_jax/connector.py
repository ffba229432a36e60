"""The connector route's whole job (docs/methods.md, "Connector route"): align -> fine-tune -> evaluate -> export.

    python -m sembridge_jax.connector --config configs/connector_ko.py [--workdir DIR] [--config.a.b=value]

Stages, each a `training.trainer.fit` run in `<workdir>/stages/<name>/` (checkpoints, resume, metrics,
curves; a finished stage is restored, not retrained):
  align_en        English text only: the connector model reproduces the English SPLADE's raw max logits
                  for the same English text (MILCO sparse MSE with margin, + optional vector InfoNCE);
  align_parallel  the target side of parallel pairs against the teacher's logits of the English side
                  (English texts mixed in);
  retrieval       InfoNCE + FLOPS on target-language (query, page) pairs, + InfoNCE of the queries against
                  the untouched English model's vectors of the English pages (cross-lingual term);
  xling_queries   the queries only (no page forward): the cross-lingual InfoNCE + FLOPS on queries.
The frozen encoders run once per text (`training.connector_data` caches). After every stage: target ->
target retrieval and target queries against the English index, through `evaluation.evaluator`; the
results go to `<workdir>/results.{json,md}`, the model to `<workdir>/export` (`SparseEncoder.from_pretrained`)
and `<workdir>/export_st` (`sentence_transformers.SparseEncoder(path, trust_remote_code=True)`). With
`connector.memory` (models/memory.py) the queries against the English index also get the parallel memory's
vector (rows "(xling)"; "(xling, no memory)" without it), the export holds the memory
(`SparseEncoder.encode_english_queries`) and `<workdir>/export_st_xling` is that query encoder for
sentence-transformers. With `model.query_encoder = "idf"` (and `connector.echo`) the target queries' LexEcho
block holds the IDF of their bridge tokens over `model.idf_corpus` instead of the echo head's weights (rows
"(target)"; "(target, model queries)" with the head's), the English block stays the model's; the export holds
the weights (idf.json: `SparseEncoder.encode_queries`) and `<workdir>/export_st_queries` is that query encoder
for sentence-transformers.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import sys
import time
from pathlib import Path

import ml_collections
import numpy as np
import scipy.sparse as sp
from flax import nnx

from sembridge_jax.api import SparseEncoder
from sembridge_jax.bridge.encode import bridge_identity, resolve_bridge
from sembridge_jax.cli import keep_freed_memory, run_cli
from sembridge_jax.config import default_config, parse_config_args
from sembridge_jax.data.examples import read_parallel_tsv
from sembridge_jax.data.idf import query_weights_for
from sembridge_jax.data.pairs import read_corpus
from sembridge_jax.data.retrieval import RetrievalDataset, build_mixed_pool, load_beir
from sembridge_jax.data.sources import doc_texts, load_examples
from sembridge_jax.evaluation.encode import CorpusEncoder, SparseCollection
from sembridge_jax.evaluation.evaluator import EvalSettings, encode_dataset, evaluate_bm25, evaluate_sparse
from sembridge_jax.evaluation.mining import miner_from_config
from sembridge_jax.evaluation.report import write_report
from sembridge_jax.export.connector import output_names, save_connector
from sembridge_jax.export.connector_st import export_connector_st
from sembridge_jax.hf.load import load_pretrained
from sembridge_jax.models.connector import ENGLISH_PARTS, ConnectorConfig, ConnectorSparseEncoder
from sembridge_jax.models.memory import ParallelMemory
from sembridge_jax.models.query_weights import with_static_block
from sembridge_jax.training import losses, trainer
from sembridge_jax.training.connector_data import (
    AlignBatches,
    RaggedStates,
    RetrievalBatches,
    bridge_states,
    echo_targets,
    encode_states,
    pair_rows,
    teacher_logits,
)
from sembridge_jax.training.connector_objectives import (
    AlignSettings,
    align_objective,
    query_xling_objective,
    retrieval_objective,
)
from sembridge_jax.training.connector_settings import STAGES

log = logging.getLogger(__name__)
# connector keys that only say where caches live and what is evaluated after the last stage
EVAL_ONLY = ("state_cache", "mixed_pool", "combine_with", "memory")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _lines(text: str, max_chars: int):
    """Non-empty lines of `text`; a longer line is split into sentences, each cut to max_chars."""
    for line in text.split("\n"):
        line = " ".join(line.split())
        if len(line) <= max_chars:
            if line:
                yield line
            continue
        for sentence in _SENTENCE_END.split(line):
            if sentence:
                yield sentence[:max_chars]


def english_texts(cfg, seed: int) -> list[str]:
    """The English alignment texts: column 1 of `cfg.tsv` and the lines of `cfg.corpus`'s pages (titles
    included), deduplicated, a seeded sample of `cfg.max_texts`."""
    texts: list[str] = []
    if cfg.tsv:
        texts += [english for english, _ in read_parallel_tsv(cfg.tsv)[0]]
    if cfg.corpus:
        texts += [field for doc in read_corpus(cfg.corpus).values() for field in (doc["title"], doc["text"])]
    unique = list(dict.fromkeys(t for text in texts for t in _lines(text, cfg.max_chars) if len(t) >= 3))
    if not unique:
        raise ValueError(f"connector.english: no English text in {cfg.tsv or ''} {cfg.corpus or ''}")
    rng = np.random.default_rng(seed)
    return [unique[i] for i in rng.permutation(len(unique))[:cfg.max_texts]]


def fusion_weight(q_a, d_a, q_b, d_b) -> float:
    """Weight of model b's query vectors in a fused [a | b] score: mean query norm x mean page norm of a over
    the same of b, so that both models contribute scores of the same typical size (no labels used)."""
    def mean_norm(m) -> float:
        return float(np.sqrt(np.asarray(m.multiply(m).sum(axis=1))).mean())
    return mean_norm(q_a) * mean_norm(d_a) / max(mean_norm(q_b) * mean_norm(d_b), 1e-12)


def stage_config(config, name: str) -> ml_collections.ConfigDict:
    """The run config with `train` set from stage `name`'s section (5 % warmup, cosine decay; the English parts
    at `connector.english_lr_scale` x the connector's learning rate: at the same rate they collapsed to one
    input-independent vector within 20 steps of align_en). The later stages' sections, the evaluation-only
    keys and, before retrieval, `data.train`, the pages' length and the bridge's mining prompts are reset to
    their defaults:
    they have no part in what this stage trains, so changing them (e.g. turning a later stage off, mining
    negatives) reuses the finished stages."""
    c = ml_collections.ConfigDict(config.to_dict())
    stage, defaults = config.connector[name], default_config()
    for key in EVAL_ONLY + STAGES[STAGES.index(name) + 1:]:
        c.connector[key] = defaults.connector[key]
    if STAGES.index(name) < STAGES.index("retrieval"):  # the retrieval pairs, their mining and page length
        c.data.train = defaults.data.train
        c.model.max_doc_length = defaults.model.max_doc_length
        c.bridge.query_prompt, c.bridge.doc_prompt = defaults.bridge.query_prompt, defaults.bridge.doc_prompt
    c.train.num_steps = stage.steps
    c.train.batch_size = stage.batch_size
    c.train.learning_rate = stage.learning_rate
    c.train.warmup_steps = max(1, stage.steps // 20)
    c.train.decay = "cosine"
    c.train.grad_accum_steps = 1
    c.train.average_every = 0
    c.train.lr_scales = tuple((part, config.connector.english_lr_scale) for part in ENGLISH_PARTS)
    return c


class Job:
    """The frozen models, the caches and the datasets of one run; `run()` does the stages (the trained
    model is `self.model` afterwards)."""

    def __init__(self, config):
        self.config, k = config, config.connector
        self.workdir = Path(config.workdir)
        self.cache = Path(k.state_cache or self.workdir / "cache")
        self.teacher, self.english_tokenizer, _ = load_pretrained(config.source)  # untouched: targets + index
        self.teacher_id = bridge_identity(config.source)
        self.bridge_folder = resolve_bridge(config.bridge.model)
        self.bridge, self.bridge_tokenizer, _ = load_pretrained(self.bridge_folder)
        self.bridge_id = bridge_identity(self.bridge_folder)
        # the LexEcho block's query weights (model.query_encoder = "idf"), over the bridge tokenizer
        self.query_weights = query_weights_for(config, self.bridge_tokenizer, self.bridge.config.vocab_size)
        self.eval_settings = EvalSettings(
            measures=tuple(config.eval.metrics), depth=config.eval.k, batch_size=config.eval.batch_size,
            query_max_length=config.model.max_query_length, doc_max_length=config.model.max_doc_length,
            cache_dir=str(self.cache / "eval"))
        self.dev = load_beir(config.eval.beir, config.eval.split)
        self.english_index = None
        self.memory: ParallelMemory | None = None  # built by run()
        if k.english_index:
            pages = load_beir(k.english_index, config.eval.split)
            self.english_pages = pages
            self.english_index = CorpusEncoder(SparseEncoder(self.teacher, self.english_tokenizer)).encode(
                pages.doc_ids(), pages.doc_texts(), max_length=config.model.max_doc_length,
                batch_size=config.eval.batch_size, cache_dir=self.eval_settings.cache_dir)

    def states(self, texts, max_length: int, desc: str) -> RaggedStates:
        return bridge_states(self.bridge, self.bridge_tokenizer, texts, max_length=max_length,
                             identity=self.bridge_id, cache_dir=self.cache, desc=desc)

    def targets(self, english, max_length: int) -> sp.csr_matrix:
        return teacher_logits(self.teacher, self.english_tokenizer, english, max_length=max_length,
                              identity=self.teacher_id, cache_dir=self.cache)

    def new_model(self) -> ConnectorSparseEncoder:
        c, k = self.config, self.config.connector
        english, _, _ = load_pretrained(c.source, dtype=c.model.dtype)
        cfg = ConnectorConfig(english.config, self.bridge.config.hidden_size, kind=k.kind, connector_hidden=k.hidden,
                              n_added=k.n_added, train_english=k.train_english, dtype=c.model.dtype, echo=k.echo,
                              echo_pooling=k.echo_pooling, bridge_vocab=self.bridge.config.vocab_size)
        return ConnectorSparseEncoder(cfg, nnx.Rngs(c.seed), english=english)

    # -------------------------------------------------------------------------------------- data
    def english_data(self) -> tuple[list[str], RaggedStates, sp.csr_matrix]:
        """The English alignment texts, their bridge states and teacher logits (cached)."""
        k = self.config.connector
        texts = english_texts(k.english, self.config.seed)
        return (texts, self.states(texts, k.english.max_length, "bridge: English"),
                self.targets(texts, k.english.max_length))

    def align_en_data(self, stage) -> AlignBatches:
        k = self.config.connector
        texts, states, targets = self.english_data()
        echo = echo_targets(self.bridge_tokenizer, self.english_tokenizer, texts, targets,
                            max_length=k.english.max_length) if k.echo and stage.echo else None
        return AlignBatches(states, targets, batch_size=stage.batch_size, length=k.english.max_length,
                            seed=self.config.seed, echo=echo)

    def parallel_data(self, n: int) -> tuple[list, RaggedStates, sp.csr_matrix]:
        """The first n pairs of data.parallel.path, their target sides' bridge states and their English sides'
        teacher logits. Computed (and cached) once for the most pairs the job uses, the parallel memory's or
        align_parallel's, and sliced: the two share the bridge and teacher passes of their common pairs."""
        k, c = self.config.connector, self.config
        most = max(n, k.memory.max_pairs, k.align_parallel.max_pairs if k.align_parallel.steps else 0)
        pairs, _ = read_parallel_tsv(c.data.parallel.path, max_pairs=most)
        states = self.states([p[1] for p in pairs], k.english.max_length, "bridge: parallel")
        targets = self.targets([p[0] for p in pairs], k.english.max_length)
        n = min(n, len(pairs))
        return pairs[:n], states.head(n), targets[:n]

    def parallel_memory(self) -> ParallelMemory | None:
        """The parallel memory of `connector.memory` (None when off): the first max_pairs pairs' target-side bridge
        pools and the untouched English model's SPLADE vectors of their English sides."""
        m = self.config.connector.memory
        if not m.max_pairs:
            return None
        _, states, vectors = self.parallel_data(m.max_pairs)
        vectors = vectors.copy()
        vectors.data = np.log1p(vectors.data)  # raw positive max logits -> SPLADE weights
        return ParallelMemory.build(states.means(), vectors, k=m.k, temperature=m.temperature, weight=m.weight)

    def align_parallel_data(self, stage) -> AlignBatches:
        k, c = self.config.connector, self.config
        _, pair_states, pair_targets = self.parallel_data(stage.max_pairs)
        states, targets = [pair_states], [pair_targets]
        if stage.english_mix and (k.english.tsv or k.english.corpus):
            _, mix_states, mix_targets = self.english_data()
            states.append(mix_states.head(stage.english_mix))
            targets.append(mix_targets[:stage.english_mix])
        return AlignBatches(RaggedStates.concat(states), sp.vstack(targets, format="csr"),
                            batch_size=stage.batch_size, length=k.english.max_length, seed=c.seed)

    def retrieval_data(self, stage, *, pages: bool = True) -> RetrievalBatches:
        """The examples of `data.train` as train.py reads them (`data.sources.load_examples`: any source type,
        + `corpus_pairs`, + `num_hard_negatives` mined pages with `mine_negatives`), one (query, positive) pair
        each; `pages=False`: queries + English page vectors only. Pages are the source's corpus in its order
        (the dev pages' cached states when they are the same pages), then any other positive or negative text."""
        c, t = self.config, self.config.data.train
        miner = miner_from_config(c) if pages and t.mine_negatives else None
        spec = t if miner or not t.mine_negatives else ml_collections.ConfigDict(
            {**t.to_dict(), "mine_negatives": False, "num_hard_negatives": 0})  # a query-only stream mines nothing
        loaded = load_examples(spec, miner=miner, workdir=str(self.workdir))
        rows = pair_rows(loaded.examples, list(doc_texts(loaded.corpus or {}, t.title_in_doc).values()))
        docs, n = None, len(loaded.corpus or {})
        if pages:
            docs = RaggedStates.concat([self.states(texts, c.model.max_doc_length, f"bridge: {desc}")
                                        for texts, desc in ((rows.pages[:n], "pages"), (rows.pages[n:], "other pages"))
                                        if texts])
        return RetrievalBatches(
            self.states(rows.queries, stage.query_length, "bridge: queries"), docs, rows.pairs,
            batch_size=stage.batch_size, query_length=stage.query_length,
            doc_length=stage.doc_length if pages else 0, seed=c.seed, negatives=rows.negatives,
            english_docs=self.english_rows([e.positive_id for e in loaded.examples]) if stage.xling else None)

    def english_rows(self, doc_ids) -> sp.csr_matrix:
        """The English index's vectors of `doc_ids` (an all-zero row where the English side lacks the page)."""
        pos = {d: i for i, d in enumerate(self.english_index.ids)}
        rows = [pos.get(d, -1) for d in doc_ids]
        out = self.english_index.matrix[np.maximum(rows, 0)].tolil()
        for r, p in enumerate(rows):
            if p < 0:
                out.rows[r], out.data[r] = [], []
        return out.tocsr()

    # -------------------------------------------------------------------------------------- evaluation
    def encode(self, model, texts, max_length: int, desc: str) -> sp.csr_matrix:
        return encode_states(model, self.states(texts, max_length, desc), max_length=max_length)

    def evaluate(self, model, name: str) -> tuple[list[dict], SparseCollection, SparseCollection]:
        """Target queries against target pages (both through the connector model, the queries' LexEcho block
        at the query weights when there are some, and then also at the echo head's; with LexEcho also without
        its block) and, with an English index, against the English pages encoded by the untouched English model
        (English block only, + the parallel memory's vector when there is one, and then also without it); also the
        encoded dev queries and pages."""
        s = self.eval_settings
        t0 = time.perf_counter()
        n_en = model.config.english_size
        vocab = output_names(model.config, self.english_tokenizer, self.bridge_tokenizer)
        query_states = self.states(list(self.dev.queries.values()), s.query_max_length, "bridge: dev queries")
        encoded = encode_states(model, query_states, max_length=s.query_max_length)
        queries = SparseCollection(list(self.dev.queries), encoded if self.query_weights is None else
                                   with_static_block(encoded, query_states.id_lists(s.query_max_length),
                                                     self.query_weights), vocab)
        docs = SparseCollection(self.dev.doc_ids(), self.encode(model, self.dev.doc_texts(), s.doc_max_length,
                                                                "bridge: pages"), vocab)
        encode_s = time.perf_counter() - t0
        rows = [{**evaluate_sparse(queries, docs, self.dev, s, f"{name} (target)"), "encode_s": encode_s}]
        if self.query_weights is not None:
            rows.append(evaluate_sparse(SparseCollection(queries.ids, encoded, vocab), docs, self.dev, s,
                                        f"{name} (target, model queries)"))
        english_q = SparseCollection(queries.ids, queries.matrix[:, :n_en], vocab[:n_en])
        if model.config.echo:
            rows.append(evaluate_sparse(english_q, SparseCollection(docs.ids, docs.matrix[:, :n_en], vocab[:n_en]),
                                        self.dev, s, f"{name} (target, no echo)"))
        if self.english_index is not None:
            if self.memory is not None:
                with_memory = SparseCollection(english_q.ids, self.memory.add_to(english_q.matrix, query_states.means()),
                                               english_q.vocab)
                rows.append(evaluate_sparse(with_memory, self.english_index, self.xling_dataset(), s, f"{name} (xling)"))
            rows.append(evaluate_sparse(english_q, self.english_index, self.xling_dataset(), s,
                                        f"{name} (xling{', no memory' if self.memory is not None else ''})"))
        return rows, queries, docs

    def mixed_pool_row(self, model, name: str, queries: SparseCollection, docs: SparseCollection) -> dict:
        """Target queries against ONE pool of the target and the English pages, both through the connector
        model (`data.retrieval.build_mixed_pool`): nDCG@10 with both copies relevant, and the English
        inclination (Max@R, Complete@K). `queries` / `docs`: the dev set as `evaluate` encoded it (the pool's
        queries are a subset of its queries)."""
        s = dataclasses.replace(self.eval_settings, inclination=True)
        pool = build_mixed_pool(self.dev, self.english_pages)
        english = self.encode(model, self.english_pages.doc_texts(), s.doc_max_length, "bridge: English pages")
        row = {q: i for i, q in enumerate(queries.ids)}
        q = queries.matrix[[row[q] for q in pool.queries]]
        return evaluate_sparse(SparseCollection(list(pool.queries), q, docs.vocab),
                               SparseCollection(pool.doc_ids(), sp.vstack([docs.matrix, english], format="csr"),
                                                docs.vocab), pool, s, f"{name} (mixed pool)")

    def fusion_row(self, name: str, queries: SparseCollection, docs: SparseCollection) -> dict:
        """Score fusion with a vocabulary-transfer model (`connector.combine_with`): one vector over
        [connector vocabulary | target vocabulary] per text, the target block of the QUERIES weighted by
        `fusion_weight` (labels unused), so the pages form one index."""
        s = self.eval_settings
        other = CorpusEncoder(SparseEncoder.from_pretrained(self.config.connector.combine_with))
        oq, od = encode_dataset(other, self.dev, s)  # its own query weights, if the folder has them
        w = fusion_weight(queries.matrix, docs.matrix, oq.matrix, od.matrix)
        vocab = docs.vocab + other.vocab
        fq = SparseCollection(queries.ids, sp.hstack([queries.matrix, w * oq.matrix], format="csr"), vocab)
        fd = SparseCollection(docs.ids, sp.hstack([docs.matrix, od.matrix], format="csr"), vocab)
        rows = [evaluate_sparse(oq, od, self.dev, s, f"{self.config.connector.combine_with} (target)")]
        return rows + [{**evaluate_sparse(fq, fd, self.dev, s, f"{name} + vocabulary transfer (target)"),
                        "fusion_weight": w}]

    def xling_dataset(self) -> RetrievalDataset:
        en = self.english_pages
        qrels = {q: {d: g for d, g in rel.items() if d in en.corpus} for q, rel in self.dev.qrels.items()}
        qrels = {q: rel for q, rel in qrels.items() if any(g > 0 for g in rel.values())}
        return RetrievalDataset(f"{self.dev.name} queries x {en.name} pages", en.corpus,
                                {q: self.dev.queries[q] for q in qrels}, qrels)

    # -------------------------------------------------------------------------------------- the job
    def run(self) -> list[dict]:
        c, k = self.config, self.config.connector
        model = self.new_model()
        self.memory = self.parallel_memory()
        rows = [evaluate_bm25(self.dev, self.eval_settings)]
        objectives = {
            "align_en": lambda st: align_objective(AlignSettings(margin=st.margin, nce=st.nce,
                                                                 echo=st.echo if k.echo else 0.0)),
            "align_parallel": lambda st: align_objective(AlignSettings(margin=st.margin, nce=st.nce)),
            "retrieval": lambda st: retrieval_objective(
                losses.LossSettings(lambda_q=st.lambda_q, lambda_d=st.lambda_d,
                                    flops_warmup_steps=st.flops_warmup_steps), xling=st.xling),
            "xling_queries": lambda st: query_xling_objective(
                losses.LossSettings(lambda_q=st.lambda_q, flops_warmup_steps=st.flops_warmup_steps), xling=st.xling),
        }
        data = {"align_en": self.align_en_data, "align_parallel": self.align_parallel_data,
                "retrieval": self.retrieval_data,
                "xling_queries": lambda st: self.retrieval_data(st, pages=False)}
        timings = {}
        for name in STAGES:
            stage = k[name]
            if not stage.steps:
                continue
            t0 = time.perf_counter()
            model = trainer.fit(stage_config(c, name), model, self.workdir / "stages" / name, data[name](stage),
                                objective=objectives[name](stage), desc=name).model
            timings[name] = round(time.perf_counter() - t0, 1)
            evaluated, queries, docs = self.evaluate(model, f"connector/{name}")
            last = name
            rows += [{**r, "stage": name, "stage_s": timings[name]} for r in evaluated]
            write_report(rows, self.workdir, settings={"config": c.to_dict(), "stage_s": timings})
        if timings:
            t0 = time.perf_counter()
            if k.mixed_pool and self.english_index is not None:
                rows.append({**self.mixed_pool_row(model, f"connector/{last}", queries, docs), "stage": last})
            if k.combine_with:
                rows += [{**r, "stage": last} for r in self.fusion_row(f"connector/{last}", queries, docs)]
            timings["final_eval"] = round(time.perf_counter() - t0, 1)
            write_report(rows, self.workdir, settings={"config": c.to_dict(), "stage_s": timings})
        out = save_connector(model, self.workdir / "export", bridge_folder=self.bridge_folder,
                             english_tokenizer=self.english_tokenizer, memory=self.memory,
                             query_weights=self.query_weights)
        log.info("exported to %s and %s (sentence-transformers)", out,
                 export_connector_st(out, self.workdir / "export_st"))
        if self.query_weights is not None:
            log.info("query encoder (sentence-transformers, LexEcho at the query weights): %s",
                     export_connector_st(out, self.workdir / "export_st_queries", idf_queries=True))
        if self.memory is not None:
            log.info("English-index query encoder (sentence-transformers, with the parallel memory): %s",
                     export_connector_st(out, self.workdir / "export_st_xling", english_queries=True))
        self.model = model
        return rows


def main(argv=None) -> int:
    keep_freed_memory()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _, config = parse_config_args(argv)
    rows = Job(config).run()
    for r in rows:
        print(f"{r['model']:45s} nDCG@10 {r.get('nDCG@10', float('nan')):.3f}  R@100 {r.get('R@100', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
