"""The connector route end to end on tiny random models (`python -m sembridge_jax.connector`): the four
stages through `trainer.fit` (retrieval with a mined negative), evaluation rows, frozen weights untouched, export loaded by
`SparseEncoder.from_pretrained` with the job's vectors; config errors name the key or file."""
import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from sembridge_jax.api import SparseEncoder
from sembridge_jax.config import load_config
from sembridge_jax.connector import Job, stage_config
from sembridge_jax.data.retrieval import load_beir
from sembridge_jax.export.connector import connector_weights
from sembridge_jax.schema import ConfigError
from sembridge_jax.training.run_settings import run_settings
from tests.train_tiny import NUM_WORDS, SPECIALS, tiny_beir

pytestmark = pytest.mark.slow  # four stages compiled and trained, evaluated and exported twice

CONFIG = '''from pathlib import Path
from sembridge_jax.config import default_config

SETUP = Path(__file__).parent


def get_config():
    c = default_config()
    c.workdir = str(SETUP / "work")
    c.source = str(SETUP / "english")
    c.target_tokenizer = str(SETUP / "english")  # required by the schema; unused by the connector route
    c.bridge.model = str(SETUP / "bridge")
    c.model.max_query_length = 8
    c.model.max_doc_length = 16
    c.data.parallel.path = str(SETUP / "parallel.tsv")
    c.data.train.type = "beir"
    c.data.train.path = str(SETUP / "beir")
    c.data.train.mine_negatives = True  # one BM25-mined page per query in the retrieval stage
    c.data.train.num_hard_negatives = 1
    c.model.query_encoder = "idf"  # the queries' LexEcho block at the IDF of their bridge tokens over the pages
    c.eval.beir = str(SETUP / "beir")
    c.eval.k = 10
    c.eval.metrics = ("nDCG@10", "R@10")
    c.checkpoint.every_steps = 2
    k = c.connector
    k.english_index = str(SETUP / "beir")
    k.english.tsv = str(SETUP / "parallel.tsv")
    k.english.max_texts = 40
    k.english.max_length = 12
    for stage in (k.align_en, k.align_parallel, k.retrieval, k.xling_queries):
        stage.steps = 3
        stage.batch_size = 8
    k.align_parallel.max_pairs = 32
    k.align_parallel.english_mix = 8
    k.retrieval.query_length = 8
    k.retrieval.doc_length = 16
    k.retrieval.flops_warmup_steps = 1
    k.xling_queries.query_length = 8
    k.echo = True
    k.memory.max_pairs = 20  # the parallel memory for the English-index queries
    k.memory.k = 3
    k.combine_with = str(SETUP / "english")  # any sparse encoder folder stands in for a vocabulary-transfer export
    return c
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("connector")
    vocab = SPECIALS + [f"w{i}" for i in range(NUM_WORDS)]
    torch.manual_seed(0)
    for name, model in {
        "english": BertForMaskedLM(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                                              num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)),
        "bridge": BertModel(BertConfig(vocab_size=len(vocab), hidden_size=24, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=48, max_position_embeddings=32)),
    }.items():
        BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(str(root / name))
        model.save_pretrained(root / name)
    beir = tiny_beir(root / "beir")
    (beir / "qrels" / "train.tsv").write_text((beir / "qrels" / "dev.tsv").read_text())
    rng = np.random.default_rng(0)
    lines = ["en\tko"] + [" ".join(f"w{w}" for w in rng.choice(NUM_WORDS, 5)) for _ in range(48)]
    (root / "parallel.tsv").write_text("\n".join(lines[:1] + [f"{t}\t{t}" for t in lines[1:]]) + "\n")
    (root / "cfg.py").write_text(CONFIG)
    return root


@pytest.fixture(scope="module")
def finished(setup):
    job = Job(load_config(setup / "cfg.py"))
    return job, job.run()


def test_job_end_to_end(setup, finished):
    job, rows = finished
    work = setup / "work"
    for stage in ("align_en", "align_parallel", "retrieval", "xling_queries"):
        assert (work / "stages" / stage / "metrics.jsonl").is_file()
        assert {r["model"] for r in rows if r.get("stage") == stage} >= {
            f"connector/{stage} (target)", f"connector/{stage} (target, model queries)",
            f"connector/{stage} (target, no echo)", f"connector/{stage} (xling)", f"connector/{stage} (xling, no memory)"}
    last = [r for r in rows if r.get("stage") == "xling_queries"]
    mixed = next(r for r in last if r["model"].endswith("(mixed pool)"))
    assert mixed["num_docs"] == 2 * len(job.dev.corpus) and mixed["Max@R"] >= 2
    fused = next(r for r in last if "+ vocabulary transfer" in r["model"])
    assert fused["fusion_weight"] > 0
    results = json.loads((work / "results.json").read_text())["results"]
    assert all(0 <= r["nDCG@10"] <= 1 for r in results)
    # the English output space never moved
    W, b = job.teacher.vocab_projection()
    np.testing.assert_array_equal(np.asarray(job.model.vocab[...]), np.asarray(W))
    np.testing.assert_array_equal(np.asarray(job.model.vocab_bias[...]), np.asarray(b))
    # the exported folder: SparseEncoder.from_pretrained runs bridge + connector from text
    enc = SparseEncoder.from_pretrained(work / "export")
    assert enc.model.config.echo_pooling == job.model.config.echo_pooling == "log_sum"  # the setting's default
    texts = list(job.dev.queries.values())[:5]
    got = enc.encode(texts, max_length=8).toarray()
    tok = job.bridge_tokenizer(texts, padding=True, return_tensors="np")
    ids, mask = jnp.asarray(tok["input_ids"]), jnp.asarray(tok["attention_mask"])
    ref = np.asarray(job.model.splade_from_states(job.bridge.sequence_output(ids, mask), mask, ids))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    n_en = job.model.config.english_size
    assert (ref[:, :n_en] > 0).any() and (ref[:, n_en:] > 0).any()  # the English and the echo block
    assert (work / "export_st" / "modules.json").is_file()  # its parity: tests/test_connector_export_st.py
    # the English-index queries: the English block + the job's parallel memory, as the (xling) rows scored them
    assert enc.memory is not None and enc.memory.keys.shape[0] == 20 and enc.memory.k == 3
    states = job.bridge.sequence_output(ids, mask)
    pools = np.asarray((states * mask[..., None]).sum(1) / mask.sum(1, keepdims=True))
    np.testing.assert_allclose(enc.encode_english_queries(texts, max_length=8).toarray(),
                               job.memory.add_to(ref[:, :n_en], pools).toarray(), atol=1e-5)
    assert (work / "export_st_xling" / "memory.npz").is_file()
    # the queries' LexEcho block: the IDF of their bridge tokens over the training pages (numpy, from the corpus)
    corpus = [json.loads(line) for line in (setup / "beir" / "corpus.jsonl").read_text().splitlines()]
    df = {}
    for doc in corpus:
        for i in set(job.bridge_tokenizer(f"{doc.get('title', '')} {doc['text']}".strip(), add_special_tokens=False)["input_ids"]):
            df[i] = df.get(i, 0) + 1
    expected = ref.copy()
    expected[:, n_en:] = 0.0
    for r, text in enumerate(texts):
        for i in set(job.bridge_tokenizer(text, truncation=True, max_length=8)["input_ids"]) - set(job.bridge_tokenizer.all_special_ids):
            expected[r, n_en + i] = np.log1p((len(corpus) - df.get(i, 0) + 0.5) / (df.get(i, 0) + 0.5))
    np.testing.assert_allclose(enc.encode_queries(texts, max_length=8).toarray(), expected, atol=1e-5)
    assert (work / "export" / "idf.json").is_file() and (work / "export_st_queries" / "modules.json").is_file()
    target = {r["stage"]: r for r in rows if r["model"].endswith("(target)")}
    assert target["retrieval"]["num_queries"] == len(job.dev.queries)


def test_retrieval_pairs_are_train_py_examples_with_a_mined_negative(setup, finished):
    """The retrieval stage reads data.train as train.py does: one pair per train qrel, each with its
    mined negative (never one of the query's positives: tests/test_mining.py)."""
    job, _ = finished
    stream = job.retrieval_data(job.config.connector.retrieval)
    train = load_beir(job.config.data.train.path, job.config.data.train.split)
    n_pairs = sum(g > 0 for rel in train.qrels.values() for g in rel.values())
    assert stream.pairs.shape == (n_pairs, 2) and stream.negatives.shape == (n_pairs, 1)
    assert len(stream.docs) == len(train.corpus) and len(stream.queries) == len(train.queries)
    assert (stream.negatives[:, 0] != stream.pairs[:, 1]).all()
    batch = stream.next_batch()
    assert batch["doc_states"].shape[1] == 2 and batch["english_doc"].shape[0] == batch["query_states"].shape[0]
    assert stream.english_docs.shape[0] == n_pairs
    assert job.retrieval_data(job.config.connector.xling_queries, pages=False).docs is None


def test_killed_stage_resumes_bit_identical(setup, finished):
    """A run killed after the last stage's step-2 checkpoint (step 3 never saved) resumes there and ends
    with exactly the weights of the uninterrupted run."""
    job, _ = finished
    before = connector_weights(job.model)
    checkpoints = setup / "work" / "stages" / "xling_queries" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.isdigit()) == ["2", "3"]
    shutil.rmtree(checkpoints / "3")
    again = Job(load_config(setup / "cfg.py"))
    again.run()
    after = connector_weights(again.model)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


def test_config_errors(setup, tmp_path):
    with pytest.raises(ConfigError, match="data.parallel.path"):
        load_config(setup / "cfg.py", ["--config.data.parallel.path="])
    with pytest.raises(ConfigError, match="connector.kind"):
        load_config(setup / "cfg.py", ["--config.connector.kind=linear"])
    with pytest.raises(ConfigError, match="'connector.echo' model.query_encoder='idf' weights the LexEcho block"):
        load_config(setup / "cfg.py", ["--config.connector.echo=False"])
    with pytest.raises(ConfigError, match="missing.tsv"):
        load_config(setup / "cfg.py", [f"--config.data.parallel.path={tmp_path / 'missing.tsv'}"])


def test_eval_only_keys_and_later_stages_reuse_the_finished_stages(setup, finished):
    """Another cache folder, other after-training evaluations, a later stage turned off: the earlier stages'
    settings are unchanged (restored, not retrained); the stage's own settings still count."""
    job, _ = finished
    config = load_config(setup / "cfg.py", ["--config.connector.mixed_pool=False", "--config.connector.combine_with=",
                                            f"--config.connector.state_cache={setup / 'work' / 'cache'}",
                                            "--config.connector.xling_queries.steps=0", "--config.model.max_doc_length=24",
                                            "--config.model.query_encoder=splade"])
    for stage in ("align_en", "align_parallel"):  # the pages' length is the retrieval stage's setting
        assert run_settings(stage_config(config, stage)) == run_settings(stage_config(job.config, stage))
    assert run_settings(stage_config(config, "retrieval")) != run_settings(stage_config(job.config, "retrieval"))
    config.model.max_doc_length = job.config.model.max_doc_length
    assert run_settings(stage_config(config, "retrieval")) == run_settings(stage_config(job.config, "retrieval"))
    assert stage_config(config, "xling_queries").to_dict() != stage_config(job.config, "xling_queries").to_dict()
    # the retrieval pairs' mining is the retrieval stage's setting, not the alignment stages'
    unmined = load_config(setup / "cfg.py", ["--config.data.train.mine_negatives=False", "--config.data.train.num_hard_negatives=0",
                                         "--config.bridge.query_prompt=q: "])
    for stage in ("align_en", "align_parallel"):
        assert stage_config(unmined, stage).to_dict() == stage_config(job.config, stage).to_dict()
    assert stage_config(unmined, "retrieval").to_dict() != stage_config(job.config, "retrieval").to_dict()
