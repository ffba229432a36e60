"""Raw target-language text for the `mlm` stage (files read through lines.numbered_lines).

Sources: a text file (one text per line), JSONL (one object per line, text in `field`) or a Hugging
Face dataset (`name` / `subset` / `split`, text in `field`; local json/parquet files through
`path` as data_files). Empty texts are skipped. A bad record (bytes that are not UTF-8, invalid
JSON, a missing or non-string field) fails with `file:line` (or dataset row), or is skipped and
counted with `skip_bad_lines`. A missing file or one without any text is an error.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from sembridge_jax.lines import DataError, numbered_lines

log = logging.getLogger(__name__)

TEXT_KINDS = ("auto", "txt", "jsonl", "hf")


def _kind_of(path: str, name: str, kind: str) -> str:
    if kind != "auto":
        return kind
    if name:
        return "hf"
    return "jsonl" if Path(path).suffix in (".jsonl", ".json") else "txt"


def _file_records(path: Path, fmt: str, field: str) -> Iterator[tuple[str, str | None, str | None]]:
    """(location, text or None, problem or None) per non-blank line of a txt / JSONL file."""
    for number, line in numbered_lines(path):
        where = f"{path}:{number}"
        if line is None:
            yield where, None, "not valid UTF-8"
        elif fmt == "txt":
            yield where, line, None
        else:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                yield where, None, f"invalid JSON ({err.msg})"
                continue
            value = record.get(field) if isinstance(record, dict) else None
            if not isinstance(value, str):
                yield where, None, f"expected an object with a string field {field!r}, got {line[:80]!r}"
            else:
                yield where, value, None


def _hf_records(name: str, subset: str, split: str, path: str, field: str, stream: bool):
    """(location, text or None, problem or None) per row; `stream` reads only the rows consumed."""
    import datasets  # heavy optional: only hf text sources pay its import time

    kwargs = {"split": split, "streaming": stream}
    if path:
        kwargs["data_files"] = path
    label = f"hf:{name}{'/' + subset if subset else ''} [{split}]"
    try:
        dataset = datasets.load_dataset(name, subset or None, **kwargs)
    except (ValueError, FileNotFoundError) as err:  # unknown dataset / split / config, missing files
        raise DataError(f"{label}: {err}") from None
    for i, row in enumerate(dataset):
        if field not in row:
            raise DataError(f"{label}: no column {field!r} (has {sorted(row)[:8]})")
        value = row[field]
        if isinstance(value, str):
            yield f"{label} row {i}", value, None
        else:
            yield f"{label} row {i}", None, f"{field!r} is not a string: {value!r:.80}"


def load_texts(path: str | Path = "", *, kind: str = "auto", field: str = "text", name: str = "",
               subset: str = "", split: str = "train", max_texts: int = 0, skip_bad_lines: bool = False,
               ) -> list[str]:
    """The texts of a txt / JSONL file or a Hugging Face dataset, stripped, empty ones skipped.

    kind "auto": "hf" when `name` is set, "jsonl" for a .jsonl / .json file, else "txt"; for "hf",
    `path` (optional) is the builder's data_files (name "json" / "parquet" / "text" for local files).
    max_texts > 0 keeps the first that many (a hub dataset is then streamed). Raises DataError naming the file (and line) for a
    missing file, a bad record (unless skip_bad_lines: skipped and counted in the log) or no text.
    """
    if kind not in TEXT_KINDS:
        raise DataError(f"text source kind must be one of {TEXT_KINDS}, got {kind!r}")
    fmt = _kind_of(str(path), name, kind)
    if fmt == "hf":
        if not name:
            raise DataError("an hf text source needs a dataset name")
        # With max_texts, a hub dataset is streamed: only the rows used are downloaded.
        stream = bool(max_texts) and not path
        source, records = f"hf:{name}", _hf_records(name, subset, split, str(path or ""), field, stream)
    else:
        source = str(path)
        if not path or not Path(path).is_file():
            raise DataError(f"text file {source or '(no path)'} does not exist")
        records = _file_records(Path(path), fmt, field)
    texts, skipped = [], 0
    for where, text, problem in records:
        if problem is not None:
            if not skip_bad_lines:
                raise DataError(f"{where}: {problem}")
            skipped += 1
            continue
        text = text.strip()
        if text:
            texts.append(text)
            if max_texts and len(texts) >= max_texts:
                break
    if skipped:
        log.warning("%s: skipped %d bad records", source, skipped)
    if not texts:
        raise DataError(f"{source}: no text (empty, or only blank lines{'/bad records' if skipped else ''})")
    return texts
