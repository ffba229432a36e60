"""Raw text for the MLM stage (txt / JSONL / HF dataset); file:line errors of the parallel / JSONL readers."""
import json

import pytest

from sembridge_jax.data.examples import DataError, read_parallel_tsv
from sembridge_jax.data.sources import load_examples
from sembridge_jax.data.text import load_texts
from tests.test_data import spec


def test_txt_lines_stripped_blank_skipped(tmp_path):
    path = tmp_path / "ko.txt"
    path.write_text("  첫 문장 \n\n   \n둘째\r\n셋째\n", encoding="utf-8")
    assert load_texts(path) == ["첫 문장", "둘째", "셋째"]
    assert load_texts(str(path), max_texts=2) == ["첫 문장", "둘째"]


def test_jsonl_field_and_bad_lines(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"text": "가나"}, {"body": "no text field"}, "[1, 2]", {"text": ""}, {"text": "다라"}]
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows] + ["{not json"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.jsonl:2: expected an object with a string field 'text'"):
        load_texts(path)
    assert load_texts(path, skip_bad_lines=True) == ["가나", "다라"]  # lines 2, 3, 6 bad; 4 empty
    assert load_texts(path, kind="jsonl", field="body", skip_bad_lines=True) == ["no text field"]
    other = tmp_path / "u.jsonl"
    other.write_text('{"text": "a"}\n\n{not json\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"u\.jsonl:3: invalid JSON"):
        load_texts(other)


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("좋은 줄\n".encode() + b"\xff\xfe broken\n" + "또 좋은 줄\n".encode())
    with pytest.raises(DataError, match=r"bad\.txt:2: not valid UTF-8"):
        load_texts(path)
    assert load_texts(path, skip_bad_lines=True) == ["좋은 줄", "또 좋은 줄"]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt does not exist"):
        load_texts(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="does not exist"):
        load_texts("")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.txt: no text"):
        load_texts(empty)
    with pytest.raises(DataError, match="kind must be one of"):
        load_texts(empty, kind="csv")


def test_hf_dataset(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [json.dumps({"sentence": s, "id": i}) for i, s in enumerate(["하나", " ", "둘"])]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert load_texts(str(path), name="json", field="sentence") == ["하나", "둘"]
    with pytest.raises(DataError, match="no column 'text'"):
        load_texts(str(path), name="json")


@pytest.mark.kit
def test_kit_korean_corpus(kit):
    texts = load_texts(kit / "data" / "ko" / "text" / "ko_corpus.txt", max_texts=1000)
    assert len(texts) == 1000 and all(t == t.strip() and t for t in texts)


def test_parallel_tsv_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_bytes("en\tko\nhello\t안녕\nthree\tcolumns\there\n".encode() + b"bad\t\xff\n")
    with pytest.raises(DataError, match=r"p\.tsv:3: expected 'english<TAB>target'"):
        read_parallel_tsv(path)
    path.write_bytes("en\tko\nhello\t안녕\n".encode() + b"bad\t\xff\n")
    with pytest.raises(DataError, match=r"p\.tsv:3: not valid UTF-8"):
        read_parallel_tsv(path)
    path.write_bytes("en\tko\nhello\t안녕\n".encode() + b"\tempty english\n")
    with pytest.raises(DataError, match=r"p\.tsv:3: expected"):
        read_parallel_tsv(path)
    path.write_text("en\tko\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.tsv: no parallel pairs"):
        read_parallel_tsv(path)


def test_training_jsonl_with_undecodable_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"query": "q", "positive": "p"}\n{"query": "\xff"}\n')
    with pytest.raises(DataError, match=r"t\.jsonl:2: not valid UTF-8"):
        load_examples(spec(type="jsonl", path=str(path)))
    assert load_examples(spec(type="jsonl", path=str(path), skip_bad_lines=True)).skipped == 1
