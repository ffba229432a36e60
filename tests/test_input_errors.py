"""Bad inputs fail early with an error naming the folder, file:line or config key (issue 15): tokenizers and
models checked on load, limits checked at config time, evaluation sets and data records checked on read.
The CLI-visible cases run the real CLIs in a subprocess on tiny data."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import make_hf_folder
from train_tiny import NUM_WORDS, SPECIALS, tiny_beir, tiny_dataset

from sembridge_jax.hf.load import load_pretrained
from sembridge_jax.hf.tokenizer import load_tokenizer

REPO = Path(__file__).resolve().parents[1]


def _cli(args, cwd=REPO, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def _failed(proc, *needles):
    assert proc.returncode != 0, proc.stdout[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "m"
    make_hf_folder(folder, "bert", seed=3)
    return folder


def _copy(src: Path, dst: Path, drop=()) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in drop:
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _bert_tokenizer(folder: Path, words) -> Path:
    from transformers import BertTokenizer

    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(str(folder))
    return folder


# ----------------------------------------------------------------------------- 1. tokenizers and models


def test_tokenizer_folder_without_vocabulary(model, tmp_path):
    folder = _copy(model, tmp_path / "tok", drop=("vocab.txt", "tokenizer.json"))
    with pytest.raises(FileNotFoundError, match=rf"{folder}: no tokenizer vocabulary"):
        load_tokenizer(folder)
    with pytest.raises(FileNotFoundError, match=rf"{folder}: no tokenizer vocabulary"):
        load_pretrained(folder)


def test_tokenizer_without_special_tokens(tmp_path):
    folder = _bert_tokenizer(tmp_path / "tok", SPECIALS + ["hello", "world"])
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "mask_token": None}))
    with pytest.raises(ValueError, match=r"tok: tokenizer lacks the special tokens mask_token \(None\)"):
        load_tokenizer(folder)
    only_specials = _bert_tokenizer(tmp_path / "specials", SPECIALS)
    with pytest.raises(ValueError, match="holds only its 5 special tokens"):
        load_tokenizer(only_specials)


def test_tokenizer_larger_than_the_model(model, tmp_path):
    folder = _copy(model, tmp_path / "m", drop=("tokenizer.json",))
    words = (folder / "vocab.txt").read_text().split()
    (folder / "vocab.txt").write_text("\n".join(words + [f"x{i}" for i in range(1000)]) + "\n")
    with pytest.raises(ValueError, match=rf"{folder}: the tokenizer has 10\d\d tokens but the model only 1000 "
                                         r"vocabulary rows"):
        load_pretrained(folder)


def test_truncated_safetensors(model, tmp_path):
    folder = _copy(model, tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"{weights}: unreadable weights .*truncated or corrupt"):
        load_pretrained(folder)


def test_missing_model_folder_is_not_called_a_bad_repo_id(tmp_path):
    for bad in ("/nonexistent", "./nope", "a/b/c", "bad name"):
        with pytest.raises(FileNotFoundError, match=f"no such model folder or hub repo: '{bad}'"):
            load_pretrained(bad)
        with pytest.raises(FileNotFoundError, match=f"no such model folder or hub repo: '{bad}'"):
            load_tokenizer(bad)


@pytest.mark.slow
def test_bridge_build_cli_names_a_missing_source(model, tmp_path):
    proc = _cli(["-m", "sembridge_jax.bridge", "build", "--source", "/nonexistent", "--target-tokenizer",
                 str(model), "--method", "random", "--out", str(tmp_path / "out")])
    _failed(proc, "no such model folder or hub repo: '/nonexistent'")
    assert "alphanumeric" not in proc.stderr


@pytest.mark.slow
def test_evaluate_cli_refuses_a_model_without_vocabulary(model, tmp_path):
    folder = _copy(model, tmp_path / "novocab", drop=("vocab.txt", "tokenizer.json"))
    proc = _cli(["evaluate.py", "--model", str(folder), "--beir", str(tiny_beir(tmp_path / "beir")),
                 "--out", str(tmp_path / "out"), "--measures", "nDCG@10", "--depth", "10"])
    _failed(proc, f"{folder}: no tokenizer vocabulary")
    assert "corpus.jsonl" not in proc.stderr  # refused before any benchmark is read


def test_model_location_checked_without_loading(model, tmp_path):
    from sembridge_jax.hf.load import check_model_location

    check_model_location(model)
    check_model_location("someone/some-model")  # a hub id: checked when fetched
    no_weights = _copy(model, tmp_path / "w", drop=("model.safetensors",))
    with pytest.raises(FileNotFoundError, match=rf"{no_weights}: not a model folder, no weights"):
        check_model_location(no_weights)
    with pytest.raises(FileNotFoundError, match="no such model folder or hub repo: '/nonexistent'"):
        check_model_location("/nonexistent")


def _train_config(tmp_path: Path, **settings) -> Path:
    """A tiny train.py config; `settings` are extra `c.<key> = <repr(value)>` lines."""
    source = tmp_path / "source"
    if not source.exists():
        _bert_tokenizer(source, SPECIALS + [f"w{i}" for i in range(NUM_WORDS)])
    data = tiny_dataset(tmp_path / "train.jsonl", n=16)
    lines = [f"c.{k} = {v!r}" for k, v in {
        "workdir": str(tmp_path / "work"), "source": str(source), "target_tokenizer": str(source),
        "data.train.path": str(data), "model.max_query_length": 8, "model.max_doc_length": 16,
        **settings}.items()]
    cfg = tmp_path / "cfg.py"
    cfg.write_text("from sembridge_jax.config import default_config\n\n\ndef get_config():\n"
                   "    c = default_config()\n" + "".join(f"    {line}\n" for line in lines) + "    return c\n")
    return cfg


@pytest.mark.slow
def test_train_cli_refuses_a_target_tokenizer_without_vocabulary(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    proc = _cli(["train.py", "--config", str(_train_config(tmp_path, target_tokenizer=str(target)))])
    _failed(proc, "target_tokenizer", f"{target} holds none of tokenizer.json")
    assert not (tmp_path / "work" / "checkpoints").exists()


# ----------------------------------------------------------------------------- 2. limits at config time


def _source_model(tmp_path: Path) -> Path:
    """A source folder whose config.json has 32 positions (the tiny BERT of tests/test_train_cli.py)."""
    from transformers import BertConfig

    source = tmp_path / "source"
    _bert_tokenizer(source, SPECIALS + [f"w{i}" for i in range(NUM_WORDS)])
    BertConfig(vocab_size=len(SPECIALS) + NUM_WORDS, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=32).save_pretrained(str(source))
    return source


@pytest.mark.parametrize("override, needle", [
    ("model.max_doc_length=33", "config key 'model.max_doc_length' is 33, above the 32 tokens the position table "
                                "of the source model covers"),
    ("model.max_query_length=100000", "config key 'model.max_query_length' must be <= 8192, got 100000"),
    ("eval.metrics=('nDCG@10','ndcg@10')", "config key 'eval.metrics' unknown measure 'ndcg@10'"),
    ("eval.metrics=('Foo@10',)", "unknown measure 'Foo@10' (measure not found: Foo)"),
])
def test_limits_and_metrics_fail_at_config_time(tmp_path, override, needle):
    from sembridge_jax.config import load_config
    from sembridge_jax.schema import ConfigError

    _source_model(tmp_path)
    cfg = _train_config(tmp_path)
    load_config(cfg, ["--config.model.max_doc_length=32"])  # the table's own size is fine
    with pytest.raises(ConfigError) as err:
        load_config(cfg, [f"--config.{override}"])
    assert needle in str(err.value) and str(cfg) in str(err.value)


def test_a_hub_source_not_at_hand_gets_only_the_upper_bound(tmp_path):
    from sembridge_jax.hf.load import max_tokens_of

    assert max_tokens_of(_source_model(tmp_path)) == 32
    assert max_tokens_of("someone/not-in-the-cache") is None


@pytest.mark.slow
def test_train_cli_refuses_a_doc_length_beyond_the_position_table(tmp_path):
    _source_model(tmp_path)
    proc = _cli(["train.py", "--config", str(_train_config(tmp_path)), "--config.model.max_doc_length=64"])
    _failed(proc, "config key 'model.max_doc_length' is 64, above the 32 tokens")
    assert not (tmp_path / "work" / "checkpoints").exists()


@pytest.mark.slow
def test_evaluate_cli_checks_measures_before_encoding(model, tmp_path):
    proc = _cli(["evaluate.py", "--model", str(model), "--beir", str(tmp_path / "no_such_beir"),
                 "--out", str(tmp_path / "out"), "--measures", "nDCG@10", "Foo@10", "--depth", "10"])
    _failed(proc, "unknown measure 'Foo@10'")
    assert "no_such_beir" not in proc.stderr  # failed before reading any benchmark


# ----------------------------------------------------------------------------- 3. evaluation sets


def _beir(folder: Path, corpus=None, queries=None, qrels=None) -> Path:
    """A 3-document BEIR folder (split dev); `corpus` / `queries` are raw lines, `qrels` the rows after the
    header, each replacing the default."""
    (folder / "qrels").mkdir(parents=True)
    corpus = corpus if corpus is not None else [json.dumps({"_id": f"d{i}", "text": f"w{i} w{i + 1}"})
                                                for i in range(3)]
    queries = queries if queries is not None else [json.dumps({"_id": f"q{i}", "text": f"w{i}"}) for i in range(2)]
    qrels = qrels if qrels is not None else ["q0\td0\t1", "q1\td1\t2"]
    (folder / "corpus.jsonl").write_text("".join(line + "\n" for line in corpus))
    (folder / "queries.jsonl").write_text("".join(line + "\n" for line in queries))
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(r + "\n" for r in qrels))
    return folder


def test_beir_empty_corpus_and_no_judged_query(tmp_path):
    from sembridge_jax.data.retrieval import load_beir
    from sembridge_jax.data.text import DataError

    empty = _beir(tmp_path / "empty", corpus=[])
    with pytest.raises(DataError, match=rf"{empty / 'corpus.jsonl'}: empty corpus"):
        load_beir(empty)
    unjudged = _beir(tmp_path / "unjudged", qrels=["q0\td0\t0", "q1\td1\t0"])
    with pytest.raises(DataError, match=rf"{unjudged / 'qrels' / 'dev.tsv'}: no judged query with a relevant"):
        load_beir(unjudged)
    assert set(load_beir(unjudged, queries=False).corpus) == {"d0", "d1", "d2"}  # the corpus side of a pool


def test_beir_empty_query(tmp_path):
    from sembridge_jax.data.retrieval import load_beir
    from sembridge_jax.data.text import DataError

    folder = _beir(tmp_path / "b", queries=[json.dumps({"_id": "q0", "text": "w0"}),
                                            json.dumps({"_id": "q1", "text": "  "})])
    with pytest.raises(DataError, match=rf"{folder / 'queries.jsonl'}:2: empty query text"):
        load_beir(folder)


def test_beir_queries_without_a_positive_are_dropped_and_counted(tmp_path, caplog):
    from sembridge_jax.data.retrieval import load_beir
    from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_bm25

    folder = _beir(tmp_path / "b", qrels=["q0\td0\t1", "q1\td1\t0"])
    ds = load_beir(folder)
    assert list(ds.queries) == ["q0"] and list(ds.qrels) == ["q0"]
    assert "dropped 1 of 2 judged queries without a relevant document" in caplog.text
    row = evaluate_bm25(ds, EvalSettings(measures=("nDCG@10", "R@10"), depth=10))
    assert row["num_queries"] == 1 and row["nDCG@10"] == row["nDCG@10"]  # a number, not NaN


def test_beir_unknown_judged_documents(tmp_path, caplog):
    from sembridge_jax.data.retrieval import load_beir
    from sembridge_jax.data.text import DataError

    few = _beir(tmp_path / "few", qrels=["q0\td0\t1", "q0\td9\t1", "q1\td1\t1"])
    ds = load_beir(few)
    assert ds.qrels["q0"] == {"d0": 1, "d9": 1}  # kept: relevant, never retrieved (trec_eval, BEIR)
    assert "1 of 3 relevant judgements name documents not in corpus.jsonl" in caplog.text
    most = _beir(tmp_path / "most", qrels=["q0\td8\t1", "q0\td9\t1", "q1\td1\t1"])
    with pytest.raises(DataError, match=r"2 of 3 relevant judgements name documents not in corpus\.jsonl.*"
                                        r"more than 50%"):
        load_beir(most)


def test_evaluator_refuses_unscorable_sets():
    from sembridge_jax.data.retrieval import RetrievalDataset
    from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_bm25

    settings = EvalSettings(measures=("nDCG@10",), depth=10)
    doc = {"d0": {"title": "", "text": "a b"}}
    for ds, needle in ((RetrievalDataset("x", {}, {"q": "a"}, {"q": {"d0": 1}}), "x: empty corpus"),
                       (RetrievalDataset("x", doc, {"q": "a"}, {"q": {"d0": 0}}), "x: no judged query"),
                       (RetrievalDataset("x", doc, {"q": " "}, {"q": {"d0": 1}}), "x: empty query text")):
        with pytest.raises(ValueError, match=needle):
            evaluate_bm25(ds, settings)


@pytest.mark.parametrize("keys, split", [(["eval.beir"], "eval.split"), (["data.dev.beir"], "data.dev.split"),
                                         (["eval.mixed.target", "eval.mixed.english"], "eval.split")])
def test_benchmark_split_checked_at_config_time(tmp_path, keys, split):
    from sembridge_jax.config import load_config
    from sembridge_jax.schema import ConfigError

    folder = _beir(tmp_path / "b")
    cfg = _train_config(tmp_path)
    overrides = [f"--config.{key}={folder}" for key in keys]
    load_config(cfg, overrides)
    with pytest.raises(ConfigError, match=rf"config key '{keys[0]}' BEIR folder {folder} has no qrels/test\.tsv"):
        load_config(cfg, [*overrides, f"--config.{split}=test"])


@pytest.mark.slow
def test_evaluate_cli_refuses_an_empty_corpus(tmp_path):
    folder = _beir(tmp_path / "b", corpus=[])
    proc = _cli(["evaluate.py", "--bm25", "--beir", str(folder), "--out", str(tmp_path / "out"),
                 "--measures", "nDCG@10", "--depth", "10"])
    _failed(proc, f"{folder / 'corpus.jsonl'}: empty corpus")
    assert not (tmp_path / "out" / "results.json").exists()


# ----------------------------------------------------------------------------- 4. data errors with a location

BAD_BYTES = b'{"_id": "d1", "text": "caf\xe9"}'


def _bad_training_file(path: Path) -> Path:
    lines = [json.dumps({"query": f"w{i}", "positive": f"w{i} w{i + 1}"}).encode() for i in range(6)]
    lines[2] = b'{"query": "caf\xe9", "positive": "w1"}'
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_training_jsonl_non_utf8_named_and_skippable(tmp_path):
    from sembridge_jax.config import default_config
    from sembridge_jax.data.sources import load_examples
    from sembridge_jax.data.text import DataError

    c = default_config()
    c.data.train.path = str(_bad_training_file(tmp_path / "train.jsonl"))
    with pytest.raises(DataError, match=rf"{tmp_path / 'train.jsonl'}:3: not valid UTF-8"):
        load_examples(c.data.train)
    c.data.train.skip_bad_lines = True
    loaded = load_examples(c.data.train)
    assert (len(loaded.examples), loaded.skipped) == (5, 1)


@pytest.mark.slow
def test_train_cli_names_a_bad_training_line_before_any_work(tmp_path):
    bad = _bad_training_file(tmp_path / "bad.jsonl")
    proc = _cli(["train.py", "--config", str(_train_config(tmp_path)), f"--config.data.train.path={bad}"])
    _failed(proc, "config key 'data.train.path' cannot be read", f"{bad}:3: not valid UTF-8")
    assert not (tmp_path / "work" / "alignments").exists()


@pytest.mark.parametrize("part, lines, needle", [
    ("corpus.jsonl", [b'{"_id": "d0", "text": "w0"}', BAD_BYTES], "corpus.jsonl:2: not valid UTF-8"),
    ("corpus.jsonl", [b'{"_id": "d0", "text": "w0"}', b'{"text": "w1"}'], "corpus.jsonl:2: no '_id' field"),
    ("queries.jsonl", [b'{"_id": "q0", "text": "w0"}', b'{"_id": "q1"}'], "queries.jsonl:2: no 'text' field"),
    ("queries.jsonl", [b'{"_id": "q0", "text": "w0"}', b'{"_id": "q1", "text": 7}'],
     "queries.jsonl:2: 'text' must be a str"),
    ("qrels/dev.tsv", [b"query-id\tcorpus-id\tscore", b"q0\td0\t1", b"q1\td1\tone"],
     "qrels/dev.tsv:3: score 'one' is not an integer grade"),
    ("qrels/dev.tsv", [b"q0\td0\tone", b"q1\td1\t1"], "qrels/dev.tsv:1: score 'one' is not an integer grade"),
    ("qrels/dev.tsv", [b"q0\td0\t1", b"q1\td1"], "qrels/dev.tsv:2: expected 3 tab-separated fields, got 2"),
])
def test_beir_records_named_by_file_and_line(tmp_path, part, lines, needle):
    from sembridge_jax.data.retrieval import load_beir
    from sembridge_jax.data.text import DataError

    folder = _beir(tmp_path / "b")
    (folder / part).write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=str(folder / needle).replace("(", r"\(").replace(")", r"\)")):
        load_beir(folder)
    assert load_beir(folder, skip_bad_lines=True).queries  # skipped and counted instead


def test_beir_training_source_skips_bad_lines(tmp_path, caplog):
    from sembridge_jax.config import default_config
    from sembridge_jax.data.sources import load_examples
    from sembridge_jax.data.text import DataError

    folder = _beir(tmp_path / "b")
    (folder / "corpus.jsonl").write_bytes(b'{"_id": "d0", "text": "w0"}\n' + BAD_BYTES + b'\n{"_id": "d1", "text": "w"}\n')
    c = default_config()
    c.data.train.type, c.data.train.path, c.data.train.split = "beir", str(folder), "dev"
    with pytest.raises(DataError, match=rf"{folder / 'corpus.jsonl'}:2: not valid UTF-8"):
        load_examples(c.data.train)
    c.data.train.skip_bad_lines = True
    assert len(load_examples(c.data.train).examples) == 2
    assert "skipped 1 bad records" in caplog.text


@pytest.mark.parametrize("reader, content, needle", [
    ("data.hub:read_trec_qrels", b"q0 Q0 d0 1\nq1 Q0 d1 one\n", "2: grade 'one' is not an integer"),
    ("data.hub:read_topics", b"q0\tw0\nq1\tcaf\xe9\n", "2: not valid UTF-8"),
    ("data.retrieval:load_id_map", b"a\tb\nc\n", "2: expected 2 tab-separated ids"),
    ("bridge.frequency:read_texts", b"hello\ncaf\xe9\n", "2: not valid UTF-8"),
])
def test_other_readers_name_file_and_line(tmp_path, reader, content, needle):
    import importlib

    module, name = reader.split(":")
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{path}:{needle}"):
        getattr(importlib.import_module(f"sembridge_jax.{module}"), name)(path)


def test_lengths_checked_again_once_a_hub_source_is_loaded(tmp_path):
    """A hub source not in the cache has no config.json at config time: the loaded model's table decides."""
    from sembridge_jax.config import check_lengths, default_config
    from sembridge_jax.schema import ConfigError

    c = default_config()
    c.source, c.model.max_doc_length = "someone/not-in-the-cache", 600
    check_lengths(c, 1024)
    with pytest.raises(ConfigError, match="config key 'model.max_doc_length' is 600, above the 512 tokens"):
        check_lengths(c, 512)
