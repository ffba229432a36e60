"""Import / export against transformers and sentence-transformers: parity and round trips."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from sentence_transformers import SparseEncoder as STSparseEncoder
from transformers import AutoModelForMaskedLM, AutoTokenizer

from sembridge_jax.api import SparseEncoder
from sembridge_jax.export.__main__ import main as export_main
from sembridge_jax.hf.load import load_model, load_pretrained, read_tensors
from sembridge_jax.hf.save import save_pretrained
from tests.tiny_models import make_hf_folder

TEXTS = ["what causes the northern lights", "the cat sat on the mat", "hello world", "lights"]


def _params(model):
    return {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _st_vectors(folder, texts):
    st = STSparseEncoder(str(folder), device="cpu")
    return st.encode(texts, convert_to_tensor=True).to_dense().numpy()


@pytest.fixture(scope="module", params=["bert", "xlm-roberta"])
def exported(request, tmp_path_factory):
    """A tiny HF model imported by us and exported to a SparseEncoder folder (sum pooling for XLM-R)."""
    src = tmp_path_factory.mktemp("src")
    make_hf_folder(src, request.param, seed=7)
    model, tok, _ = load_pretrained(src)
    out = tmp_path_factory.mktemp("out")
    pooling = "sum" if request.param == "xlm-roberta" else "max"
    save_pretrained(model, tok, out, pooling=pooling)
    return src, out, model, pooling


def test_export_has_sparse_encoder_files(exported):
    _, out, model, pooling = exported
    for f in ("config.json", "model.safetensors", "modules.json", "1_SpladePooling/config.json",
              "config_sentence_transformers.json", "sentence_bert_config.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "1_SpladePooling/config.json").read_text())["pooling_strategy"] == pooling
    assert json.loads((out / "config_sentence_transformers.json").read_text())["model_type"] == "SparseEncoder"


def test_exported_folder_reloads_in_pytorch_with_identical_logits(exported):
    src, out, _, _ = exported
    tok = AutoTokenizer.from_pretrained(str(src))
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        a = AutoModelForMaskedLM.from_pretrained(str(src)).eval()(**batch).logits.numpy()
        b = AutoModelForMaskedLM.from_pretrained(str(out)).eval()(**batch).logits.numpy()
    np.testing.assert_allclose(b, a, atol=1e-6)


def test_our_splade_matches_sentence_transformers(exported):
    """Our SPLADE vectors (via the API) equal SparseEncoder's on the same folder, for max and sum
    pooling (read back from 1_SpladePooling); chunked equals unchunked."""
    _, out, _, pooling = exported
    ref = _st_vectors(out, TEXTS)
    ours = SparseEncoder.from_pretrained(out)
    assert ours.config.splade_pooling == pooling
    got = ours.encode(TEXTS, batch_size=2).toarray()
    assert (ref > 0).sum() > 0
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    chunked = ours.encode(TEXTS, batch_size=4, chunk_size=2).toarray()
    np.testing.assert_allclose(chunked, got, atol=1e-5)


def test_export_then_import_gives_identical_parameters(exported):
    _, out, model, _ = exported
    again = load_model(out)
    assert again.config.replace(hf_model_type="") == model.config.replace(hf_model_type="")
    a, b = _params(model), _params(again)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))


def test_untied_and_distilbert_round_trip(tmp_path):
    for model_type, tie in (("bert", False), ("distilbert", True)):
        src, out = tmp_path / f"{model_type}-src", tmp_path / f"{model_type}-out"
        tm = make_hf_folder(src, model_type, tie=tie, seed=11)
        model, tok, _ = load_pretrained(src)
        save_pretrained(model, tok, out)
        reloaded = AutoModelForMaskedLM.from_pretrained(str(out)).eval()
        batch = tok(TEXTS, padding=True, return_tensors="pt")
        if model_type == "distilbert":
            batch.pop("token_type_ids")
        with torch.no_grad():
            np.testing.assert_allclose(reloaded(**batch).logits.numpy(), tm(**batch).logits.numpy(), atol=1e-6)
        for k, v in _params(load_model(out)).items():
            np.testing.assert_array_equal(v, _params(model)[k])


def test_pytorch_bin_and_unprefixed_names_load(tmp_path):
    """pytorch_model.bin is read (torch.load weights_only); backbone names without 'bert.' load too."""
    src = tmp_path / "src"
    make_hf_folder(src, "bert", seed=12)
    ref = _params(load_model(src))
    tensors, _ = read_tensors(src)
    renamed = {k.removeprefix("bert."): torch.tensor(v) for k, v in tensors.items()}
    renamed["cls.predictions.decoder.bias"] = renamed.pop("cls.predictions.bias")  # the older alias
    (src / "model.safetensors").unlink()
    torch.save(renamed, src / "pytorch_model.bin")
    got = _params(load_model(src))
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=str(k))


def test_export_cli(tmp_path):
    src = tmp_path / "src"
    make_hf_folder(src, "distilbert", seed=13)
    assert export_main(["--model", str(src), "--out", str(tmp_path / "out"), "--pooling", "sum"]) == 0
    cfg = json.loads((tmp_path / "out" / "1_SpladePooling" / "config.json").read_text())
    assert cfg["pooling_strategy"] == "sum"
    assert (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.kit
def test_kit_splade_tiny_top_terms_match_pytorch(kit):
    folder = kit / "assets" / "splade-tiny-en"
    enc = SparseEncoder.from_pretrained(folder)
    query = "what causes the northern lights"
    w = enc.encode([query]).toarray()[0]
    top = np.argsort(-w)[:6]
    terms = [(enc.tokenizer.convert_ids_to_tokens(int(i)), round(float(w[i]), 2)) for i in top]
    assert terms == [("northern", 2.68), ("lights", 2.31), ("causes", 2.28), ("cause", 2.06),
                     ("north", 1.67), ("light", 1.56)]
    tok = AutoTokenizer.from_pretrained(str(folder))
    mlm = AutoModelForMaskedLM.from_pretrained(str(folder)).eval()
    b = tok([query], return_tensors="pt")
    with torch.no_grad():
        ref = (torch.log1p(torch.relu(mlm(**b).logits)) * b["attention_mask"][..., None]).amax(1)[0].numpy()
    np.testing.assert_allclose(w, ref, atol=1e-4)
    ids = jnp.asarray(b["input_ids"].numpy())
    mask = jnp.asarray(b["attention_mask"].numpy())
    with torch.no_grad():
        logits = mlm(**b).logits.numpy()
    np.testing.assert_allclose(np.asarray(enc.model.mlm_logits(ids, mask)), logits, atol=1e-4)
