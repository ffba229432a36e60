"""Resolve a local folder or a Hugging Face hub id to a local folder."""
from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import snapshot_download

# What a model folder needs: weights, config, tokenizer and the sentence-transformers module files.
# Repos often carry the same weights twice (naver/splade-v3, BAAI/bge-m3: model.safetensors and
# pytorch_model.bin); the .bin is fetched only when there are no safetensors (BIN_PATTERNS).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "1_SpladePooling/*"]
BIN_PATTERNS = ["pytorch_model.bin"]


def hub_snapshot(repo_id: str) -> Path:
    """The local snapshot of a hub model repo holding only what a model folder needs (HUB_PATTERNS; the
    .bin weights only when the repo has no safetensors)."""
    path = Path(snapshot_download(repo_id=repo_id, allow_patterns=HUB_PATTERNS))
    if not any(path.rglob("*.safetensors")):
        path = Path(snapshot_download(repo_id=repo_id, allow_patterns=BIN_PATTERNS))
    return path


def resolve_model_dir(path_or_id: str | Path) -> Path:
    """A local folder holding the model: `path_or_id` itself if it is a folder, else a hub snapshot.

    A hub id is fetched with huggingface_hub.snapshot_download (which honours HF_HUB_OFFLINE and the
    local cache). A folder written by sentence-transformers whose transformer sits in a sub-folder
    (modules.json) resolves to that sub-folder.
    """
    path = Path(path_or_id).expanduser()
    if not path.is_dir():
        text = str(path_or_id)
        if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1:
            raise FileNotFoundError(f"model folder {text!r} does not exist (nor is it a hub id 'owner/name')")
        path = hub_snapshot(text)
    if not (path / "config.json").is_file() and (path / "modules.json").is_file():
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        sub = path / modules[0].get("path", "")
        if (sub / "config.json").is_file():
            return sub
    return path
