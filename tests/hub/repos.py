"""Tiny repositories with the real file layouts of the hub repos the product downloads.

Everything is generated (deterministically: fixed seeds, gzip mtime 0) at fixture time; weights are
random and tiny (2 layers, hidden 32), vocabularies are a few hundred entries, data sets a few Korean rows.
File names, folder layout, config keys, column names and row formats follow the real repos.

Where the layouts come from (looked up while writing this; "-" = what it told us):

naver/splade-v3 (model)
  - https://huggingface.co/nirantk/splade-v3-lexical/tree/main, a 10-file upload of the splade-v3 family:
    README.md, config.json (BertForMaskedLM), data_args.json, model_args.json, pytorch_model.bin,
    special_tokens_map.json (125 bytes), tokenizer.json, tokenizer_config.json, training_args.json, vocab.txt
  - the card, via a mirror: beta-index.hf-mirror.com/naver/splade-v3/blob/refs%2Fpr%2F1/README.md
    (license cc-by-nc-sa-4.0, language en, tags splade)
  - sentence-transformers lists naver/splade-v3 among its SparseEncoder models (docs/sparse_encoder/
    pretrained_models.md, via deepwiki.com/UKPLab/sentence-transformers/5.2-sparseencoder-models); the
    sentence-transformers files of such repos (e.g. https://huggingface.co/naver/splade_v2_max/blob/main/modules.json,
    sparse-encoder/example-splade-* commits): modules.json (MLMTransformer at "", SpladePooling at
    1_SpladePooling), 1_SpladePooling/config.json {pooling_strategy, activation_function,
    word_embedding_dimension}, sentence_bert_config.json, config_sentence_transformers.json, model.safetensors
  - not verified: the exact contents of data_args/model_args/training_args.json (served as small stand-ins)
monologg/kobigbird-bert-base (target tokenizer, ko)
  - https://huggingface.co/monologg/kobigbird-bert-base/commit/fd0295b3e4b5b3879d1a0d1445f33d5f04e422a4:
    config.json (BigBirdForPreTraining, model_type big_bird, tokenizer_class BertTokenizer, vocab 32500,
    bos 5 / eos 6 / sep 3 / pad 0), pytorch_model.bin, special_tokens_map.json, tokenizer.json,
    tokenizer_config.json, vocab.txt; the card shows Safetensors too (model.safetensors)
  - https://huggingface.co/monologg/kobigbird-bert-base/blob/fd0295b.../tokenizer_config.json (copied key
    for key: do_lower_case false, bos <s>, eos </s>, model_max_length 4096, tokenizer_class BertTokenizer)
BAAI/bge-m3 (bridge)
  - 1_Pooling/config.json with pooling_mode_cls_token true, word_embedding_dimension 1024 (8 keys): copies
    of the bge-m3 file in https://huggingface.co/dragonkue/BGE-m3-ko/blob/badbaf6.../1_Pooling/config.json
    and https://huggingface.co/hamtaai/bg3_model/blob/main/1_Pooling/config.json
  - not verified on bge-m3 itself: modules.json = Transformer / Pooling (1_Pooling) / Normalize (2_Normalize)
    (the usual layout of normalised sentence-transformers models, e.g. intfloat/e5-base-v2's commit a3a4bc1),
    config_sentence_transformers.json's versions, and whether model.safetensors sits beside pytorch_model.bin
  - XLM-R tokenizer files sentencepiece.bpe.model, tokenizer.json, tokenizer_config.json,
    special_tokens_map.json and the M3 heads colbert_linear.pt / sparse_linear.pt: the bge-m3 derivatives
    https://huggingface.co/PhilipGAQ/BGE_M3_Mindspore/tree/6d5f120... and
    https://huggingface.co/aapot/bge-m3-onnx/blob/main/bgem3_model.py (snapshot_download of model.safetensors,
    colbert_linear.pt, sparse_linear.pt, config.json from BAAI/bge-m3)
  - not served: the repo's onnx/ folder and images (not used by the product)
PaDaS-Lab/webfaq (training data)
  - config names are ISO 639-3 codes and the only split is "default": load_dataset("PaDaS-Lab/webfaq",
    "kor") (a download script reading webfaq_kor), load_dataset("PaDaS-Lab/webfaq", "dan", split="default"),
    ("deu", split="default", streaming=True), name="slk", split="default"; lighteval task
    hf_subset="slk", evaluation_splits=("default",) (public GitHub code found with the search tools)
  - columns id, origin, url, question, answer (+ semantic_similarity_score, topic, question_type): the
    authors' uploader github.com/padas-lab-de/webfaq src/webfaq/cli/huggingface/upload_base.py and
    prepare_base.py (README: config_name <lang>, data_files split default path data/<lang>.parquet)
  - not verified: that v1 (PaDaS-Lab/webfaq) stores data/<lang>.parquet like the uploader above (written
    for v2, same authors); only the config/split/column names matter to load_dataset
miracl/miracl and miracl/miracl-corpus (evaluation)
  - gated: the card's example passes use_auth_token=True and SEACrowd's loader says "please accept the
    acknowledgement at https://huggingface.co/datasets/miracl/miracl and use huggingface-cli login";
    served gated here (files need the test token; listings stay public)
  - script datasets (miracl.py / miracl-corpus.py); the files they read: SEACrowd's adaptation of the MIRACL
    loader (its _URLS: topics-and-qrels per split, test-a/test-b topics only; found by content search) and
    several public loaders reading them through hf_hub_download / list_repo_files:
    miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{train,dev,test-a,test-b}.tsv   qid<TAB>query
    miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{train,dev}.tsv                    qid<TAB>Q0<TAB>docid<TAB>rel
    miracl-corpus-v1.0-{lang}/docs-{i}.jsonl.gz   {"docid": "<page>#<passage>", "title", "text"}; ko has 3 shards
    (languages2filesize in public copies of miracl-corpus.py)
castorini/mr-tydi and castorini/mr-tydi-corpus (optional evaluation)
  - script datasets too (mr-tydi.py, _DATASET_URLS ... mrtydi-v1.1-{lang}/{train,dev,test}.jsonl.gz); rows
    {query_id, query, positive_passages, negative_passages}; corpus mrtydi-v1.1-{lang}/corpus.jsonl.gz
    {docid, title, text}; language names are English words ("korean") (autorag-research's MrTyDi
    ingestor; gnosis infra/eval/mrtydi-to-vault.py)
"""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from .server import HubRepo

# -- Korean rows served by the data repos --------------------------------------------------------------------
MIRACL_KO_DOCS = [  # (shard, docid, title, text)
    (0, "105#0", "서울특별시", "서울특별시는 대한민국의 수도이자 최대 도시이다."),
    (0, "105#1", "서울특별시", "서울은 한강을 사이에 두고 강북과 강남으로 나뉜다."),
    (0, "2201#0", "김치", "김치는 배추와 무를 소금에 절여 양념한 한국의 발효 음식이다."),
    (0, "977#3", "부산광역시", "부산은 대한민국 제2의 도시이며 항구 도시이다."),
    (1, "3310#0", "세종", "세종은 조선의 제4대 임금이다."),
    (1, "3310#2", "세종", "세종대왕은 훈민정음을 창제하였다."),
    (1, "4415#0", "한강", "한강은 서울을 지나 서해로 흐르는 강이다."),
    (2, "5120#0", "제주도", "제주도는 대한민국에서 가장 큰 섬이다."),
    (2, "6001#1", "태권도", "태권도는 한국의 전통 무술이다."),
]
MIRACL_KO_TOPICS = {
    "dev": [("0", "대한민국의 수도는 어디인가?"), ("1", "김치는 어떤 음식인가?"),
            ("2", "훈민정음을 만든 사람은 누구인가?"), ("3", "한강은 어디로 흐르나?"),
            ("4", "태권도의 띠는 몇 가지인가?")],  # judged, but nothing relevant (grade 0 only)
    "train": [("100", "부산은 어떤 도시인가?"), ("101", "세종은 누구인가?")],
    "test-a": [("500", "제주도는 어디에 있나?")],
    "test-b": [("900", "태권도는 무엇인가?")],
}
MIRACL_KO_QRELS = {
    "dev": [("0", "105#0", 1), ("0", "105#1", 0), ("1", "2201#0", 1), ("2", "3310#2", 1), ("2", "3310#0", 0),
            ("3", "4415#0", 1), ("4", "6001#1", 0)],
    "train": [("100", "977#3", 1), ("101", "3310#0", 1), ("101", "105#1", 0)],
}
MIRACL_SW_DOCS = [(0, "12#0", "Nairobi", "Nairobi ni mji mkuu wa Kenya.")]
MIRACL_SW_TOPICS = {"dev": [("7", "Mji mkuu wa Kenya ni upi?")], "test-b": [("8", "Mombasa iko wapi?")]}
MIRACL_SW_QRELS = {"dev": [("7", "12#0", 1)]}

MRTYDI_KO_DOCS = [("1205#0", "서울특별시", "서울특별시는 대한민국의 수도이다."),
                  ("8809#1", "김치", "김치는 한국의 발효 음식이다."),
                  ("4415#0", "한강", "한강은 서해로 흐른다.")]
MRTYDI_KO_QUERIES = {
    "dev": [("41", "대한민국의 수도는?", ["1205#0"]), ("42", "김치는 무엇인가?", ["8809#1"])],
    "test": [("77", "한강은 어디로 흐르나?", ["4415#0"])],
    "train": [("3", "서울은 어떤 도시인가?", ["1205#0"])],
}

WEBFAQ_KOR_ROWS = [  # id, origin, url, question, answer, semantic_similarity_score, topic, question_type
    ("b2c0f4a1d9e8c7b6a5f4e3d2c1b0a9f8", "https://www.example.kr", "https://www.example.kr/faq",
     "배송은 얼마나 걸리나요?", "주문 후 보통 2~3일 안에 배송됩니다.", 0.83, "Products and Commercial Services",
     "Factoid"),
    ("c3d1e5b2a0f9d8c7b6a5e4f3d2c1b0a9", "https://www.example.kr", "https://www.example.kr/faq",
     "환불은 어떻게 하나요?", "마이페이지에서 환불 신청을 하시면 됩니다.", 0.79, "Products and Commercial Services",
     "Instruction"),
    ("d4e2f6c3b1a0e9d8c7b6a5f4e3d2c1b0", "https://clinic.example.kr", "https://clinic.example.kr/qna",
     "진료 시간은 언제인가요?", "평일 오전 9시부터 오후 6시까지 진료합니다.", 0.88, "Health", "Factoid"),
]
WEBFAQ_ENG_ROWS = [
    ("e5f3a7d4c2b1f0e9d8c7b6a5f4e3d2c1", "https://shop.example.com", "https://shop.example.com/faq",
     "How long does shipping take?", "Orders usually arrive within 2-3 days.", 0.85,
     "Products and Commercial Services", "Factoid"),
]

ENGLISH_WORDS = ["the", "what", "causes", "northern", "lights", "is", "a", "of", "and", "to", "in", "city",
                 "capital", "river", "food", "##s", "##ing", "##ed"]


def _jsonl_gz(rows) -> bytes:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return gzip.compress(text.encode("utf-8"), mtime=0)


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _card(meta: str, body: str) -> bytes:
    return f"---\n{meta.strip()}\n---\n\n{body.strip()}\n".encode()


def korean_text() -> str:
    """Every Korean string served, so the tiny vocabularies cover them."""
    parts = [t for *_, t in MIRACL_KO_DOCS] + [d[2] for d in MIRACL_KO_DOCS]
    parts += [q for qs in MIRACL_KO_TOPICS.values() for _, q in qs]
    parts += [r[3] + r[4] for r in WEBFAQ_KOR_ROWS]
    parts += [q for qs in MRTYDI_KO_QUERIES.values() for _, q, _ in qs] + [d[2] for d in MRTYDI_KO_DOCS]
    return " ".join(parts)


def hangul_chars() -> list[str]:
    return sorted({c for c in korean_text() if "\uac00" <= c <= "\ud7a3"})


# -- models ------------------------------------------------------------------------------------------------
def _weights(model, workdir: Path) -> dict[str, bytes]:
    """model.safetensors as save_pretrained writes it and a pytorch_model.bin of the full state dict."""
    import torch

    out = workdir / "weights"
    model.save_pretrained(str(out))
    buf = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buf)
    return {"model.safetensors": (out / "model.safetensors").read_bytes(), "pytorch_model.bin": buf.getvalue()}


def _randomize(model, seed: int) -> None:
    """Weights with spread (std 0.2, LayerNorm around 1) so logits are O(1)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def _wordpiece_tokenizer_json(vocab: list[str], lower: bool) -> bytes:
    import transformers as tf

    tok = tf.BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=lower)
    return tok.backend_tokenizer.to_str(pretty=True).encode("utf-8")


def splade_v3(workdir: Path) -> HubRepo:
    """naver/splade-v3: BertForMaskedLM (uncased WordPiece) + its sentence-transformers SparseEncoder files."""
    import torch
    import transformers as tf

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + letters + ["##" + c for c in letters] + ENGLISH_WORDS
             + list(".,?!-") + hangul_chars())
    cfg = {
        "_name_or_path": "naver/splade-cocondenser-selfdistil", "architectures": ["BertForMaskedLM"],
        "attention_probs_dropout_prob": 0.1, "classifier_dropout": None, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 4,
        "num_hidden_layers": 2, "pad_token_id": 0, "position_embedding_type": "absolute", "torch_dtype": "float32",
        "transformers_version": "4.38.2", "type_vocab_size": 2, "use_cache": True, "vocab_size": len(vocab),
    }
    torch.manual_seed(0)
    model = tf.BertForMaskedLM(tf.BertConfig(**{k: v for k, v in cfg.items() if k != "torch_dtype"})).eval()
    _randomize(model, 0)
    special = {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]",
               "unk_token": "[UNK]"}
    files = {
        "README.md": _card("license: cc-by-nc-sa-4.0\nlanguage:\n- en\ntags:\n- splade\n- sentence-transformers\n"
                           "- sparse-encoder\npipeline_tag: feature-extraction\nlibrary_name: sentence-transformers",
                           "## SPLADE-v3\n\nTiny random stand-in with the file layout of naver/splade-v3."),
        "config.json": _json(cfg),
        **_weights(model, workdir / "splade-v3"),
        "vocab.txt": ("\n".join(vocab) + "\n").encode(),
        "tokenizer.json": _wordpiece_tokenizer_json(vocab, lower=True),
        "tokenizer_config.json": _json({
            "cls_token": "[CLS]", "do_basic_tokenize": True, "do_lower_case": True, "mask_token": "[MASK]",
            "model_max_length": 512, "never_split": None, "pad_token": "[PAD]", "sep_token": "[SEP]",
            "strip_accents": None, "tokenize_chinese_chars": True, "tokenizer_class": "BertTokenizer",
            "unk_token": "[UNK]"}),
        "special_tokens_map.json": json.dumps(special).encode(),
        "data_args.json": _json({"training_data_type": "triplets", "n_negatives": 8}),
        "model_args.json": _json({"model_name_or_path": "naver/splade-cocondenser-selfdistil", "max_length": 256}),
        "training_args.json": _json({"learning_rate": 2e-05, "per_device_train_batch_size": 8, "seed": 42}),
        "modules.json": _json([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.sparse_encoder.models.MLMTransformer"},
            {"idx": 1, "name": "1", "path": "1_SpladePooling",
             "type": "sentence_transformers.sparse_encoder.models.SpladePooling"}]),
        "1_SpladePooling/config.json": _json({"pooling_strategy": "max", "activation_function": "relu",
                                              "word_embedding_dimension": len(vocab)}),
        "sentence_bert_config.json": _json({"max_seq_length": 512, "do_lower_case": False}),
        "config_sentence_transformers.json": _json({
            "model_type": "SparseEncoder", "__version__": {"sentence_transformers": "5.0.0", "transformers": "4.50.3",
                                                           "pytorch": "2.6.0+cu124"},
            "prompts": {"query": "", "document": ""}, "default_prompt_name": None, "similarity_fn_name": "dot"}),
    }
    return HubRepo("naver/splade-v3", files, tags=["transformers", "pytorch", "bert", "fill-mask", "splade",
                                                    "sentence-transformers", "sparse-encoder"])


def kobigbird_vocab() -> list[str]:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
    words = ["대한민국", "서울", "수도", "김치", "음식", "한강", "세종", "도시", "##의", "##는", "##은", "##이다",
             "##인가", "##요"]
    chars = hangul_chars()
    return list(dict.fromkeys(special + words + list(".,?!~0123456789") + chars + ["##" + c for c in chars]))


def kobigbird(workdir: Path) -> HubRepo:
    """monologg/kobigbird-bert-base: BigBird with a cased Korean WordPiece vocab; tokenizer_class BertTokenizer."""
    import torch
    import transformers as tf

    vocab = kobigbird_vocab()
    cfg = {
        "architectures": ["BigBirdForPreTraining"], "attention_probs_dropout_prob": 0.1,
        "attention_type": "block_sparse", "block_size": 64, "bos_token_id": 5, "classifier_dropout": None,
        "eos_token_id": 6, "gradient_checkpointing": False, "hidden_act": "gelu_new", "hidden_dropout_prob": 0.1,
        "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-12,
        "max_position_embeddings": 4096, "model_type": "big_bird", "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_random_blocks": 3, "pad_token_id": 0, "position_embedding_type": "absolute",
        "rescale_embeddings": False, "sep_token_id": 3, "tokenizer_class": "BertTokenizer",
        "torch_dtype": "float32", "transformers_version": "4.11.3", "type_vocab_size": 2, "use_bias": True,
        "use_cache": True, "vocab_size": len(vocab),
    }
    torch.manual_seed(1)
    hf_cfg = tf.BigBirdConfig(**{k: v for k, v in cfg.items() if k not in ("torch_dtype", "architectures")})
    model = tf.BigBirdForPreTraining(hf_cfg).eval()
    files = {
        "README.md": _card("language: ko\ntags:\n- korean\nmask_token: \"[MASK]\"\nwidget:\n- text: 대한민국의 수도는 [MASK] 입니다.",
                           "# KoBigBird\n\nTiny random stand-in with the file layout of monologg/kobigbird-bert-base."),
        "config.json": _json(cfg),
        **_weights(model, workdir / "kobigbird"),
        "vocab.txt": ("\n".join(vocab) + "\n").encode(),
        "tokenizer.json": _wordpiece_tokenizer_json(vocab, lower=False),
        "tokenizer_config.json": _json({
            "do_lower_case": False, "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
            "cls_token": "[CLS]", "mask_token": "[MASK]", "tokenize_chinese_chars": True, "strip_accents": None,
            "do_basic_tokenize": True, "never_split": None, "bos_token": "<s>", "eos_token": "</s>",
            "model_max_length": 4096, "tokenizer_class": "BertTokenizer"}),
        "special_tokens_map.json": _json({"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                                          "cls_token": "[CLS]", "mask_token": "[MASK]", "bos_token": "<s>",
                                          "eos_token": "</s>"}),
    }
    return HubRepo("monologg/kobigbird-bert-base", files,
                   tags=["transformers", "pytorch", "safetensors", "big_bird", "fill-mask", "korean", "ko"])


def xlmr_pieces() -> list[tuple[str, float]]:
    """Unigram pieces (after the 4 specials, before <mask>) covering the served Korean and some English."""
    words = ["▁" + w for w in ("대한민국의", "수도는", "서울", "김치는", "한국의", "음식", "the", "what", "is", "city")]
    chars = hangul_chars() + [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(".,?!~-0123456789")
    pieces = [(w, -2.0 - 0.01 * i) for i, w in enumerate(words)] + [("▁", -3.0)]
    pieces += [("▁" + c, -5.0 - 0.001 * i) for i, c in enumerate(chars)]
    pieces += [(c, -6.0 - 0.001 * i) for i, c in enumerate(chars)]
    return pieces


def _sentencepiece_model(pieces: list[tuple[str, float]]) -> bytes:
    """A sentencepiece ModelProto (unigram) with the spm id order <unk>, <s>, </s>, pieces...; the XLM-R
    tokenizers shift it by fairseq's offset (<s>=0 <pad>=1 </s>=2 <unk>=3)."""
    from transformers.utils import sentencepiece_model_pb2_new as spm_pb2

    m = spm_pb2.ModelProto()
    for piece, score, kind in [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)] + [(p, s, 1) for p, s in pieces]:
        sp = m.pieces.add()
        sp.piece, sp.score, sp.type = piece, score, kind
    m.trainer_spec.model_type = 1  # UNIGRAM
    m.trainer_spec.vocab_size = len(pieces) + 3
    m.normalizer_spec.name = "nmt_nfkc"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.remove_extra_whitespaces = True
    return m.SerializeToString()


def bge_m3(workdir: Path) -> HubRepo:
    """BAAI/bge-m3: XLMRobertaModel + sentence-transformers CLS pooling + Normalize, with the M3 heads."""
    import torch
    import transformers as tf

    pieces = xlmr_pieces()
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + pieces + [("<mask>", 0.0)]
    cfg = {
        "_name_or_path": "", "architectures": ["XLMRobertaModel"], "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0, "classifier_dropout": None, "eos_token_id": 2, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
        "layer_norm_eps": 1e-05, "max_position_embeddings": 8194, "model_type": "xlm-roberta",
        "num_attention_heads": 4, "num_hidden_layers": 2, "output_past": True, "pad_token_id": 1,
        "position_embedding_type": "absolute", "torch_dtype": "float32", "transformers_version": "4.33.0",
        "type_vocab_size": 1, "use_cache": True, "vocab_size": len(vocab),
    }
    torch.manual_seed(2)
    model = tf.XLMRobertaModel(tf.XLMRobertaConfig(**{k: v for k, v in cfg.items() if k != "torch_dtype"}),
                               add_pooling_layer=False).eval()
    _randomize(model, 2)
    tok = tf.XLMRobertaTokenizer(vocab=vocab)
    heads = {}
    for name, out_dim in (("colbert_linear.pt", 32), ("sparse_linear.pt", 1)):
        buf = io.BytesIO()
        torch.save(torch.nn.Linear(32, out_dim).state_dict(), buf)
        heads[name] = buf.getvalue()
    special = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>",
               "pad_token": "<pad>", "sep_token": "</s>", "unk_token": "<unk>"}
    added = {str(i): {"content": t, "lstrip": t == "<mask>", "normalized": False, "rstrip": False,
                      "single_word": False, "special": True}
             for i, t in [(0, "<s>"), (1, "<pad>"), (2, "</s>"), (3, "<unk>"), (len(vocab) - 1, "<mask>")]}
    files = {
        "README.md": _card("pipeline_tag: sentence-similarity\ntags:\n- sentence-transformers\n- feature-extraction\n"
                           "- sentence-similarity\nlicense: mit",
                           "# BGE-M3\n\nTiny random stand-in with the file layout of BAAI/bge-m3."),
        "config.json": _json(cfg),
        **_weights(model, workdir / "bge-m3"),
        **heads,
        "sentencepiece.bpe.model": _sentencepiece_model(pieces),
        "tokenizer.json": tok.backend_tokenizer.to_str(pretty=True).encode("utf-8"),
        "tokenizer_config.json": _json({
            "added_tokens_decoder": added, "bos_token": "<s>", "clean_up_tokenization_spaces": True,
            "cls_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>", "model_max_length": 8192,
            "pad_token": "<pad>", "sep_token": "</s>", "sp_model_kwargs": {}, "tokenizer_class": "XLMRobertaTokenizer",
            "unk_token": "<unk>"}),
        "special_tokens_map.json": _json(special),
        "modules.json": _json([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]),
        "1_Pooling/config.json": _json({"word_embedding_dimension": 32, "pooling_mode_cls_token": True,
                                        "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
                                        "pooling_mode_mean_sqrt_len_tokens": False,
                                        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False,
                                        "include_prompt": True}),
        "config_sentence_transformers.json": _json({"__version__": {"sentence_transformers": "2.2.2",
                                                                    "transformers": "4.33.0",
                                                                    "pytorch": "2.1.2+cu121"}}),
        "sentence_bert_config.json": _json({"max_seq_length": 8192, "do_lower_case": False}),
    }
    return HubRepo("BAAI/bge-m3", files, tags=["sentence-transformers", "pytorch", "onnx", "xlm-roberta",
                                                "feature-extraction", "sentence-similarity"])


# -- data sets ---------------------------------------------------------------------------------------------
def _script(name: str) -> bytes:
    return (f'"""{name}: the loading script of the real repo (datasets >= 4 refuses to run it); a stub '
            'here."""\nimport datasets\n').encode()


def miracl() -> HubRepo:
    files = {"README.md": _card("language:\n- ko\n- sw\nlicense: apache-2.0\ntask_categories:\n- text-retrieval",
                                "# MIRACL\n\nTiny stand-in with the file layout of miracl/miracl."),
             "miracl.py": _script("miracl.py")}
    for lang, topics, qrels in (("ko", MIRACL_KO_TOPICS, MIRACL_KO_QRELS), ("sw", MIRACL_SW_TOPICS, MIRACL_SW_QRELS)):
        root = f"miracl-v1.0-{lang}"
        for split, rows in topics.items():
            files[f"{root}/topics/topics.miracl-v1.0-{lang}-{split}.tsv"] = "".join(
                f"{q}\t{t}\n" for q, t in rows).encode()
        for split, rows in qrels.items():
            files[f"{root}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv"] = "".join(
                f"{q}\tQ0\t{d}\t{r}\n" for q, d, r in rows).encode()
    return HubRepo("miracl/miracl", files, repo_type="dataset", gated=True)


def miracl_corpus() -> HubRepo:
    files = {"README.md": _card("language:\n- ko\n- sw\nlicense: apache-2.0",
                                "# MIRACL Corpus\n\nTiny stand-in with the file layout of miracl/miracl-corpus."),
             "miracl-corpus.py": _script("miracl-corpus.py")}
    for lang, docs, n_shards in (("ko", MIRACL_KO_DOCS, 3), ("sw", MIRACL_SW_DOCS, 1)):
        for shard in range(n_shards):
            files[f"miracl-corpus-v1.0-{lang}/docs-{shard}.jsonl.gz"] = _jsonl_gz(
                {"docid": d, "title": t, "text": x} for s, d, t, x in docs if s == shard)
    return HubRepo("miracl/miracl-corpus", files, repo_type="dataset", gated=True)


def mrtydi() -> HubRepo:
    docs = {d: {"docid": d, "title": t, "text": x} for d, t, x in MRTYDI_KO_DOCS}
    files = {"README.md": _card("language:\n- ko\nlicense: apache-2.0", "# Mr. TyDi\n\nTiny stand-in."),
             "mr-tydi.py": _script("mr-tydi.py")}
    for split, rows in MRTYDI_KO_QUERIES.items():
        files[f"mrtydi-v1.1-korean/{split}.jsonl.gz"] = _jsonl_gz(
            {"query_id": q, "query": text, "positive_passages": [docs[d] for d in pos],
             "negative_passages": []} for q, text, pos in rows)
    return HubRepo("castorini/mr-tydi", files, repo_type="dataset")


def mrtydi_corpus() -> HubRepo:
    files = {"README.md": _card("language:\n- ko\nlicense: apache-2.0", "# Mr. TyDi corpus\n\nTiny stand-in."),
             "mr-tydi-corpus.py": _script("mr-tydi-corpus.py"),
             "mrtydi-v1.1-korean/corpus.jsonl.gz": _jsonl_gz(
                 {"docid": d, "title": t, "text": x} for d, t, x in MRTYDI_KO_DOCS)}
    return HubRepo("castorini/mr-tydi-corpus", files, repo_type="dataset")


WEBFAQ_COLUMNS = ["id", "origin", "url", "question", "answer", "semantic_similarity_score", "topic",
                  "question_type"]


def _parquet(rows) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(zip(*rows, strict=True))
    table = pa.table({name: pa.array(list(col), pa.float64() if name == "semantic_similarity_score" else pa.string())
                      for name, col in zip(WEBFAQ_COLUMNS, cols, strict=True)})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def webfaq() -> HubRepo:
    """PaDaS-Lab/webfaq: one config per ISO 639-3 language, split "default", data/<lang>.parquet."""
    data = {"eng": _parquet(WEBFAQ_ENG_ROWS), "kor": _parquet(WEBFAQ_KOR_ROWS)}
    counts = {"eng": len(WEBFAQ_ENG_ROWS), "kor": len(WEBFAQ_KOR_ROWS)}
    features = "".join(f"      - name: {c}\n        dtype: {'float' if c == 'semantic_similarity_score' else 'string'}\n"
                       for c in WEBFAQ_COLUMNS)
    info = "".join(f"  - config_name: {lang}\n    features:\n{features}    splits:\n      - name: default\n"
                   f"        num_bytes: {len(data[lang])}\n        num_examples: {counts[lang]}\n" for lang in data)
    configs = "".join(f"  - config_name: {lang}\n    data_files:\n      - split: default\n"
                      f"        path: data/{lang}.parquet\n" for lang in data)
    meta = ("language:\n- eng\n- kor\nmultilinguality:\n- multilingual\ntask_categories:\n- text-retrieval\n"
            "task_ids:\n- document-retrieval\nconfig_names:\n- corpus\ntags:\n- text-retrieval\n"
            f"dataset_info:\n{info}configs:\n{configs}")
    files = {"README.md": _card(meta, "# WebFAQ\n\nTiny stand-in with the layout of PaDaS-Lab/webfaq."),
             **{f"data/{lang}.parquet": b for lang, b in data.items()}}
    return HubRepo("PaDaS-Lab/webfaq", files, repo_type="dataset")


def all_repos(workdir: Path) -> list[HubRepo]:
    """Every repo the headline command downloads, built under `workdir`."""
    workdir = Path(workdir)
    return [splade_v3(workdir), kobigbird(workdir), bge_m3(workdir), miracl(), miracl_corpus(), mrtydi(),
            mrtydi_corpus(), webfaq()]
