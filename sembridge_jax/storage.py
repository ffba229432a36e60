"""Local or object-store paths (``gs://``, ``s3://``, ``az://``) for everything a run writes.

A Cloud TPU pod writes its workdir to GCS: every host sees it and it outlives preempted VMs.
``etils.epath`` gives one pathlib-like API over both (gcsfs/s3fs underneath; Orbax and the JAX
compilation cache use it too). Libraries that only write local folders (tokenizers, safetensors
exports, reports) go through ``writable_dir`` / ``readable_dir``, which stage a local copy.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from etils import epath

# scheme -> the fsspec package epath needs for it.
REMOTE_SCHEMES = {"gs": "gcsfs", "s3": "s3fs", "az": "adlfs"}


def scheme(path: str | os.PathLike) -> str | None:
    """``"gs"`` for ``gs://b/x``, None for a local path; raises ValueError on an unsupported URL."""
    text = os.fspath(path)
    if "://" not in text:
        return None
    name = text.split("://", 1)[0]
    if name not in REMOTE_SCHEMES:
        raise ValueError(f"{text!r}: unsupported storage scheme {name}:// (use a local path or "
                         f"{', '.join(s + '://' for s in REMOTE_SCHEMES)})")
    return name


def is_remote(path: str | os.PathLike) -> bool:
    return scheme(path) is not None


def missing_backend(path: str | os.PathLike) -> str | None:
    """The pip package a remote ``path`` needs but that is not installed, else None."""
    name = scheme(path)
    if name is None:
        return None
    package = REMOTE_SCHEMES[name]
    return None if importlib.util.find_spec(package) else package


def location_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be written to (unsupported scheme, fsspec package missing), or None."""
    try:
        package = missing_backend(path)
    except ValueError as e:
        return str(e)
    return f"{os.fspath(path)!r} needs the {package} package: pip install {package}" if package else None


def as_path(path: str | os.PathLike) -> epath.Path:
    """An ``epath.Path``; local paths are made absolute (Orbax requires it)."""
    if is_remote(path):
        return epath.Path(path)
    return epath.Path(Path(path).absolute())


def remove(path: epath.Path) -> None:
    """Delete a file or a folder tree if it exists."""
    if path.is_dir():
        path.rmtree()
    elif path.exists():
        path.unlink()


def copy_tree(src: epath.Path, dst: epath.Path) -> None:
    """Copy every file under ``src`` to the same relative place under ``dst`` (either may be remote)."""
    dst.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
        if child.is_dir():
            copy_tree(child, dst / child.name)
        else:
            (dst / child.name).write_bytes(child.read_bytes())


@contextlib.contextmanager
def writable_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """A local folder whose content ends up at ``dest``: ``dest`` itself when local, else a
    temporary folder uploaded on a clean exit (nothing is uploaded if the body raises)."""
    if not is_remote(dest):
        local = Path(dest)
        local.mkdir(parents=True, exist_ok=True)
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="sembridge-upload-") as tmp:
        yield Path(tmp)
        copy_tree(epath.Path(tmp), epath.Path(dest))


@contextlib.contextmanager
def readable_dir(src: str | os.PathLike) -> Iterator[Path]:
    """A local folder with ``src``'s content: ``src`` itself when local, else a temporary download."""
    if not is_remote(src):
        yield Path(src)
        return
    with tempfile.TemporaryDirectory(prefix="sembridge-download-") as tmp:
        copy_tree(epath.Path(src), epath.Path(tmp))
        yield Path(tmp)


def replace_file(path: epath.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers never see a partial file (temp sibling + rename;
    an object store upload is atomic already)."""
    if is_remote(path):
        path.write_bytes(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=os.fspath(path.parent), prefix=f".{path.name}.", delete=False) as f:
        f.write(data)
    os.replace(f.name, os.fspath(path))
