"""Resolve a local folder or a Hugging Face hub id to a local folder."""
from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import snapshot_download, try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id

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


def local_folder(path_or_id: str | Path) -> Path | None:
    """The local folder `path_or_id` names, None for a hub id ('owner/name' or 'name'); anything else (a
    missing path, a file, an invalid repo id) is a FileNotFoundError naming it."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    text = str(path_or_id)
    if not (path.exists() or text.startswith((".", "/", "~"))):
        try:
            validate_repo_id(text)
            return None
        except HFValidationError:
            pass
    raise FileNotFoundError(f"no such model folder or hub repo: {text!r}")


def resolve_model_dir(path_or_id: str | Path) -> Path:
    """A local folder holding the model: `path_or_id` itself if it is a folder, else a hub snapshot.

    A hub id is fetched with huggingface_hub.snapshot_download (which honours HF_HUB_OFFLINE and the
    local cache). A folder written by sentence-transformers whose transformer sits in a sub-folder
    (modules.json) resolves to that sub-folder.
    """
    path = local_folder(path_or_id)
    return transformer_folder(hub_snapshot(str(path_or_id)) if path is None else path)


def transformer_folder(path: Path) -> Path:
    """`path`, or the sub-folder holding the transformer of a sentence-transformers folder (modules.json)."""
    if not (path / "config.json").is_file() and (path / "modules.json").is_file():
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        sub = path / modules[0].get("path", "")
        if (sub / "config.json").is_file():
            return sub
    return path


def cached_config_file(path_or_id: str | Path) -> Path | None:
    """The model's config.json without downloading anything: in the local folder, or in the hub cache for a
    hub id; None when not at hand."""
    try:
        folder = local_folder(path_or_id)
    except FileNotFoundError:
        return None
    if folder is not None:
        f = transformer_folder(folder) / "config.json"
        return f if f.is_file() else None
    cached = try_to_load_from_cache(str(path_or_id), "config.json")
    return Path(cached) if isinstance(cached, str) else None
