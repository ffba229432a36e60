"""The hub code paths (models, tokenizers, bridge, data sets) against a local hub server (tests/hub/).

The real huggingface_hub / datasets / transformers / sentence-transformers code runs; only the endpoint is
local. Repos are tiny but have the real file layouts (see tests/hub/repos.py for the sources).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hub.repos import (
    MIRACL_KO_DOCS,
    MIRACL_KO_QRELS,
    MIRACL_KO_TOPICS,
    MRTYDI_KO_DOCS,
    WEBFAQ_KOR_ROWS,
    all_repos,
    kobigbird_vocab,
)
from hub.server import FakeHub, hub_environment

from sembridge_jax.data import hub as data_hub

KO_DEV_QRELS = {}
for _q, _d, _r in MIRACL_KO_QRELS["dev"]:
    KO_DEV_QRELS.setdefault(_q, {})[_d] = _r
KO_DEV_RELEVANT = {q: r for q, r in KO_DEV_QRELS.items() if max(r.values()) > 0}  # query 4: grade 0 only


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    """The local hub with every repo the headline command downloads (built once per test process)."""
    with FakeHub(all_repos(tmp_path_factory.mktemp("hub-repos"))) as server:
        yield server


@pytest.fixture
def hub(hub_server, tmp_path):
    """The libraries pointed at the local hub, with an empty cache under tmp (HF_HOME, HF_HUB_CACHE,
    HF_DATASETS_CACHE) and online mode; no lookup of a non-loopback host may happen."""
    with hub_environment(hub_server.url, tmp_path / "hf-home") as refused:
        hub_server.clear_log()  # the request log then holds this test's requests only
        yield hub_server
    assert not refused, f"tried to reach {refused}"


def requested(hub_server, fragment: str) -> list[str]:
    return [p for p in hub_server.paths_requested() if fragment in p]


# -- the server itself ---------------------------------------------------------------------------------------
def test_hub_api_listing_paths_info_and_ranges(hub):
    from huggingface_hub import HfApi, HfFileSystem

    api = HfApi()
    info = api.dataset_info("miracl/miracl-corpus")
    assert len(info.sha) == 40
    files = api.list_repo_files("miracl/miracl-corpus", repo_type="dataset")
    assert "miracl-corpus-v1.0-ko/docs-2.jsonl.gz" in files and ".gitattributes" in files
    tree = list(api.list_repo_tree("miracl/miracl-corpus", "miracl-corpus-v1.0-ko", repo_type="dataset"))
    shard = next(t for t in tree if t.path.endswith("docs-0.jsonl.gz"))
    assert shard.lfs is not None and shard.lfs.size == shard.size  # jsonl.gz is LFS, as on the hub
    infos = api.get_paths_info("PaDaS-Lab/webfaq", ["data/kor.parquet", "README.md", "nope"], repo_type="dataset")
    assert sorted(i.path for i in infos) == ["README.md", "data/kor.parquet"]
    with HfFileSystem().open("datasets/PaDaS-Lab/webfaq/data/kor.parquet", "rb") as f:
        head = f.read(4)
        f.seek(-4, 2)
        tail = f.read(4)
    assert head == tail == b"PAR1"  # ranged reads through the LFS redirect


# -- models -----------------------------------------------------------------------------------------------
def test_splade_v3_loads_with_load_pretrained_and_transformers(hub):
    import torch
    import transformers as tf
    from huggingface_hub import snapshot_download

    from sembridge_jax.hf.load import load_pretrained

    model, tokenizer, config = load_pretrained("naver/splade-v3")
    hf_model = tf.AutoModelForMaskedLM.from_pretrained("naver/splade-v3").eval()
    assert type(hf_model).__name__ == "BertForMaskedLM"
    assert config.vocab_size == hf_model.config.vocab_size and config.splade_pooling == "max"
    hf_tok = tf.AutoTokenizer.from_pretrained("naver/splade-v3")
    enc = hf_tok(["what causes northern lights", "the capital city"], padding=True, return_tensors="np")
    assert (tokenizer(["what causes northern lights", "the capital city"], padding=True, return_tensors="np")
            ["input_ids"] == enc["input_ids"]).all()
    assert hf_tok.unk_token_id not in enc["input_ids"]
    ours = np.asarray(model.mlm_logits(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]))
    with torch.no_grad():
        ref = hf_model(**{k: torch.tensor(v) for k, v in enc.items()}).logits.numpy()
    mask = enc["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours[mask], ref[mask], rtol=1e-4, atol=1e-4)
    # what the project's snapshot pattern fetched: weights, config, tokenizer, the SpladePooling module
    got = {p.rsplit("/resolve/", 1)[1].split("/", 1)[1] for p in requested(hub, "/naver/splade-v3/resolve/")}
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "1_SpladePooling/config.json",
            "modules.json"} <= got
    assert "README.md" not in got and "pytorch_model.bin" not in got  # the same weights twice: safetensors only
    folder = Path(snapshot_download("naver/splade-v3"))  # the whole repo, as the hub lists it
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == sorted(
        hub.repos[("model", "naver/splade-v3")].entries)


def test_weights_fall_back_to_pytorch_model_bin(hub):
    """A repo with no safetensors (older uploads): resolve_model_dir then fetches pytorch_model.bin."""
    import io

    import torch
    import transformers as tf
    from hub.server import HubRepo

    from sembridge_jax.hf.load import load_pretrained

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]
    torch.manual_seed(0)
    model = tf.BertForMaskedLM(tf.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32,
                                             max_position_embeddings=16)).eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    hub.add(HubRepo("org/bin-only", {"config.json": model.config.to_json_string().encode(),
                                     "pytorch_model.bin": buf.getvalue(), "vocab.txt": "\n".join(vocab).encode()}))
    ours, _, _ = load_pretrained("org/bin-only")
    assert any(p.endswith("/pytorch_model.bin") for p in requested(hub, "/org/bin-only/resolve/"))
    ids = np.array([[2, 5, 6, 3]])
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours.mlm_logits(ids, np.ones_like(ids), np.zeros_like(ids))), ref,
                               rtol=1e-4, atol=1e-4)


def test_splade_v3_as_sentence_transformers_sparse_encoder(hub):
    from sentence_transformers import SparseEncoder

    enc = SparseEncoder("naver/splade-v3", device="cpu")
    emb = enc.encode(["what causes northern lights"], convert_to_tensor=True).to_dense()
    assert emb.shape == (1, enc[0].auto_model.config.vocab_size) and (emb >= 0).all() and (emb > 0).any()


def test_an_inference_free_export_loads_from_the_hub(hub, tmp_path):
    """An export with IDF query weights pushed as is: our loader and sentence-transformers' Router (whose
    document route is the folder itself, module path ".") read it through the hub's per-file downloads."""
    from hub.server import HubRepo
    from sentence_transformers import SparseEncoder as STSparseEncoder

    from sembridge_jax.api import SparseEncoder
    from sembridge_jax.data.idf import corpus_query_weights

    folder = Path(__file__).resolve().parents[1] / "assets/splade-tiny-en"
    local = SparseEncoder.from_pretrained(folder)
    docs = ["the northern lights over the sea", "a cat sat on the mat", "lights on"]
    (tmp_path / "docs.txt").write_text("\n".join(docs) + "\n")
    local.query_weights = corpus_query_weights(tmp_path / "docs.txt", local.tokenizer, local.vocab_size)
    out = local.save_pretrained(tmp_path / "export")
    hub.add(HubRepo("sembridge/splade-tiny-en-idf", {str(p.relative_to(out)): p.read_bytes()
                                                    for p in sorted(out.rglob("*")) if p.is_file()}))
    ours = SparseEncoder.from_pretrained("sembridge/splade-tiny-en-idf")
    np.testing.assert_array_equal(ours.query_weights, local.query_weights)
    st = STSparseEncoder("sembridge/splade-tiny-en-idf", device="cpu")
    queries = ["northern lights", "cat on a mat"]
    np.testing.assert_allclose(st.encode_query(queries, convert_to_tensor=True).to_dense().numpy(),
                               ours.encode_queries(queries).toarray(), rtol=1e-6)
    np.testing.assert_allclose(st.encode_document(docs, convert_to_tensor=True).to_dense().numpy(),
                               ours.encode(docs).toarray(), atol=1e-4)


def test_kobigbird_tokenizer(hub):
    import transformers as tf

    tok = tf.AutoTokenizer.from_pretrained("monologg/kobigbird-bert-base")
    assert type(tok).__name__.startswith("BertTokenizer")  # the class tokenizer_config.json names
    vocab = kobigbird_vocab()
    assert len(tok) == len(vocab) and tok.convert_ids_to_tokens(5) == "<s>" and tok.eos_token == "</s>"
    pieces = tok.tokenize("대한민국의 수도는 서울")
    assert pieces[:2] == ["대한민국", "##의"] and "[UNK]" not in pieces
    assert tok.model_max_length == 4096


def test_bge_m3_sentence_transformer(hub):
    import torch
    import transformers as tf
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer("BAAI/bge-m3", device="cpu")
    names = [type(m).__name__ for m in st]
    assert names == ["Transformer", "Pooling", "Normalize"], names
    pooling = st[1].get_config_dict()
    assert pooling.get("pooling_mode") == "cls" or pooling.get("pooling_mode_cls_token"), pooling
    assert st.max_seq_length == 8192
    texts = ["대한민국의 수도는 서울", "what is the capital city"]
    emb = st.encode(texts, convert_to_numpy=True)
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # CLS pooling + normalisation of the plain transformers model gives the same vectors
    tok = tf.AutoTokenizer.from_pretrained("BAAI/bge-m3")
    model = tf.AutoModel.from_pretrained("BAAI/bge-m3").eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    assert tok.unk_token_id not in batch["input_ids"]
    with torch.no_grad():
        cls = model(**batch).last_hidden_state[:, 0]
    np.testing.assert_allclose(emb, torch.nn.functional.normalize(cls, dim=-1).numpy(), atol=1e-5)


# -- MIRACL ------------------------------------------------------------------------------------------------
def test_load_miracl_dev_with_full_corpus(hub):
    corpus, queries, qrels = data_hub.load_miracl("ko", "dev")
    assert queries == {q: t for q, t in MIRACL_KO_TOPICS["dev"] if q in KO_DEV_RELEVANT}
    assert qrels == KO_DEV_RELEVANT and qrels["0"]["105#1"] == 0  # grade 0 (judged, not relevant) kept
    assert corpus == {d: {"title": t, "text": x} for _, d, t, x in MIRACL_KO_DOCS}
    assert len(requested(hub, "/miracl-corpus-v1.0-ko/docs-")) >= 3  # every shard of ko


def test_load_miracl_judged_corpus_reads_only_needed_shards(hub):
    corpus, queries, qrels = data_hub.load_miracl("ko", "dev", corpus="judged", max_queries=2)
    assert sorted(queries) == ["0", "1"] and set(qrels) == {"0", "1"}
    assert set(corpus) == {"105#0", "105#1", "2201#0"}
    shards = requested(hub, "/miracl-corpus-v1.0-ko/docs-")
    assert shards and all("docs-0.jsonl.gz" in p for p in shards)  # all judged docs sit in shard 0


def test_load_miracl_train_and_test_splits(hub):
    _, queries, qrels = data_hub.load_miracl("ko", "train", corpus=False)
    assert set(queries) == {"100", "101"} and qrels["101"] == {"3310#0": 1, "105#1": 0}
    _, queries, qrels = data_hub.load_miracl("ko", "testB", corpus=False)
    assert queries == dict(MIRACL_KO_TOPICS["test-b"]) and qrels == {}


def test_load_miracl_errors_name_the_repo_and_what_exists(hub):
    with pytest.raises(ValueError, match=r"miracl/miracl has no language 'xx'.*available: ko, sw"):
        data_hub.load_miracl("xx", "dev")
    with pytest.raises(ValueError, match="split 'validation' unknown"):
        data_hub.load_miracl("ko", "validation")
    with pytest.raises(FileNotFoundError, match=r"miracl/miracl has no .*sw-test-a\.tsv .*has: topics\.miracl-v1\.0-sw-dev"):
        data_hub.load_miracl("sw", "testA")
    with pytest.raises(ValueError, match=r"miracl/miracl-corpus has no corpus for language 'zz'.*available: ko, sw"):
        data_hub.miracl_corpus_shards("zz")


def test_load_miracl_offline_from_warm_cache(hub, monkeypatch):
    import huggingface_hub.constants as hc

    online = data_hub.load_miracl("ko", "dev")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    n = len(hub.requests)
    assert data_hub.load_miracl("ko", "dev") == online
    assert len(hub.requests) == n  # nothing asked of the hub


def test_gated_miracl_needs_a_token(hub, monkeypatch):
    """miracl/miracl is gated on the hub: without HF_TOKEN the loader says so (listing works, files don't)."""
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PermissionError, match="miracl/miracl is gated.*HF_TOKEN"):
        data_hub.load_miracl("ko", "dev", corpus=False)


def test_miracl_script_is_refused_by_datasets(hub):
    """The reason the loaders read files: the real layout has a loading script that datasets refuses."""
    import datasets

    with pytest.raises(RuntimeError, match="Dataset scripts are no longer supported, but found miracl.py"):
        datasets.load_dataset("miracl/miracl", "ko", split="dev")


def test_load_miracl_capped_corpus_stops_downloading_shards(hub):
    corpus, queries, qrels = data_hub.load_miracl("ko", "dev", max_queries=1, max_docs=3)
    assert list(queries) == ["0"] and {"105#0", "105#1"} <= set(corpus) and len(corpus) >= 3
    assert {p.split("/")[-1].split("?")[0] for p in requested(hub, "/miracl-corpus-v1.0-ko/docs-")} == {
        "docs-0.jsonl.gz"}  # shard 0 holds 4 passages: shards 1 and 2 are never fetched


def test_eval_dataset_from_miracl_hub_ids(hub):
    """What train.py / evaluate.py load for eval.beir='miracl/miracl' (never datasets.load_dataset, which
    refuses the repo's script): relevant queries only, grade-0 judgements kept, caps passed through."""
    from sembridge_jax.data.retrieval import load_eval_dataset

    full = load_eval_dataset("miracl/miracl", split="dev", subset="ko", corpus="miracl/miracl-corpus")
    assert full.qrels == KO_DEV_RELEVANT and set(full.queries) == set(KO_DEV_RELEVANT)  # query 4 dropped
    assert full.corpus == {d: {"title": t, "text": x} for _, d, t, x in MIRACL_KO_DOCS}
    assert full.name == "miracl/miracl:ko/dev"
    judged = load_eval_dataset("miracl/miracl", split="dev", subset="ko", max_queries=2)
    assert sorted(judged.queries) == ["0", "1"] and set(judged.corpus) == {"105#0", "105#1", "2201#0"}
    hub.clear_log()
    capped = load_eval_dataset("miracl/miracl", split="dev", subset="ko", corpus="miracl/miracl-corpus",
                               max_queries=1, max_docs=3)
    assert list(capped.queries) == ["0"] and len(capped.corpus) == 3 and {"105#0", "105#1"} <= set(capped.corpus)
    assert not requested(hub, "docs-1.jsonl.gz") and not requested(hub, "docs-2.jsonl.gz")
    with pytest.raises(ValueError, match="language subset"):
        load_eval_dataset("miracl/miracl", split="dev")


def test_eval_dataset_from_mrtydi_hub_ids(hub):
    from sembridge_jax.data.retrieval import load_eval_dataset

    ds = load_eval_dataset("castorini/mr-tydi", split="test", subset="ko", corpus="castorini/mr-tydi-corpus")
    assert ds.queries == {"77": "한강은 어디로 흐르나?"} and ds.qrels == {"77": {"4415#0": 1}}
    assert set(ds.corpus) == {d for d, _, _ in MRTYDI_KO_DOCS}


# -- Mr.TyDi -----------------------------------------------------------------------------------------------
def test_load_mrtydi(hub):
    corpus, queries, qrels = data_hub.load_mrtydi("ko", "dev", corpus="judged")
    assert queries == {"41": "대한민국의 수도는?", "42": "김치는 무엇인가?"}
    assert qrels == {"41": {"1205#0": 1}, "42": {"8809#1": 1}}
    assert set(corpus) == {"1205#0", "8809#1"} and not requested(hub, "corpus.jsonl.gz")
    corpus, _, _ = data_hub.load_mrtydi("korean", "test")
    assert corpus == {d: {"title": t, "text": x} for d, t, x in MRTYDI_KO_DOCS}
    with pytest.raises(ValueError, match="available: korean"):
        data_hub.load_mrtydi("xx", "test")
    via = data_hub.load_retrieval("castorini/mr-tydi", "ko", "dev", corpus="judged")
    assert via[1] == queries


# -- WebFAQ ------------------------------------------------------------------------------------------------
def test_load_webfaq(hub):
    rows = data_hub.load_webfaq("ko")
    assert [(r["question"], r["answer"]) for r in rows] == [(r[3], r[4]) for r in WEBFAQ_KOR_ROWS]
    assert rows[0]["id"] == WEBFAQ_KOR_ROWS[0][0] and rows[0]["origin"] == WEBFAQ_KOR_ROWS[0][1]
    assert len(data_hub.load_webfaq("kor", max_rows=2, streaming=True)) == 2


def test_webfaq_real_config_split_and_columns(hub):
    """What configs/common.py's training spec needs: config "kor", split "default", question -> answer."""
    import datasets

    ds = datasets.load_dataset("PaDaS-Lab/webfaq", "kor", split="default")
    assert {"id", "origin", "url", "question", "answer"} <= set(ds.column_names) and len(ds) == len(WEBFAQ_KOR_ROWS)
    with pytest.raises(ValueError, match="default"):
        datasets.load_dataset("PaDaS-Lab/webfaq", "kor", split="train")
    with pytest.raises(ValueError, match="has no config 'xyz'"):
        data_hub.load_webfaq("xyz")


def paper_train_spec(**changes):
    """configs/ko_splade.py's data.train section (WebFAQ kor, split default, question -> answer)."""
    from configs.ko_splade import get_config

    spec = get_config().data.train
    for k, v in changes.items():
        spec[k] = v
    return spec


def test_paper_training_reader_reads_webfaq(hub):
    """The training reader of the paper configs: data.examples.read_hf on PaDaS-Lab/webfaq."""
    from sembridge_jax.data.sources import load_examples

    loaded = load_examples(paper_train_spec())
    assert [(e.query, e.positive) for e in loaded.examples] == [(r[3], r[4]) for r in WEBFAQ_KOR_ROWS]
    assert loaded.source == "hf:PaDaS-Lab/webfaq/kor [default]"


def test_paper_training_reader_streams_a_slice(hub):
    """data.train.max_examples streams: ranged reads of the parquet file, nothing saved in the datasets cache."""
    import datasets.config as dcfg

    from sembridge_jax.data.sources import load_examples

    loaded = load_examples(paper_train_spec(max_examples=2))
    assert [(e.query, e.positive) for e in loaded.examples] == [(r[3], r[4]) for r in WEBFAQ_KOR_ROWS[:2]]
    reads = [(p, status) for _, p, status in hub.requests if "kor.parquet" in p]
    assert reads and all(status in (206, 302) for _, status in reads), reads  # Range requests only
    cached = Path(dcfg.HF_DATASETS_CACHE)
    assert not cached.exists() or not list(cached.rglob("*.arrow"))


def test_paper_training_reader_names_the_split_on_error(hub):
    from sembridge_jax.data.examples import DataError
    from sembridge_jax.data.sources import load_examples

    with pytest.raises(DataError, match=r"hf:PaDaS-Lab/webfaq/kor \[train\].*default"):
        load_examples(paper_train_spec(split="train"))
