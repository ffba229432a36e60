"""Label-free pairs from a corpus.jsonl: title -> body and span -> document (inverse cloze / cropping)."""
import json
from pathlib import Path

import pytest

from sembridge_jax.data.pairs import corpus_pairs, read_corpus
from sembridge_jax.data.text import DataError

REPO = Path(__file__).resolve().parents[1]
LOHELP = REPO / "assets" / "data" / "lohelp-hangul"

CORPUS = {
    "long": {"title": "긴 문서", "text": " ".join(f"단어{i}" for i in range(60))},
    "multi": {"title": "", "text": "첫 줄의 문장입니다.\n둘째 줄에는   공백이 많고\n셋째 줄 " + "끝 " * 20},
    "empty": {"title": "제목만 있음", "text": "   "},
    "short": {"title": "짧은 문서", "text": "세 단어 뿐"},
}


def _words(text: str) -> list[str]:
    return text.split()


def test_pairs_come_from_their_own_document():
    pairs = corpus_pairs(CORPUS, spans_per_doc=3, span_words=(4, 12), seed=0)
    assert {p.doc_id for p in pairs} == {"long", "multi", "short"}  # nothing from the empty body
    for p in pairs:
        doc = CORPUS[p.doc_id]
        ex = p.example
        if p.kind == "title":
            assert (ex.query, ex.positive) == (doc["title"], doc["text"].strip())
            continue
        body = _words(doc["text"])
        q = _words(ex.query)
        assert 4 <= len(q) <= min(12, len(body) // 2)
        starts = [i for i in range(len(body)) if body[i:i + len(q)] == q]
        assert starts, "the query is a contiguous span of the body"
        # The positive is the document (title first) with exactly that span taken out.
        rest = _words(ex.positive)[len(_words(doc["title"])):]
        assert any(rest == body[:s] + body[s + len(q):] for s in starts)
        assert ex.positive.startswith(doc["title"]) and ex.negatives == ()
    kinds = [(p.doc_id, p.kind) for p in pairs]
    assert kinds.count(("long", "span")) == 3 and ("short", "span") not in kinds  # 3 words: too short
    assert ("short", "title") in kinds and ("multi", "title") not in kinds  # no title, no title pair


def test_span_kept_and_whitespace_of_the_rest_preserved():
    pairs = corpus_pairs({"multi": CORPUS["multi"]}, kinds=("span",), span_words=(2, 3), remove_span=False)
    assert [p.example.positive for p in pairs] == [CORPUS["multi"]["text"].strip()]
    removed = corpus_pairs({"multi": CORPUS["multi"]}, kinds=("span",), span_words=(2, 3), seed=5)[0].example
    assert len(_words(removed.positive)) == len(_words(CORPUS["multi"]["text"])) - len(_words(removed.query))
    assert "\n" in removed.positive  # the document's own line breaks survive outside the span


def test_deterministic_per_seed_and_per_document():
    a = corpus_pairs(CORPUS, spans_per_doc=2, seed=1)
    assert a == corpus_pairs(CORPUS, spans_per_doc=2, seed=1)
    assert a != corpus_pairs(CORPUS, spans_per_doc=2, seed=2)
    alone = corpus_pairs({"long": CORPUS["long"]}, spans_per_doc=2, seed=1)
    assert alone == [p for p in a if p.doc_id == "long"]  # other documents do not change a document's pairs


def test_bad_settings():
    with pytest.raises(ValueError, match="subset"):
        corpus_pairs(CORPUS, kinds=("sentence",))
    with pytest.raises(ValueError, match="span_words"):
        corpus_pairs(CORPUS, span_words=(10, 5))
    with pytest.raises(DataError, match="no document gives a pair"):
        corpus_pairs({"x": {"title": "", "text": "too short"}})


def test_read_corpus_errors(tmp_path):
    path = tmp_path / "corpus.jsonl"
    lines = [json.dumps({"_id": "a", "title": "t", "text": "x"}), "[1]", json.dumps({"_id": 3})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"corpus\.jsonl:2: expected an object with an '_id'"):
        read_corpus(tmp_path)
    expected = {"a": {"title": "t", "text": "x"}, "3": {"title": "", "text": ""}}
    assert read_corpus(path, skip_bad_lines=True) == expected
    with pytest.raises(DataError, match="does not exist"):
        read_corpus(tmp_path / "missing")


def test_real_corpus():
    corpus = read_corpus(LOHELP)
    pairs = corpus_pairs(corpus, spans_per_doc=2, seed=0)
    titled = sum(1 for d in corpus.values() if d["title"].strip() and d["text"].strip())
    assert sum(p.kind == "title" for p in pairs) == titled
    assert sum(p.kind == "span" for p in pairs) > len(corpus)
