"""Bad input to the importer: the error names the problem (model_type, missing file/tensor, shape)."""
import json

import pytest
from safetensors.numpy import load_file, save_file

from sembridge_jax.hf.load import load_pretrained
from sembridge_jax.models import EncoderConfig
from tests.tiny_models import make_hf_folder


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    make_hf_folder(folder, "bert", seed=21)
    return folder


def _copy(good, dst, drop_weights=False):
    dst.mkdir()
    for f in good.iterdir():
        if not (drop_weights and f.name == "model.safetensors"):
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_unknown_model_type(good, tmp_path):
    folder = _copy(good, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\.json.*unsupported model_type 'gpt2'"):
        load_pretrained(folder)


def test_folder_without_weights(good, tmp_path):
    folder = _copy(good, tmp_path / "m", drop_weights=True)
    with pytest.raises(FileNotFoundError, match=r"no weights found.*model\.safetensors.*pytorch_model\.bin"):
        load_pretrained(folder)


def test_missing_folder():
    with pytest.raises(FileNotFoundError, match="no such model folder or hub repo: './no/such/folder'"):
        load_pretrained("./no/such/folder")


def _edit_tensors(good, tmp_path, edit):
    folder = _copy(good, tmp_path / "m")
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_missing_tensor(good, tmp_path):
    name = "bert.encoder.layer.1.attention.self.key.weight"
    folder = _edit_tensors(good, tmp_path, lambda t: t.pop(name))
    with pytest.raises(ValueError, match=rf"model\.safetensors: missing tensor '{name}'"):
        load_pretrained(folder)


def test_missing_bias_names_both_aliases(good, tmp_path):
    folder = _edit_tensors(good, tmp_path, lambda t: t.pop("cls.predictions.bias"))
    with pytest.raises(ValueError, match=r"'cls\.predictions\.decoder\.bias' or 'cls\.predictions\.bias'"):
        load_pretrained(folder)


def test_wrong_shape(good, tmp_path):
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    folder = _edit_tensors(good, tmp_path, lambda t: t.__setitem__(name, t[name][:10]))
    with pytest.raises(ValueError, match=rf"tensor '{name}' has shape \(10, 32\), expected \(64, 32\)"):
        load_pretrained(folder)


def test_bad_config_values():
    with pytest.raises(ValueError, match="not divisible"):
        EncoderConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="lacks the key 'hidden_size'"):
        EncoderConfig.from_hf({"model_type": "bert", "vocab_size": 10})


def test_hub_id_goes_through_snapshot_download(good, monkeypatch):
    """A hub id is fetched with huggingface_hub.snapshot_download (stubbed here: no network in tests)."""
    from sembridge_jax.hf import hub

    calls = []

    def fake_snapshot_download(repo_id, allow_patterns=None):
        calls.append((repo_id, allow_patterns))
        return str(good)

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    model, tok, cfg = load_pretrained("someone/tiny-splade")
    assert calls and calls[0][0] == "someone/tiny-splade" and "*.safetensors" in calls[0][1]
    assert cfg.vocab_size == 1000 and tok is not None
