"""Training data of issue 12: mined hard negatives through `data.train`, the label-free `corpus` type and
the query-grouped sampler."""
import json
from pathlib import Path

import numpy as np
import pytest
from ml_collections import ConfigDict
from train_tiny import NUM_WORDS, tiny_config, tiny_model, tiny_tokenizer

from sembridge_jax.config import ConfigError, default_config, validate
from sembridge_jax.data import sources
from sembridge_jax.data.examples import DataError, Example
from sembridge_jax.evaluation import mining
from sembridge_jax.training import trainer
from sembridge_jax.training.batches import ShardedOrder, TrainData, query_groups

REPO = Path(__file__).resolve().parents[1]
WORDS = [f"w{i}" for i in range(40)]


def write_beir(folder: Path) -> Path:
    """30 documents of 4 words; query qa has 3 positives (d0, d1, d2) sharing its words, d3 is a copy of d0's
    text under another id; qb and qc share the positive d10 (BEIR split 'train')."""
    (folder / "qrels").mkdir(parents=True)
    docs = {f"d{i}": " ".join(WORDS[(i * 3 + k) % 40] for k in range(4)) for i in range(30)}
    docs["d1"] = "w0 w1 w20 w21"
    docs["d2"] = "w0 w1 w22 w23"
    docs["d3"] = docs["d0"]
    corpus = [json.dumps({"_id": d, "title": "", "text": t}) for d, t in docs.items()]
    queries = [json.dumps({"_id": q, "text": t}) for q, t in (("qa", "w0 w1"), ("qb", "w30 w31"), ("qc", "w32"))]
    qrels = ["query-id\tcorpus-id\tscore", "qa\td0\t1", "qa\td1\t1", "qa\td2\t2", "qb\td10\t1", "qc\td10\t1"]
    for name, lines in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels/train.tsv", qrels)):
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def spec(**kw) -> ConfigDict:
    s = default_config().data.train
    s.update(kw)
    return s


def mined_spec(folder: Path, **kw) -> ConfigDict:
    return spec(**{"type": "beir", "path": str(folder), "split": "train", "mine_negatives": True,
                   "num_hard_negatives": 4, "mine_depth": 30, **kw})


def known_positives(folder: Path) -> dict[str, set[str]]:
    out = {}
    for line in (folder / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        q, d, g = line.split("\t")
        if int(g) > 0:
            out.setdefault(q, set()).add(d)
    return out


@pytest.fixture
def beir(tmp_path):
    return write_beir(tmp_path / "beir")


def test_mined_negatives_are_never_a_positive(beir):
    loaded = sources.load_examples(mined_spec(beir), miner=mining.mine_negatives)
    positives = known_positives(beir)
    corpus = {json.loads(x)["_id"]: json.loads(x)["text"] for x in (beir / "corpus.jsonl").read_text().splitlines()}
    assert len(loaded.examples) == 5
    for e in loaded.examples:
        assert len(e.negative_ids) == len(e.negatives) == 4 and e.scores is None
        assert not set(e.negative_ids) & positives[e.query_id]
        # d3 has d0's text: a copy of a positive is a positive too.
        assert not {corpus[d] for d in e.negative_ids} & {corpus[d] for d in positives[e.query_id]}
        assert list(e.negatives) == [corpus[d] for d in e.negative_ids]


def test_mining_is_deterministic_and_cached_beside_the_data(beir, tmp_path, monkeypatch):
    first = sources.load_examples(mined_spec(beir), miner=mining.mine_negatives).examples
    assert len(list(beir.glob("bm25_negatives_*.json"))) == 1
    fresh = write_beir(tmp_path / "copy")  # same content elsewhere: same negatives, computed again
    assert sources.load_examples(mined_spec(fresh), miner=mining.mine_negatives).examples == first

    def no_bm25(*args, **kwargs):
        raise AssertionError("BM25 ran on a cache hit")

    monkeypatch.setattr(mining, "BM25Retriever", no_bm25)
    assert sources.load_examples(mined_spec(beir), miner=mining.mine_negatives).examples == first
    for change in ({"mine_depth": 20}, {"seed": 1}, {"mine_skip_top": 1}, {"num_hard_negatives": 3}):
        with pytest.raises(AssertionError, match="cache hit"):  # a changed setting misses the cache
            sources.load_examples(mined_spec(beir, **change), miner=mining.mine_negatives)


def test_read_only_data_caches_in_the_workdir(beir, tmp_path, monkeypatch):
    monkeypatch.setattr(sources.os, "access", lambda path, mode: False)
    sources.load_examples(mined_spec(beir), miner=mining.mine_negatives, workdir=str(tmp_path / "run"))
    assert not list(beir.glob("bm25_negatives_*.json"))
    assert len(list((tmp_path / "run" / "mining").glob("bm25_negatives_*.json"))) == 1


def test_jsonl_source_mines_from_a_named_corpus(beir, tmp_path):
    rows = [{"query": "w0 w1", "positive": "w0 w1 w20 w21"}, {"query": "w0 w1", "positive": "unknown text"},
            {"query": "w30 w31", "positive": (beir / "corpus.jsonl").read_text().splitlines()[10]}]
    rows[2]["positive"] = json.loads(rows[2]["positive"])["text"]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = spec(type="jsonl", path=str(path), corpus=str(beir), mine_negatives=True, num_hard_negatives=3,
             negatives_field="", scores_field="")
    out = sources.load_examples(s, miner=mining.mine_negatives).examples
    assert [e.positive_id for e in out] == ["d1", "", "d10"]  # positives found in the corpus by their text
    for e in out[:2]:  # the query's known positives: d1 (and the unknown text, which is no document)
        assert "d1" not in e.negative_ids and len(e.negatives) == 3
    assert out[0].negative_ids == out[1].negative_ids  # one query, one draw
    assert "d10" not in out[2].negative_ids


@pytest.mark.parametrize("changes,key", [
    (dict(type="jsonl"), "data.train.corpus"),
    (dict(num_hard_negatives=0), "data.train.num_hard_negatives"),
    (dict(mine_depth=3, mine_skip_top=1), "data.train.mine_depth"),
])
def test_bad_mining_settings_fail_validation(beir, tmp_path, changes, key):
    c = default_config()
    c.source, c.target_tokenizer = str(REPO / "assets" / "splade-tiny-en"), str(REPO / "assets" / "ko-wordpiece-12k")
    c.data.train.update(mined_spec(beir))
    validate(c)
    if changes.get("type") == "jsonl":
        changes["path"] = str(beir / "corpus.jsonl")
    c.data.train.update(changes)
    with pytest.raises(ConfigError, match=key):
        validate(c)


def test_mined_negatives_cannot_be_distilled(beir):
    c = default_config()
    c.source, c.target_tokenizer = str(REPO / "assets" / "splade-tiny-en"), str(REPO / "assets" / "ko-wordpiece-12k")
    c.data.train.update(mined_spec(beir))
    c.loss.distill = "margin_mse"
    with pytest.raises(ConfigError, match="data.train.mine_negatives.*no teacher scores"):
        validate(c)


def test_mining_without_a_miner_fails_before_reading(tmp_path):
    s = mined_spec(tmp_path / "missing")
    with pytest.raises(DataError, match="mine_negatives: no miner"):
        sources.load_examples(s)


def write_corpus(path: Path, n: int = 24, seed: int = 0) -> Path:
    """n documents of 10 words w*, titled with two of them (every third one untitled)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        words = [f"w{x}" for x in rng.choice(NUM_WORDS, 10, replace=False)]
        lines.append(json.dumps({"_id": f"doc{i}", "title": "" if i % 3 == 2 else " ".join(words[:2]),
                                 "text": " ".join(words)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def corpus_spec(path: Path, **kw) -> ConfigDict:
    return spec(**{"type": "corpus", "corpus": str(path), "span_words": (2, 4), **kw})


def test_corpus_type_yields_title_and_span_pairs(tmp_path):
    path = write_corpus(tmp_path / "corpus.jsonl")
    docs = {json.loads(x)["_id"]: json.loads(x) for x in path.read_text().splitlines()}
    loaded = sources.load_examples(corpus_spec(path))
    kinds = [e.query_id.split("#")[1] for e in loaded.examples]
    assert kinds.count("title0") == 16 and kinds.count("span0") == 24 and loaded.corpus == {
        d: {"title": v["title"], "text": v["text"]} for d, v in docs.items()}
    for e in loaded.examples:
        doc = docs[e.positive_id]
        if e.query_id.endswith("#title0"):
            assert (e.query, e.positive) == (doc["title"], doc["text"])
        else:  # a span of 2..4 words of the body, taken out of the positive
            assert 2 <= len(e.query.split()) <= 4 and e.query in doc["text"]
            assert len(e.positive.split()) == len(doc["title"].split()) + 10 - len(e.query.split())
    assert sources.load_examples(corpus_spec(path)).examples == loaded.examples
    assert sources.load_examples(corpus_spec(path, seed=1)).examples != loaded.examples
    assert len(sources.load_examples(corpus_spec(path, max_examples=5)).examples) == 5


def test_corpus_type_mines_negatives_other_than_the_pairs_document(tmp_path):
    path = write_corpus(tmp_path / "corpus.jsonl")
    loaded = sources.load_examples(corpus_spec(path, mine_negatives=True, num_hard_negatives=3, mine_depth=10),
                                   miner=mining.mine_negatives)
    assert all(len(e.negative_ids) == 3 and e.positive_id not in e.negative_ids for e in loaded.examples)
    assert len(list(tmp_path.glob("bm25_negatives_*.json"))) == 1


def test_corpus_type_bad_inputs(tmp_path):
    path = write_corpus(tmp_path / "corpus.jsonl")
    path.write_text(path.read_text() + '{"title": "no id"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl:25: expected an object with an '_id'"):
        sources.load_examples(corpus_spec(path))
    assert len(sources.load_examples(corpus_spec(path, skip_bad_lines=True)).examples) == 40
    c = default_config()
    c.source, c.target_tokenizer = str(REPO / "assets" / "splade-tiny-en"), str(REPO / "assets" / "ko-wordpiece-12k")
    for changes, key in ((dict(corpus=""), "data.train.corpus"), (dict(corpus=str(tmp_path / "nope.jsonl")),
                         "data.train.corpus"), (dict(span_words=(5, 2)), "data.train.span_words"),
                         (dict(pair_kinds=("cloze",)), "data.train.pair_kinds"),
                         (dict(num_hard_negatives=2), "data.train.num_hard_negatives")):
        c.data.train.update(corpus_spec(path, **changes))
        with pytest.raises(ConfigError, match=key):
            validate(c)


def random_examples(rng: np.random.Generator, n_queries: int = 30, n_docs: int = 60, negatives: int = 2):
    """Examples of queries with 1..4 positives drawn from a small pool (queries share documents), each with
    hard negatives that are not its own query's positives but may be other queries' positives."""
    out = []
    for q in range(n_queries):
        positives = rng.choice(n_docs, int(rng.integers(1, 5)), replace=False)
        others = np.setdiff1d(np.arange(n_docs), positives)
        for d in positives:
            negs = tuple(f"d{x}" for x in rng.choice(others, negatives, replace=False))
            out.append(Example(f"query {q}", f"doc {d}", tuple(f"doc {x}" for x in negs), query_id=f"q{q}",
                               positive_id=f"d{d}", negative_ids=negs))
    return out


def false_negatives(batch, examples) -> list:
    """(query, document) pairs of a batch where a document of another row is a known positive of the query."""
    positives = {}
    for e in examples:
        positives.setdefault(e.query_id, set()).add(e.positive_id)
    bad = []
    for i in batch:
        for j in batch:
            if i != j:
                shown = {examples[j].positive_id, *examples[j].negative_ids}
                bad += [(examples[i].query_id, d) for d in shown & positives[examples[i].query_id]]
    return bad


def test_grouped_sampler_never_shows_a_query_its_positive_as_a_negative():
    for seed in range(60):
        rng = np.random.default_rng(seed)
        examples = random_examples(rng, negatives=int(rng.integers(0, 3)))
        batch = int(rng.choice([2, 4, 8]))
        order = ShardedOrder(len(examples), batch, seed, groups=query_groups(examples))
        twin = ShardedOrder(len(examples), batch, seed, groups=query_groups(examples))
        for epoch in range(3):
            plan = order.batches(epoch)
            assert len(plan) and len(set(plan.ravel().tolist())) == plan.size  # no example twice in an epoch
            for rows in plan:
                assert not false_negatives(rows.tolist(), examples)
            np.testing.assert_array_equal(plan, twin.batches(epoch))  # same seed, same order
        plain = ShardedOrder(len(examples), batch, seed).batches(0)
        assert any(false_negatives(rows.tolist(), examples) for rows in plain)  # the property is not vacuous


def test_grouped_sampler_resumes_exactly_and_keeps_the_plain_order_without_conflicts():
    rng = np.random.default_rng(0)
    examples = random_examples(rng)
    order = ShardedOrder(len(examples), 4, 3, groups=query_groups(examples))
    for _ in range(len(order.batches(0)) - 2):  # stop two batches before the end of epoch 0
        order.next_indices()
    state = json.loads(json.dumps(order.state()))
    expected = [order.next_indices() for _ in range(6)]  # crosses into epoch 1
    resumed = ShardedOrder(len(examples), 4, 3, groups=query_groups(examples))
    resumed.restore(state)
    assert all((resumed.next_indices() == want).all() for want in expected)
    with pytest.raises(ValueError, match="out of range"):
        resumed.restore({"epoch": 0, "index": len(order.batches(0))})
    # One positive per query, no shared document: the grouping has nothing to do, the order is today's.
    unique = [Example(f"q {i}", f"d {i}", (f"n {i}",)) for i in range(50)]
    for seed in range(5):
        grouped = ShardedOrder(50, 8, seed, groups=query_groups(unique))
        plain = ShardedOrder(50, 8, seed)
        for epoch in range(3):
            np.testing.assert_array_equal(grouped.batches(epoch), plain.batches(epoch))


def test_grouped_sampler_fails_early_when_no_batch_can_be_formed():
    same = [Example("one query", f"doc {i}") for i in range(10)]  # by text: one query, ten positives
    with pytest.raises(ValueError, match="group_by_query"):
        ShardedOrder(10, 2, 0, groups=query_groups(same))


def test_corpus_type_with_mining_trains_a_tiny_model_end_to_end(tmp_path):
    """Label-free pairs + mined negatives + grouped batches through the real training loop."""
    tokenizer = tiny_tokenizer(tmp_path / "tokenizer")
    config = tiny_config(tmp_path / "run", tmp_path / "unused.jsonl", steps=6)
    config.data.train.update(corpus_spec(write_corpus(tmp_path / "corpus.jsonl", n=32), mine_negatives=True,
                                         num_hard_negatives=1, mine_depth=8))
    data = TrainData(config, tokenizer, process_index=0, process_count=1, miner=mining.mine_negatives)
    batch = data.next_batch()
    assert batch["doc_input_ids"].shape == (8, 2, 16)
    data.restore({"train": {"epoch": 0, "index": 0}})
    result = trainer.fit(config, tiny_model(len(tokenizer)), tmp_path / "run", data)
    assert result.status == "done" and result.step == 6 and np.isfinite(result.last_metrics["loss"])


def test_corpus_pairs_join_the_labelled_examples(beir, tmp_path):
    labelled = sources.load_examples(spec(type="beir", path=str(beir), split="train")).examples
    pairs = sources.load_examples(spec(type="corpus", corpus=str(beir), span_words=(1, 2))).examples
    both = sources.load_examples(spec(type="beir", path=str(beir), split="train", corpus_pairs=True,
                                      span_words=(1, 2)), miner=mining.mine_negatives)
    assert both.examples == labelled + pairs and {e.positive_id for e in pairs} == set(both.corpus)
    mined = sources.load_examples(spec(type="beir", path=str(beir), split="train", corpus_pairs=True,
                                       span_words=(1, 2), mine_negatives=True, num_hard_negatives=2),
                                  miner=mining.mine_negatives).examples
    positives = known_positives(beir)
    assert len(mined) == len(both.examples)
    for e in mined:  # a labelled query never gets one of its positives; a pair never its own document
        assert not set(e.negative_ids) & (positives.get(e.query_id, set()) | {e.positive_id})
    c = default_config()
    c.source, c.target_tokenizer = str(REPO / "assets" / "splade-tiny-en"), str(REPO / "assets" / "ko-wordpiece-12k")
    for changes, key in ((dict(type="corpus", corpus=str(beir)), "corpus_pairs.*labelled"),
                         (dict(type="jsonl", path=str(beir / "corpus.jsonl")), "data.train.corpus.*corpus_pairs")):
        c.data.train.update(spec(corpus_pairs=True, **changes))
        with pytest.raises(ConfigError, match=key):
            validate(c)
