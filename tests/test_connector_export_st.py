"""The connector's sentence-transformers export: `SparseEncoder(out, trust_remote_code=True)` (PyTorch,
transformers' BERT/XLM-R modules) encodes texts as our JAX `SparseEncoder.from_pretrained(connector folder)`
does, within 1e-4, with and without LexEcho and appended tokens; the CLI; bad input."""
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from flax import nnx

from sembridge_jax import SparseEncoder
from sembridge_jax.cli import run_cli
from sembridge_jax.evaluation.encode import CorpusEncoder
from sembridge_jax.export.__main__ import main as export_main
from sembridge_jax.export.connector import load_connector, output_names, save_connector
from sembridge_jax.export.connector_st import export_connector_st
from sembridge_jax.hf.load import load_model, read_config
from sembridge_jax.hf.tokenizer import load_tokenizer
from sembridge_jax.models.connector import ConnectorConfig, ConnectorSparseEncoder
from sembridge_jax.models.memory import ParallelMemory
from tests.test_connector_model import _randomize
from tests.tiny_models import make_hf_folder

TEXTS = ["the cat sat on the mat", "hello", "what causes the northern lights", "world hello the cat sat on mats",
         "lights lights lights"]  # different lengths: every batch is padded; a repeated token for the echo pooling


def _connector_folder(tmp_path, *, echo: bool, n_added: int, seed: int = 7, echo_pooling: str = "log_sum"):
    """A tiny random connector model (English tiny BERT, tiny XLM-R bridge) saved as a connector folder."""
    make_hf_folder(tmp_path / "en", "bert")
    make_hf_folder(tmp_path / "bridge", "xlm-roberta", seed=3, headless=True)
    english = load_model(tmp_path / "en")
    cfg = ConnectorConfig(english.config, bridge_hidden=32, connector_hidden=24, n_added=n_added, echo=echo,
                          bridge_vocab=read_config(tmp_path / "bridge").vocab_size, echo_pooling=echo_pooling)
    model = ConnectorSparseEncoder(cfg, nnx.Rngs(0), english=english)
    _randomize(model, seed)
    if echo:  # an echo block with weight on most tokens, at a non-trivial scale
        model.echo.proj.kernel[...] = 0.05 * jax.random.normal(jax.random.key(seed), model.echo.proj.kernel.shape)
        model.echo.proj.bias[...] = jnp.full((1,), 0.5)
        model.echo.scale[...] = jnp.float32(0.8)
    return save_connector(model, tmp_path / "conn", bridge_folder=tmp_path / "bridge",
                          english_tokenizer=load_tokenizer(str(tmp_path / "en")))


def _st_encode(folder, texts, batch_size=2):
    from sentence_transformers import SparseEncoder as STSparseEncoder  # heavy: torch + sentence-transformers

    st = STSparseEncoder(str(folder), trust_remote_code=True, device="cpu")
    return st, st.encode(texts, batch_size=batch_size, convert_to_tensor=True).to_dense().numpy()


@pytest.mark.parametrize("echo,n_added,pooling", [(False, 0, "max"), (True, 0, "log_sum"), (True, 0, "max"),
                                                   (False, 2, "max"), (True, 2, "log_sum")])
def test_st_export_matches_jax(tmp_path, echo, n_added, pooling):
    folder = _connector_folder(tmp_path, echo=echo, n_added=n_added, echo_pooling=pooling)
    ours = SparseEncoder.from_pretrained(folder).encode(TEXTS, batch_size=3).toarray()
    out = export_connector_st(folder, tmp_path / "st")
    st, theirs = _st_encode(out, TEXTS)
    width = 1000 + (1000 if echo else 0)  # English vocabulary (+ bridge vocabulary)
    assert ours.shape == theirs.shape == (len(TEXTS), width) and st.get_embedding_dimension() == width
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)
    assert (ours[:, :1000] > 0).sum(1).min() > 20
    if echo:  # the echo block is on, sits on the texts' own bridge ids, and its scale is applied
        assert ((ours[:, 1000:] > 0).sum(1) >= 1).all()
        ids = st.tokenizer(TEXTS[1])["input_ids"]
        assert set(np.flatnonzero(ours[1, 1000:])) <= set(ids)


def test_cli_writes_the_st_folder(tmp_path, capsys):
    folder = _connector_folder(tmp_path, echo=True, n_added=1)
    assert export_main(["--connector", str(folder), "--out", str(tmp_path / "st")]) == 0
    assert "wrote" in capsys.readouterr().out
    modules = json.loads((tmp_path / "st" / "modules.json").read_text())
    assert modules[0]["type"] == "st_connector_module.ConnectorSparseModule"
    cfg = json.loads((tmp_path / "st" / "sembridge_connector.json").read_text())
    assert cfg["echo"] and cfg["echo_pooling"] == "log_sum" and cfg["english_size"] == 1000 and cfg["bridge_vocab"] == 1000 and cfg["n_added"] == 1
    with_memory, memory, _ = _with_memory(tmp_path, folder)
    assert export_main(["--connector", str(with_memory), "--out", str(tmp_path / "st_q"), "--english-queries"]) == 0
    cfg = json.loads((tmp_path / "st_q" / "sembridge_connector.json").read_text())
    assert cfg["english_queries"] is True and cfg["memory"] is True
    assert (tmp_path / "st_q" / "memory.npz").is_file()
    (tmp_path / "st_q" / "memory.npz").unlink()  # a folder that says it has a memory and lacks it
    with pytest.raises(FileNotFoundError, match="memory.npz"):
        _st_encode(tmp_path / "st_q", TEXTS)
    with pytest.raises(SystemExit, match="--connector only"):
        export_main(["--model", str(tmp_path / "en"), "--out", str(tmp_path / "x"), "--english-queries"])


@pytest.mark.slow
def test_st_export_matches_jax_with_the_kit_models(kit, tmp_path):
    """The real route: the kit's e5 bridge (BertModel, XLM-R tokenizer, 250,037 ids; stored in float16, which
    both sides compute in float32) and splade-tiny-en, a random connector with two appended tokens and the
    echo, Korean and English texts."""
    from sembridge_jax.bridge.e5 import materialize_e5

    bridge_dir = materialize_e5(str(tmp_path / "e5"), dtype="float16")
    english = load_model(kit / "assets/splade-tiny-en")
    cfg = ConnectorConfig(english.config, bridge_hidden=384, connector_hidden=256, n_added=2, echo=True,
                          bridge_vocab=read_config(Path(bridge_dir)).vocab_size, echo_pooling="log_sum")
    model = ConnectorSparseEncoder(cfg, nnx.Rngs(0), english=english)
    _randomize(model.connector, 1)
    model.echo.scale[...] = jnp.float32(0.8)
    model.vocab_bias[...] = model.vocab_bias[...] + 4.0  # an untrained connector activates few terms otherwise
    folder = save_connector(model, tmp_path / "conn", bridge_folder=bridge_dir,
                            english_tokenizer=load_tokenizer(str(kit / "assets/splade-tiny-en")))
    texts = ["셀에 표를 삽입하는 방법", "what causes the northern lights", "인쇄 인쇄", "Insert a table into a text document "
             "and format its cells", "프린터 설정 대화 상자에서 용지 크기를 바꿉니다."]
    ours = SparseEncoder.from_pretrained(folder).encode(texts, batch_size=2).toarray()
    _, theirs = _st_encode(export_connector_st(folder, tmp_path / "st"), texts, batch_size=3)
    assert ours.shape == theirs.shape == (5, 30522 + 250037)
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)
    assert (ours[:, :30522] > 0).sum(1).min() > 5 and (ours[:, 30522:] > 0).sum(1).min() >= 1


def test_st_decode_names_output_columns_and_resave_round_trips(tmp_path):
    folder = _connector_folder(tmp_path, echo=True, n_added=1)
    st, first = _st_encode(export_connector_st(folder, tmp_path / "st"), TEXTS)
    english_tok = load_tokenizer(str(tmp_path / "en"))
    bridge_tok = load_tokenizer(str(tmp_path / "bridge"))
    row = first[4]
    decoded = st.decode(torch.from_numpy(row).to_sparse())
    expected = [((english_tok.convert_ids_to_tokens(int(i)) if i < 1000
                  else "echo:" + bridge_tok.convert_ids_to_tokens(int(i) - 1000)), float(row[i]))
                for i in np.flatnonzero(row)]
    assert sorted(decoded, key=repr) == sorted(expected, key=repr) and ("echo:lights", float(row[1000 + 61])) in decoded
    st.save(str(tmp_path / "resaved"))  # sentence-transformers' own save: the folder loads again, same vectors
    _, again = _st_encode(tmp_path / "resaved", TEXTS)
    np.testing.assert_array_equal(again, first)


def test_folders_saved_before_echo_pooling_keep_max_pooling(tmp_path):
    """Folders written before the echo block had a pooling setting (no key in either config) pool by max, as
    they were trained: loading one never changes its vectors."""
    folder = _connector_folder(tmp_path, echo=True, n_added=0, echo_pooling="max")
    out = export_connector_st(folder, tmp_path / "st")
    ours = SparseEncoder.from_pretrained(folder).encode(TEXTS).toarray()
    for f in (Path(folder) / "connector_config.json", Path(out) / "sembridge_connector.json"):
        cfg = json.loads(f.read_text())
        del cfg["echo_pooling"]
        f.write_text(json.dumps(cfg))
    assert load_connector(folder)[0].config.echo_pooling == "max"
    np.testing.assert_array_equal(SparseEncoder.from_pretrained(folder).encode(TEXTS).toarray(), ours)
    np.testing.assert_allclose(_st_encode(out, TEXTS)[1], ours, atol=1e-4, rtol=1e-4)


def _npz_edit(f, edit):
    weights = dict(np.load(f))
    edit(weights)
    np.savez(f, **weights)


def _json_edit(f, edit):
    d = json.loads(f.read_text())
    edit(d)
    f.write_text(json.dumps(d))


BAD_FOLDERS = {  # name: (how the copy of a good connector folder is broken, what the one error line says)
    "not_a_connector": (lambda f: (f / "connector_config.json").unlink(), "no connector_config.json"),
    "invalid_json": (lambda f: (f / "connector_config.json").write_text("{\n  \"kind\": "),
                     "connector_config.json: invalid JSON at line 2"),
    "unknown_key": (lambda f: _json_edit(f / "connector_config.json", lambda d: d.update(colour="red")),
                    "connector_config.json: not a connector config"),
    "bridge_hidden": (lambda f: _json_edit(f / "connector_config.json", lambda d: d.update(bridge_hidden=16)),
                      "bridge_hidden is 16"),
    "no_weights": (lambda f: (f / "connector.npz").unlink(), "connector.npz: missing"),
    "weights_missing_key": (lambda f: _npz_edit(f / "connector.npz", lambda w: w.pop("connector.fc1.bias")),
                            "connector.npz: weights do not match connector_config.json"),
    "weights_shape": (lambda f: _npz_edit(f / "connector.npz", lambda w: w.update({"added": np.zeros((3, 32))})),
                      "connector.npz: added has shape (3, 32), expected (1, 32)"),
    "no_bridge": (lambda f: shutil.rmtree(f / "bridge"), "bridge: missing"),
    "bridge_no_config": (lambda f: (f / "bridge" / "config.json").unlink(), "bridge: no config.json"),
}


def test_bad_connector_folders_give_one_error_line_naming_the_file(tmp_path, capsys):
    good = _connector_folder(tmp_path, echo=False, n_added=1)
    capsys.readouterr()
    for name, (breaks, message) in BAD_FOLDERS.items():
        bad = tmp_path / name
        shutil.copytree(good, bad)
        breaks(bad)
        assert run_cli(export_main, ["--connector", str(bad), "--out", str(tmp_path / "out")]) == 1, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (name, err)
        assert str(bad) in err[0] or name == "bridge_hidden", (name, err)
    assert not (tmp_path / "out").exists()  # every error came before anything was written
    assert run_cli(export_main, ["--connector", str(good), "--out", str(good)]) == 1
    assert "must not be the connector folder" in capsys.readouterr().err


def test_st_load_rejects_weights_that_do_not_match_its_config(tmp_path):
    from sentence_transformers import SparseEncoder as STSparseEncoder  # heavy: torch + sentence-transformers

    out = export_connector_st(_connector_folder(tmp_path, echo=True, n_added=1), tmp_path / "st")
    cfg = Path(out) / "sembridge_connector.json"
    _json_edit(cfg, lambda d: d.update(n_added=0))
    with pytest.raises(ValueError, match=r"connector.safetensors: does not match sembridge_connector.json"):
        STSparseEncoder(str(out), trust_remote_code=True, device="cpu")


def test_output_names(tmp_path):
    folder = _connector_folder(tmp_path, echo=True, n_added=0)
    model, bridge_tok, english_tok = load_connector(folder)
    names = output_names(model.config, english_tok, bridge_tok)
    assert len(names) == model.config.vocab_size == 2000
    assert names[61] == "lights" and names[1061] == "echo:lights" and names[999] == "[DIM999]"


def _with_memory(tmp_path, folder, *, weight=0.7):
    """`folder` re-saved with a parallel memory over 12 texts of the tiny bridge (random sparse English values)."""
    from transformers import AutoModel, AutoTokenizer

    keys_texts = [f"{a} {b}" for a in ("cat", "mat", "lights", "world") for b in ("sat", "the", "hello")]
    tok = AutoTokenizer.from_pretrained(tmp_path / "bridge")
    pools = _torch_pools(AutoModel.from_pretrained(tmp_path / "bridge", add_pooling_layer=False).eval(), tok,
                         keys_texts)
    rng = np.random.default_rng(0)
    values = sp.random(len(keys_texts), 1000, density=0.02, random_state=1, format="csr", dtype=np.float32)
    values.data = rng.uniform(0.1, 2.0, values.nnz).astype(np.float32)
    memory = ParallelMemory.build(pools, values, k=3, temperature=0.1, weight=weight)
    model, _, english_tokenizer = load_connector(folder)
    return save_connector(model, tmp_path / "conn_mem", bridge_folder=tmp_path / "bridge",
                          english_tokenizer=english_tokenizer, memory=memory), memory, tok


def _torch_pools(bridge, tok, texts):
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        x = bridge(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    m = enc["attention_mask"][..., None].float()
    return ((x * m).sum(1) / m.sum(1)).numpy()


def _numpy_memory(memory, pools):
    """The memory's vectors by brute force (full sort, one query at a time)."""
    out = np.zeros((len(pools), memory.values.shape[1]), np.float32)
    dense = memory.values.toarray()
    for i, p in enumerate(pools):
        q = (p - memory.center) / np.linalg.norm(p - memory.center)
        sim = memory.keys @ q
        top = np.argsort(-sim)[:memory.k]
        w = np.exp(sim[top] / memory.temperature)
        out[i] = (w / w.sum()) @ dense[top]
    return out


@pytest.mark.parametrize("echo", [False, True])
def test_english_queries_with_memory_match_numpy_and_st(tmp_path, echo):
    """encode_english_queries = the English block + weight x the memory (brute force over torch's bridge pools);
    the sentence-transformers english_queries export gives the same within 1e-4."""
    from transformers import AutoModel

    folder, memory, tok = _with_memory(tmp_path, _connector_folder(tmp_path, echo=echo, n_added=1))
    enc = SparseEncoder.from_pretrained(folder)
    ours = enc.encode_english_queries(TEXTS, batch_size=3).toarray()
    english = enc.encode(TEXTS, batch_size=3).toarray()[:, :1000]
    pools = _torch_pools(AutoModel.from_pretrained(tmp_path / "bridge", add_pooling_layer=False).eval(), tok, TEXTS)
    np.testing.assert_allclose(ours, english + 0.7 * _numpy_memory(memory, pools), atol=1e-4, rtol=1e-4)
    assert (ours - english).max() > 0.05  # the memory added something

    st, theirs = _st_encode(export_connector_st(folder, tmp_path / "st_q", english_queries=True), TEXTS)
    assert theirs.shape == (len(TEXTS), 1000) and st.get_embedding_dimension() == 1000
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)


def test_a_folder_without_memory_gives_the_english_block(tmp_path):
    folder = _connector_folder(tmp_path, echo=True, n_added=0)
    enc = SparseEncoder.from_pretrained(folder)
    assert enc.memory is None
    np.testing.assert_allclose(enc.encode_english_queries(TEXTS).toarray(), enc.encode(TEXTS).toarray()[:, :1000],
                               atol=1e-6)
    _, theirs = _st_encode(export_connector_st(folder, tmp_path / "st_q", english_queries=True), TEXTS)
    np.testing.assert_allclose(theirs, enc.encode(TEXTS).toarray()[:, :1000], atol=1e-4, rtol=1e-4)
    # re-saving without a memory removes a stale one
    with_mem, _, _ = _with_memory(tmp_path, folder)
    model, _, english_tokenizer = load_connector(with_mem)
    save_connector(model, with_mem, bridge_folder=tmp_path / "bridge", english_tokenizer=english_tokenizer)
    assert SparseEncoder.from_pretrained(with_mem).memory is None
    with pytest.raises(TypeError, match="connector"):
        SparseEncoder.from_pretrained(tmp_path / "en").encode_english_queries(TEXTS)


def _with_query_weights(tmp_path, folder):
    """`folder` re-saved with LexEcho query weights: random positive weights on every bridge id, 0 on specials."""
    model, bridge_tok, english_tokenizer = load_connector(folder)
    weights = np.zeros(model.config.bridge_vocab, np.float32)
    named = [i for i in bridge_tok.get_vocab().values() if i not in bridge_tok.all_special_ids]
    weights[named] = np.random.default_rng(2).uniform(0.5, 4.0, len(named))
    return save_connector(model, tmp_path / "conn_idf", bridge_folder=tmp_path / "bridge",
                          english_tokenizer=english_tokenizer, query_weights=weights), weights, bridge_tok


def test_idf_queries_match_numpy_and_st(tmp_path, capsys):
    """encode_queries of a connector folder with idf.json: the English block as `encode` gives it, the LexEcho
    block each distinct bridge token of the text at its weight (numpy); the sentence-transformers idf_queries
    export (and the CLI's --idf-queries) gives the same within 1e-4; documents are unchanged."""
    folder, weights, tok = _with_query_weights(tmp_path, _connector_folder(tmp_path, echo=True, n_added=1))
    enc = SparseEncoder.from_pretrained(folder)
    np.testing.assert_array_equal(enc.query_weights, weights)  # idf.json round trip through the token strings
    ours = enc.encode_queries(TEXTS, batch_size=3, max_length=6).toarray()
    model_vectors = enc.encode(TEXTS, batch_size=3, max_length=6).toarray()
    expected = np.zeros_like(model_vectors)
    expected[:, :1000] = model_vectors[:, :1000]
    for r, ids in enumerate(tok(TEXTS, truncation=True, max_length=6)["input_ids"]):
        for i in set(ids) - set(tok.all_special_ids):
            expected[r, 1000 + i] = weights[i]
    np.testing.assert_array_equal(ours, expected)
    assert (ours[:, 1000:] != model_vectors[:, 1000:]).any()
    # the evaluator's cache keys a connector's queries by the model, the weights and the length
    assert not enc.static_queries
    ids = [f"q{i}" for i in range(len(TEXTS))]
    for length in (6, 6, 64):
        got = CorpusEncoder(enc).encode(ids, TEXTS, max_length=length, queries=True, cache_dir=tmp_path / "c")
        np.testing.assert_allclose(got.matrix.toarray(), enc.encode_queries(TEXTS, max_length=length).toarray(),
                                   atol=1e-6)
    assert len(list((tmp_path / "c").glob("*.npz"))) == 2
    assert export_main(["--connector", str(folder), "--out", str(tmp_path / "st_q"), "--idf-queries"]) == 0
    assert "wrote" in capsys.readouterr().out
    st, _ = _st_encode(tmp_path / "st_q", TEXTS[:1])
    st.max_seq_length = 6  # the tokens the JAX queries read
    theirs = st.encode(TEXTS, batch_size=2, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)
    _, documents = _st_encode(export_connector_st(folder, tmp_path / "st"), TEXTS)  # the document encoder
    np.testing.assert_allclose(documents, enc.encode(TEXTS, batch_size=3).toarray(), atol=1e-4, rtol=1e-4)


def test_idf_query_errors_and_stale_weights(tmp_path):
    plain = _connector_folder(tmp_path, echo=False, n_added=0)
    model, _, english_tokenizer = load_connector(plain)
    with pytest.raises(ValueError, match="connector.echo is off"):
        save_connector(model, tmp_path / "x", bridge_folder=tmp_path / "bridge", english_tokenizer=english_tokenizer,
                       query_weights=np.ones(1000, np.float32))
    assert not (tmp_path / "x").exists()  # refused before anything was written
    with pytest.raises(FileNotFoundError, match="idf.json: missing"):
        export_connector_st(plain, tmp_path / "st_q", idf_queries=True)
    with pytest.raises(ValueError, match="two different query encoders"):
        export_connector_st(plain, tmp_path / "st_q", idf_queries=True, english_queries=True)
    with pytest.raises(SystemExit, match="--connector only"):
        export_main(["--model", str(tmp_path / "en"), "--out", str(tmp_path / "y"), "--idf-queries"])
    folder, _, _ = _with_query_weights(tmp_path, _connector_folder(tmp_path, echo=True, n_added=0))
    unnamed = np.ones(1000, np.float32)  # the tiny bridge tokenizer names fewer ids than its model's rows
    with pytest.raises(ValueError, match="save_connector: query weights at ids no token of the tokenizer names"):
        save_connector(load_connector(folder)[0], folder, bridge_folder=tmp_path / "bridge",
                       english_tokenizer=english_tokenizer, query_weights=unnamed)
    with pytest.raises(ValueError, match="LexEcho block has 1000 columns"):
        save_connector(load_connector(folder)[0], folder, bridge_folder=tmp_path / "bridge",
                       english_tokenizer=english_tokenizer, query_weights=np.ones(7, np.float32))
    assert SparseEncoder.from_pretrained(folder).query_weights is not None  # the refused save left it as it was
    model, _, english_tokenizer = load_connector(folder)
    save_connector(model, folder, bridge_folder=tmp_path / "bridge", english_tokenizer=english_tokenizer)
    enc = SparseEncoder.from_pretrained(folder)  # re-saved without weights: no stale idf.json
    assert enc.query_weights is None
    np.testing.assert_array_equal(enc.encode_queries(TEXTS).toarray(), enc.encode(TEXTS, max_length=64).toarray())


def test_evaluate_cli_scores_a_connector_folder_with_its_query_weights(tmp_path):
    """evaluate.py --model CONNECTOR_FOLDER: the folder's idf.json queries; --idf-corpus counts the LexEcho block's
    weights over a corpus with the bridge tokenizer; --model-queries ignores them; each equals our own scores."""
    import evaluate
    from sembridge_jax.data.idf import corpus_query_weights
    from sembridge_jax.data.retrieval import load_beir
    from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_encoder
    folder, weights, tok = _with_query_weights(tmp_path, _connector_folder(tmp_path, echo=True, n_added=0))
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    pages = {"p1": "the cat sat on the mat", "p2": "northern lights causes", "p3": "hello world", "p4": "what sat"}
    queries = {"q1": "cat mat", "q2": "northern lights", "q3": "hello"}
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n"
                                               for d, t in pages.items()))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tp1\t1\nq2\tp2\t1\nq3\tp3\t1\n")
    ds = load_beir(beir, "dev")
    settings = EvalSettings(measures=("nDCG@10",), depth=10, query_max_length=16, doc_max_length=16)
    common = ["--beir", str(beir), "--measures", "nDCG@10", "--depth", "10", "--query-max-length", "16",
              "--doc-max-length", "16", "--out", str(tmp_path / "eval")]
    enc = SparseEncoder.from_pretrained(folder)
    assert evaluate.main(["--model", str(folder), *common])[0]["nDCG@10"] == pytest.approx(
        evaluate_encoder(CorpusEncoder(enc), ds, settings, "x")["nDCG@10"])
    enc.query_weights = corpus_query_weights(beir, tok, 1000)
    assert enc.query_weights.any() and not np.array_equal(enc.query_weights, weights)
    assert evaluate.main(["--model", str(folder), "--idf-corpus", str(beir), *common])[0]["nDCG@10"] == pytest.approx(
        evaluate_encoder(CorpusEncoder(enc), ds, settings, "x")["nDCG@10"])
    enc.query_weights = None
    assert evaluate.main(["--model", str(folder), "--model-queries", *common])[0]["nDCG@10"] == pytest.approx(
        evaluate_encoder(CorpusEncoder(enc), ds, settings, "x")["nDCG@10"])
