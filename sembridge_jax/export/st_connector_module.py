"""A sembridge-jax connector model as one sentence-transformers module (PyTorch), written into the folder
that `sembridge_jax.export.connector_st.export_connector_st` makes; loaded with

    SparseEncoder(folder, trust_remote_code=True)

This file is standalone (torch, numpy, transformers, safetensors, sentence-transformers only): it is copied into
the export folder and imported from there. The computation, for texts tokenised with the BRIDGE tokenizer:

    bridge/ (transformers AutoModel, frozen multilingual encoder) -> last hidden states x [B, L, d_b]
      -> connector: LayerNorm -> Linear -> GELU -> Linear (kind "mlp"; "identity" feeds x as it is)
         (+ n_added learnable tokens right after each text's last real token, positions len .. len + n - 1)
      -> english/ (transformers *ForMaskedLM) fed inputs_embeds with those position ids, token type 0:
         + position/type embeddings, embedding LayerNorm, layers, MLM head -> logits [B, L + n, V_en]
      -> SPLADE pooling over the real + appended positions: max (or sum) of log1p(relu(logits))
      [-> LexEcho (echo on): |s| * pooled relu(u . x + c) over the positions with the same bridge token id:
          config "echo_pooling" "log_sum" = log1p of their sum, "max" (or no key) = the largest]

Output: [B, V_en] (English vocabulary, ids of english/'s tokenizer), or with the echo [B, V_en + V_bridge]
(then columns V_en + i are bridge token id i). A folder exported for English-index queries (config key
"english_queries" true) outputs [B, V_en]: the English block, + with "memory" true weight * the parallel
memory's vector (memory.npz, the connector folder's own file; sembridge_jax/models/memory.py): the English
model's vectors of the k parallel pairs whose target sides' centred mean-pooled bridge states are nearest
the text's, mixed by softmax(cosine / temperature). A folder exported for inference-free echo queries (config
key "echo_idf" true) replaces the echo block by the query weight ("echo_idf" in connector.safetensors) of
each bridge token of the text. `SparseEncoder.decode` names columns through the module's
`tokenizer.convert_ids_to_tokens`: here a copy of the bridge tokenizer whose convert_ids_to_tokens names
OUTPUT columns (English tokens, then "echo:" + bridge pieces); inputs are tokenised by `bridge_tokenizer`.
Weights: connector.safetensors (connector, added, echo);
the English parts and the bridge in their own Hugging Face folders.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import types

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

try:  # sentence-transformers >= 6
    from sentence_transformers.base.modules import InputModule
except ImportError:  # sentence-transformers 5
    from sentence_transformers.models import InputModule

CONFIG_FILE = "sembridge_connector.json"
WEIGHTS_FILE = "connector.safetensors"
BRIDGE_DIR = "bridge"
ENGLISH_DIR = "english"
ECHO_PREFIX = "echo:"
MEMORY_FILE = "memory.npz"  # sembridge_jax.models.memory.MEMORY_FILE


class ParallelMemory(torch.nn.Module):
    """The parallel memory of `path` (models/memory.py's file: keys [N, d] unit rows, center [d], the values
    [N, V_en] as CSR parts, settings = (k, temperature, weight)); `forward(pools)` = weight * m(pools)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path  # `save` copies the file as it is
        z = np.load(path)
        k, temperature, weight = z["settings"]
        self.k, self.temperature, self.weight = int(k), float(temperature), float(weight)
        for name in ("keys", "center", "indptr", "indices", "data", "shape"):
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(z[name])), persistent=False)

    def forward(self, pools):
        q = torch.nn.functional.normalize(pools - self.center, dim=-1, eps=1e-12)
        sim, top = (q @ self.keys.T).topk(min(self.k, self.keys.shape[0]), dim=-1)
        w = torch.softmax((sim - sim.amax(-1, keepdim=True)) / self.temperature, dim=-1)
        values = torch.sparse_csr_tensor(self.indptr, self.indices, self.data, tuple(self.shape.tolist()),
                                         check_invariants=False)
        rows = values.to_sparse_coo().index_select(0, top.flatten()).to_dense()
        return self.weight * (w.reshape(-1, 1) * rows).reshape(*top.shape, -1).sum(1)


class Connector(torch.nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int, eps: float):
        super().__init__()
        self.norm = torch.nn.LayerNorm(d_in, eps=eps)
        self.fc1 = torch.nn.Linear(d_in, d_hidden)
        self.fc2 = torch.nn.Linear(d_hidden, d_out)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x))))


def _column_names(module):
    """convert_ids_to_tokens over OUTPUT columns: English tokens, then ECHO_PREFIX + bridge pieces."""
    n_en = module.config["english_size"]

    def convert(self, ids, skip_special_tokens=False):
        one = isinstance(ids, int)
        names = [module.english_tokenizer.convert_ids_to_tokens(int(i)) if i < n_en
                 else ECHO_PREFIX + str(module.bridge_tokenizer.convert_ids_to_tokens(int(i) - n_en))
                 for i in ([ids] if one else ids)]
        return names[0] if one else names

    return convert


class ConnectorSparseModule(InputModule):
    """See the module docstring. `config`: the keys of CONFIG_FILE (written by the exporter)."""

    save_in_root = True

    def __init__(self, bridge, english, bridge_tokenizer, english_tokenizer, config: dict):
        super().__init__()
        self.config = dict(config)
        self.bridge, self.english = bridge, english
        self.bridge_tokenizer, self.english_tokenizer = bridge_tokenizer, english_tokenizer
        self.tokenizer = copy.copy(bridge_tokenizer)  # what SparseEncoder.tokenizer / .decode use
        self.tokenizer.convert_ids_to_tokens = types.MethodType(_column_names(self), self.tokenizer)
        c = self.config
        d = english.config.hidden_size
        self.connector = (None if c["kind"] == "identity"
                          else Connector(c["bridge_hidden"], c["connector_hidden"], d, c["layer_norm_eps"]))
        self.added = torch.nn.Parameter(torch.zeros(c["n_added"], d)) if c["n_added"] else None
        self.memory = None  # set by `load` when the config says "memory"
        if c["echo"]:
            self.echo = torch.nn.Linear(c["bridge_hidden"], 1)
            self.echo_scale = torch.nn.Parameter(torch.zeros(()))
        else:
            self.echo, self.echo_scale = None, None
        if c.get("echo_idf"):
            self.register_buffer("echo_idf", torch.zeros(c["bridge_vocab"]))

    # -------------------------------------------------------------------------------- sentence-transformers
    @property
    def max_seq_length(self) -> int:
        return self.config["max_seq_length"]

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.config["max_seq_length"] = int(value)

    def get_embedding_dimension(self) -> int:
        if self.config.get("english_queries"):
            return self.config["english_size"]
        return self.config["english_size"] + (self.config["bridge_vocab"] if self.config["echo"] else 0)

    get_sentence_embedding_dimension = get_embedding_dimension  # sentence-transformers 5

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict:
        texts = [prompt + t for t in inputs] if prompt else list(inputs)
        enc = self.bridge_tokenizer(texts, padding=True, truncation=True, max_length=self.max_seq_length,
                             return_tensors="pt")
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    def tokenize(self, texts, **kwargs) -> dict:  # sentence-transformers 5
        return self.preprocess(texts, **kwargs)

    def forward(self, features: dict, **kwargs) -> dict:
        ids, mask = features["input_ids"], features["attention_mask"]
        bridge_in = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in features:
            bridge_in["token_type_ids"] = features["token_type_ids"]
        with torch.no_grad():  # the bridge is frozen
            x = self.bridge(**bridge_in).last_hidden_state.float()
        h = x if self.connector is None else self.connector(x)
        b, length, _ = h.shape
        pos = torch.arange(length, device=h.device).expand(b, length)
        m = mask.long()
        if self.added is not None:
            n = self.added.shape[0]
            h = torch.cat([h, self.added[None].expand(b, n, -1)], 1)
            pos = torch.cat([pos, m.sum(-1, keepdim=True) + torch.arange(n, device=h.device)[None]], 1)
            m = torch.cat([m, torch.ones(b, n, dtype=m.dtype, device=m.device)], 1)
        logits = self.english(inputs_embeds=h, attention_mask=m, position_ids=pos,
                              token_type_ids=torch.zeros_like(m)).logits.float()
        w = torch.log1p(torch.relu(logits)) * m[..., None]
        vec = w.amax(1) if self.config["pooling"] == "max" else w.sum(1)
        if self.config.get("english_queries"):
            if self.memory is not None:
                real = mask[..., None].float()
                vec = vec + self.memory((x * real).sum(1) / real.sum(1).clamp(min=1.0))
        elif self.echo is not None:
            idf = self.config.get("echo_idf")
            e = (self.echo_idf[ids.long()] if idf else torch.relu(self.echo(x)[..., 0])) * mask
            # inference-free queries: each distinct token at its weight, whatever the model's pooling
            log_sum = not idf and self.config.get("echo_pooling", "max") == "log_sum"
            block = torch.zeros(b, self.config["bridge_vocab"], device=e.device, dtype=e.dtype)
            block = block.scatter_reduce(1, ids.long(), e, reduce="sum" if log_sum else "amax", include_self=True)
            block = torch.log1p(block) if log_sum else block
            vec = torch.cat([vec, block if idf else self.echo_scale.abs() * block], -1)
        features["sentence_embedding"] = vec
        return features

    # -------------------------------------------------------------------------------- files
    def _small_state(self) -> dict:
        return {k: v.contiguous() for k, v in self.state_dict().items()
                if not k.startswith(("bridge.", "english."))}

    def save(self, output_path: str, *args, **kwargs) -> None:
        self.bridge.save_pretrained(os.path.join(output_path, BRIDGE_DIR))
        self.bridge_tokenizer.save_pretrained(os.path.join(output_path, BRIDGE_DIR))
        self.english.save_pretrained(os.path.join(output_path, ENGLISH_DIR))
        self.english_tokenizer.save_pretrained(os.path.join(output_path, ENGLISH_DIR))
        save_file(self._small_state(), os.path.join(output_path, WEIGHTS_FILE))
        target = os.path.join(output_path, MEMORY_FILE)
        if self.memory is not None and os.path.abspath(self.memory.path) != os.path.abspath(target):
            shutil.copy(self.memory.path, target)
        with open(os.path.join(output_path, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=2)
        if os.path.abspath(os.path.dirname(__file__)) != os.path.abspath(output_path):
            shutil.copy(__file__, os.path.join(output_path, os.path.basename(__file__)))

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token=None, cache_folder=None, revision=None,
             local_files_only: bool = False, **kwargs):
        folder = cls.load_dir_path(model_name_or_path, subfolder=subfolder, token=token, cache_folder=cache_folder,
                                   revision=revision, local_files_only=local_files_only)
        with open(os.path.join(folder, CONFIG_FILE), encoding="utf-8") as f:
            config = json.load(f)
        # float32 whatever the stored dtype (an fp16 bridge folder), as sembridge-jax computes
        bridge = AutoModel.from_pretrained(os.path.join(folder, BRIDGE_DIR), add_pooling_layer=False,
                                           dtype=torch.float32).eval()
        english = AutoModelForMaskedLM.from_pretrained(os.path.join(folder, ENGLISH_DIR), dtype=torch.float32).eval()
        module = cls(bridge, english, AutoTokenizer.from_pretrained(os.path.join(folder, BRIDGE_DIR)),
                     AutoTokenizer.from_pretrained(os.path.join(folder, ENGLISH_DIR)), config)
        weights_file = os.path.join(folder, WEIGHTS_FILE)
        missing, unexpected = module.load_state_dict(load_file(weights_file), strict=False)
        missing = [k for k in missing if not k.startswith(("bridge.", "english."))]
        if config.get("memory"):
            memory_file = os.path.join(folder, MEMORY_FILE)
            if not os.path.isfile(memory_file):
                raise FileNotFoundError(f"{memory_file}: missing ({CONFIG_FILE} says the folder has a parallel memory)")
            module.memory = ParallelMemory(memory_file)
        if missing or unexpected:
            raise ValueError(f"{weights_file}: does not match {CONFIG_FILE}: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        return module.eval()
