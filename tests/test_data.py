"""Training data: readers (jsonl/tsv/beir/hf/tfds), bad lines, shuffling, shards, resumable state."""
import json
from pathlib import Path

import numpy as np
import pytest
from ml_collections import ConfigDict

from sembridge_jax.config import default_config, load_config
from sembridge_jax.data.examples import DataError, read_parallel_tsv
from sembridge_jax.data.sources import load_examples
from sembridge_jax.training.batches import ShardedOrder, TrainData, encode_examples, tokenize

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(REPO / "assets" / "ko-wordpiece-12k")


def spec(**kw) -> ConfigDict:
    s = default_config().data.train
    s.update(kw)
    return s


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


ROWS = [{"query": f"질문 {i}", "positive": f"문서 {i}", "negatives": [f"오답 {i} a", f"오답 {i} b"],
         "scores": [3.0, 1.0, 0.5]} for i in range(4)]


def test_jsonl_reads_negatives_and_scores(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", ROWS)
    out = load_examples(spec(type="jsonl", path=str(path), num_hard_negatives=1))
    assert len(out.examples) == 4 and out.skipped == 0
    e = out.examples[2]
    assert (e.query, e.positive, e.negatives, e.scores) == ("질문 2", "문서 2", ("오답 2 a",), (3.0, 1.0))


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [ROWS[0], "{not json", ROWS[1], {"query": "q"}, ROWS[2]])
    with pytest.raises(DataError, match=r"t\.jsonl:2: invalid JSON"):
        load_examples(spec(type="jsonl", path=str(path)))
    path = write_jsonl(tmp_path / "u.jsonl", [ROWS[0], {"query": "q"}])
    with pytest.raises(DataError, match=r"u\.jsonl:2: missing field 'positive'"):
        load_examples(spec(type="jsonl", path=str(path)))
    out = load_examples(spec(type="jsonl", path=str(tmp_path / "t.jsonl"), skip_bad_lines=True))
    assert len(out.examples) == 3 and out.skipped == 2


def test_too_few_negatives_is_a_bad_line(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [ROWS[0], {"query": "q", "positive": "p", "negatives": []}])
    with pytest.raises(DataError, match=r"t\.jsonl:2: has 0 hard negatives"):
        load_examples(spec(type="jsonl", path=str(path), num_hard_negatives=2))


def test_tsv_and_bad_lines(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text('query\tpositive\n"인용" 질문\t문서 "a"\tneg\nonly one column\nq2\td2\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.tsv:3: expected >= 2"):
        load_examples(spec(type="tsv", path=str(path), tsv_header=True))
    out = load_examples(spec(type="tsv", path=str(path), tsv_header=True, skip_bad_lines=True))
    assert out.skipped == 1 and out.examples[0].query == '"인용" 질문'  # no csv quoting
    assert out.examples[0].negatives == () and len(out.examples) == 2  # trimmed to num_hard_negatives=0
    out = load_examples(spec(type="tsv", path=str(path), tsv_header=True, skip_bad_lines=True, num_hard_negatives=1))
    assert out.examples[0].negatives == ("neg",) and len(out.examples) == 1 and out.skipped == 2


def test_parallel_tsv(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text('en\tko\nSay "hi"\t"안녕"\nbroken\nfoo\t푸\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.tsv:3"):
        read_parallel_tsv(path)
    pairs, skipped = read_parallel_tsv(path, skip_bad_lines=True)
    assert pairs == [('Say "hi"', '"안녕"'), ("foo", "푸")] and skipped == 1


def test_beir_one_example_per_qrel():
    folder = REPO / "assets" / "data" / "lohelp-hangul"
    out = load_examples(spec(type="beir", path=str(folder), split="train"))
    qrels = (folder / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert len(out.examples) == len(qrels)
    lines = (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    corpus = {json.loads(line)["_id"]: json.loads(line) for line in lines}
    first = sorted(line.split("\t") for line in qrels)[0]
    doc = corpus[first[1]]
    assert out.examples[0].positive == f"{doc['title']} {doc['text']}"


def test_beir_missing_doc(tmp_path):
    (tmp_path / "qrels").mkdir()
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "title": "", "text": "문서"}])
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "질문"}, {"_id": "q2", "text": "질문2"}])
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\tdX\t1\n")
    with pytest.raises(DataError, match=r"train\.tsv \(query q2, doc dX\): corpus id 'dX'"):
        load_examples(spec(type="beir", path=str(tmp_path), split="train"))
    out = load_examples(spec(type="beir", path=str(tmp_path), split="train", skip_bad_lines=True))
    assert len(out.examples) == 1 and out.skipped == 1


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_hf_local_files(tmp_path, fmt):
    import datasets

    rows = [{"question": f"질문 {i}", "answer": f"답 {i}"} for i in range(5)] + [{"question": "", "answer": "x"}]
    path = tmp_path / f"d.{fmt}"
    ds = datasets.Dataset.from_list(rows)
    ds.to_json(path) if fmt == "json" else ds.to_parquet(path)
    s = spec(type="hf", name=fmt, path=str(path), split="train", query_field="question", positive_field="answer",
             negatives_field="", scores_field="")
    with pytest.raises(DataError, match=r"row 5: field 'question' must be a non-empty string"):
        load_examples(s)
    s.skip_bad_lines = True
    out = load_examples(s)
    assert [e.query for e in out.examples] == [f"질문 {i}" for i in range(5)] and out.skipped == 1


def test_tfds_local_builder_without_tensorflow(tmp_path):
    import sys

    import tensorflow_datasets as tfds

    class SembridgeTinyQa(tfds.core.GeneratorBasedBuilder):
        """A squad-like (question, context) dataset, like xquad / tydi_qa."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {"question": tfds.features.Text(), "context": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"validation": self._generate_examples()}

        def _generate_examples(self):
            for i in range(6):
                yield i, {"question": f"질문 {i}", "context": f"문맥 {i}"}

    SembridgeTinyQa(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    s = spec(type="tfds", name="sembridge_tiny_qa", data_dir=str(tmp_path), split="validation",
             query_field="question", positive_field="context", negatives_field="", scores_field="")
    out = load_examples(s)
    assert sorted((e.query, e.positive) for e in out.examples) == [(f"질문 {i}", f"문맥 {i}") for i in range(6)]
    assert "tensorflow" not in sys.modules
    s.split = "train"
    with pytest.raises(DataError, match="tfds:sembridge_tiny_qa \\[train\\]"):
        load_examples(s)


def test_tokenize_static_shapes(tokenizer):
    out = tokenize(tokenizer, ["셀 범위", "셀 범위를 텍스트 문서로 끌어 놓습니다. " * 5], 8)
    assert all(v.shape == (2, 8) and v.dtype == np.int32 for v in out.values())
    assert out["attention_mask"][0].sum() < 8 and out["attention_mask"][1].sum() == 8
    assert out["input_ids"][1, -1] == tokenizer.sep_token_id  # truncation keeps [SEP]


def test_encode_examples_layout(tmp_path, tokenizer):
    examples = load_examples(spec(type="jsonl", path=str(write_jsonl(tmp_path / "t.jsonl", ROWS)),
                                  num_hard_negatives=2)).examples
    b = encode_examples(examples, tokenizer, max_query_length=6, max_doc_length=10, with_scores=True)
    assert b["query_input_ids"].shape == (4, 6) and b["doc_input_ids"].shape == (4, 3, 10)
    assert b["teacher_scores"].shape == (4, 3)
    one = tokenize(tokenizer, ["오답 1 b"], 10)["input_ids"][0]
    np.testing.assert_array_equal(b["doc_input_ids"][1, 2], one)


def test_shuffling_is_deterministic_and_epochwise():
    a, b = ShardedOrder(10, 3, seed=7), ShardedOrder(10, 3, seed=7)
    seq_a = [a.next_indices() for _ in range(9)]
    seq_b = [b.next_indices() for _ in range(9)]
    assert all((x == y).all() for x, y in zip(seq_a, seq_b, strict=True))
    for epoch in range(3):  # 3 batches per epoch, no repeats inside an epoch
        seen = np.concatenate(seq_a[3 * epoch:3 * epoch + 3])
        assert len(set(seen.tolist())) == 9
        np.testing.assert_array_equal(seen, a.permutation(epoch)[:9])
    assert not (a.permutation(0) == a.permutation(1)).all()
    other = ShardedOrder(10, 3, seed=8)
    assert not all((x == other.next_indices()).all() for x in seq_a[:3])


def test_process_shards_partition_the_global_batch():
    full = ShardedOrder(50, 8, seed=1)
    shards = [ShardedOrder(50, 8, seed=1, process_index=p, process_count=4) for p in range(4)]
    for _ in range(13):  # crosses epochs (6 batches per epoch)
        glob = full.next_indices()
        parts = [s.next_indices() for s in shards]
        assert all(len(p) == 2 for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), glob)
    with pytest.raises(ValueError, match="not divisible"):
        ShardedOrder(50, 6, seed=1, process_count=4)


# The demo's bridge-mined negative needs the bridge model: these batching tests read the labelled pairs alone.
NO_MINING = ("--config.data.train.mine_negatives=False", "--config.data.train.num_hard_negatives=0")


def test_state_round_trip_resumes_exactly(tokenizer, tmp_path):
    config = load_config(REPO / "configs" / "demo_ko.py", ["--config.train.batch_size=4",
                                                           "--config.model.max_doc_length=16", *NO_MINING])
    first = TrainData(config, tokenizer, process_index=0, process_count=1)
    for _ in range(5):
        first.next_batch()
    state = json.loads(json.dumps(first.state()))  # what a checkpoint stores
    expected = [first.next_batch() for _ in range(3)]
    resumed = TrainData(config, tokenizer, process_index=0, process_count=1)
    resumed.restore(state)
    for want in expected:
        got = resumed.next_batch()
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    with pytest.raises(ValueError, match="out of range"):
        resumed.restore({"train": {"epoch": 0, "index": 10**6}})


def test_parallel_pairs_in_batches(tokenizer, tmp_path):
    pairs = tmp_path / "p.tsv"
    pairs.write_text("en\tko\n" + "".join(f"cell {i}\t셀 {i}\n" for i in range(10)), encoding="utf-8")
    config = load_config(REPO / "configs" / "demo_ko.py", [
        "--config.loss.xling_weight=0.5", f"--config.data.parallel.path={pairs}",
        "--config.data.parallel.batch_size=4", "--config.train.batch_size=4", *NO_MINING])
    data = TrainData(config, tokenizer, process_index=0, process_count=1)
    batch = data.next_batch()
    assert batch["src_input_ids"].shape == batch["tgt_input_ids"].shape == (4, config.model.max_query_length)
    assert set(data.state()) == {"train", "parallel"}
