"""The recipe rows of benchmarks/transfer_suite.py (issue 12 item 4, issue 13 item 6): a recipe config trained
by the project's own job, scored after every stage, with the wall time of each stage.

* a vocabulary-transfer recipe: train.py's code path (`pipeline.prepare` / `pipeline.run_method`) for one
  init method with `eval.after_stages` on, gives the rows "<name>: zero-shot", "<name>: <stage>" for each
  active adaptation stage and "<name>: fine-tuned";
* the connector route (`sembridge_jax.connector.Job(config).run()`): a row per stage, with the other views
  of that stage's evaluation (the cross-lingual one) as extra columns ("xling nDCG@10").

Each recipe runs in `OUT/recipes/<name>-<digest of its training settings>/`: a rerun resumes a killed stage
and skips the finished ones through their checkpoints, and a changed training setting gets a fresh folder.
Columns: the config's metrics (`eval.metrics`), `stage_s` (the stage's training wall time; None when the
stage was read back finished from an earlier run, which stores no time) and, on the last row, `total_s`
(the whole job in this process: alignment, every evaluation, training). The rows are scored with the
recipe's own evaluation settings (its query/document lengths), on its `eval.beir` / `eval.split`, which
must be the suite's --data / --split.
"""
from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

from configs.demo_ko import DATA
from configs.transfer_label_free import TEXT
from sembridge_jax import pipeline
from sembridge_jax.config import load_config
from sembridge_jax.connector import STAGES as CONNECTOR_STAGES
from sembridge_jax.connector import Job as ConnectorJob
from sembridge_jax.schema import flat_keys, settings_digest
from sembridge_jax.storage import as_path
from sembridge_jax.training import stages
from sembridge_jax.training.lock import workdir_lock
from sembridge_jax.training.run_settings import flat_settings, run_settings

REPO = Path(__file__).resolve().parents[1]
CONNECTOR = None  # Recipe.method of the connector route (it has no vocabulary init)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A config file (relative to the repository), the init method (CONNECTOR: the connector route) and
    `--config.` overrides (key=value)."""

    config: str
    method: str | None
    overrides: tuple[str, ...] = ()

    def key(self) -> dict:
        return {"recipe": self.config, "method": self.method, "overrides": list(self.overrides)}


class EvalMismatchError(ValueError):
    """A recipe evaluates on another dataset or split than the suite's table."""


def load(name: str, recipe: Recipe, data: str, split: str, out) -> tuple:
    """(config, digest of every setting but the workdir) of `recipe`, its workdir set under `out`/recipes/.
    Raises EvalMismatchError (naming the file and keys) unless its eval.beir / eval.split are `data` / `split`."""
    extra = () if recipe.method is CONNECTOR else (f"init.method={recipe.method}", "compare.methods=()",
                                                   "eval.after_stages=True")
    config = load_config(REPO / recipe.config, [*recipe.overrides, *extra])
    if Path(config.eval.beir).resolve() != Path(data).resolve() or config.eval.split != split:
        raise EvalMismatchError(
            f"row {name!r}: {recipe.config} evaluates on eval.beir={config.eval.beir} eval.split={config.eval.split}, "
            f"the suite's table on --data {Path(data).resolve()} --split {split}: rows of one table must score the "
            "same set (run the suite with that --data / --split, or set the recipe's eval.beir / eval.split)")
    settings = settings_digest(flat_settings(config, [k for k in flat_keys(config) if k != "workdir"]))
    folder = re.sub(r"[^\w.=+-]+", "_", name) + "-" + settings_digest(run_settings(config))[:10]
    config.workdir = str(Path(out) / "recipes" / folder)
    return config, settings


def run(recipe: Recipe, config) -> list[dict]:
    """Train (or resume) the recipe in config.workdir and return its rows (module docstring)."""
    workdir = as_path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with workdir_lock(workdir):
        if recipe.method is CONNECTOR:
            rows = connector_rows(config)
        else:
            (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
            row, result = pipeline.run_method(pipeline.prepare(config), recipe.method, workdir)
            if row is None:
                raise RuntimeError(f"{workdir}: preempted at step {result.step}; rerun to resume")
            rows = vocab_rows(row, stages.active_stages(config), tuple(config.eval.metrics))
    rows[-1]["total_s"] = time.perf_counter() - t0
    return rows


def vocab_rows(row: dict, active: list[str], metrics: tuple[str, ...]) -> list[dict]:
    """The rows of one pipeline.run_method row (run with eval.after_stages): zero-shot, each stage, fine-tuned."""
    out = [{"stage": "zero-shot", **{m: row[f"zero-shot {m}"] for m in metrics}, "stage_s": None}]
    out += [{"stage": s, **{m: row[f"{s} {m}"] for m in metrics}, "stage_s": row[f"{s}_s"]} for s in active]
    out.append({"stage": "fine-tuned", **{m: row[f"fine-tuned {m}"] for m in metrics},
                "query_active_dims": row["query_active_dims"], "doc_active_dims": row["doc_active_dims"],
                "stage_s": row["retrieval_s"], "steps": row["steps"]})
    return out


def connector_rows(config) -> list[dict]:
    """The connector job's rows, one per stage: its first evaluation of the stage (target -> target) with
    each further one's metrics as "<view> <metric>" columns (the view: the last parenthesis of its name)."""
    k = config.connector
    restored = {name for name in CONNECTOR_STAGES if k[name].steps
                and stages.is_finished(as_path(config.workdir) / stages.STAGES_DIR / name, k[name].steps)}
    metrics = tuple(config.eval.metrics)
    out: dict[str, dict] = {}
    for r in ConnectorJob(config).run():
        name = r.get("stage")
        if name is None:  # the job's own BM25 row: the suite has it
            continue
        if name not in out:
            out[name] = {**r, "stage_s": None if name in restored else r["stage_s"]}
        else:
            view = re.findall(r"\(([^)]*)\)", r["model"])[-1]
            out[name].update({f"{view} {m}": r.get(m) for m in metrics})
    return list(out.values())


# Row name -> recipe. The mlm variants as measured in BENCHMARKS.md ("Recipes"): the label-free recipe's mlm
# stage (200 steps on its raw text, ko_corpus.txt) added to the demo, and taken out of the label-free recipe.
MLM = ("mlm.steps=200", "mlm.learning_rate=1e-4", "mlm.warmup_steps=20", "mlm.max_length=64")
KO_TEXT = f"data.text.path={(REPO / TEXT).resolve()}"
RECIPES = {
    **{f"demo_ko {m}": Recipe("configs/demo_ko.py", m) for m in ("identity_semantic", "mvgauss", "sembridge")},
    "demo_ko identity_semantic +mlm": Recipe("configs/demo_ko.py", "identity_semantic", (*MLM, KO_TEXT)),
    **{f"label_free {m}": Recipe("configs/transfer_label_free.py", m) for m in ("identity_semantic", "mvgauss")},
    "label_free identity_semantic -mlm": Recipe("configs/transfer_label_free.py", "identity_semantic",
                                                ("mlm.steps=0",)),
    # scored on the repository's copy of lohelp-hangul like the recipes above (the same pages as the kit's
    # copy that connector_ko.py names): its training is the same
    "connector_ko": Recipe("configs/connector_ko.py", CONNECTOR, (f"eval.beir={(REPO / DATA).resolve()}",)),
}
