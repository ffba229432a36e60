"""Tiny random Hugging Face masked-LM folders (BERT, DistilBERT, RoBERTa, XLM-R) for the model/hf/api tests.

Weights are redrawn with a larger spread than BERT's init (std 0.2, LayerNorm scales around 1) so
that logits are O(1) and a layout mistake cannot hide under tiny values.
"""
from __future__ import annotations

from pathlib import Path

import torch
import transformers as tf

VOCAB = 1000
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
WORDS = ["the", "what", "causes", "northern", "lights", "cat", "sat", "on", "mat", "hello", "world", "##s", "##ing"]


def tiny_config(model_type: str, tie: bool = True):
    common = dict(vocab_size=VOCAB, max_position_embeddings=64, tie_word_embeddings=tie)
    bert_like = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **common)
    if model_type == "bert":
        return tf.BertConfig(type_vocab_size=2, hidden_act="gelu", **bert_like)
    if model_type == "distilbert":
        return tf.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, activation="gelu", **common)
    if model_type == "roberta":
        # gelu_new in the backbone checks that the lm_head still uses exact gelu.
        return tf.RobertaConfig(type_vocab_size=2, pad_token_id=1, hidden_act="gelu_new",
                                **{**bert_like, "max_position_embeddings": 66})
    if model_type == "xlm-roberta":
        return tf.XLMRobertaConfig(type_vocab_size=1, pad_token_id=1, **{**bert_like, "max_position_embeddings": 66})
    raise ValueError(model_type)


def tiny_tokenizer(folder: Path, pad_id: int):
    """A lower-casing WordPiece tokenizer whose [PAD] has id `pad_id` (0 for BERT, 1 for RoBERTa)."""
    special = ["[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    special.insert(pad_id, "[PAD]")
    vocab = special + LETTERS + ["##" + c for c in LETTERS] + WORDS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = tf.BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)
    tok.model_max_length = 48
    return tok


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name or "layer_norm.weight" in name or "norm.weight" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def make_hf_folder(folder: Path, model_type: str = "bert", tie: bool = True, seed: int = 0, headless: bool = False):
    """Save a randomised tiny *ForMaskedLM (or base model) + tokenizer to `folder`; returns the torch model."""
    cfg = tiny_config(model_type, tie)
    cls = tf.AutoModel if headless else tf.AutoModelForMaskedLM
    torch.manual_seed(seed)
    model = cls.from_config(cfg).eval()
    randomize_(model, seed)
    model.save_pretrained(str(folder))
    tiny_tokenizer(folder, cfg.pad_token_id).save_pretrained(str(folder))
    return model
