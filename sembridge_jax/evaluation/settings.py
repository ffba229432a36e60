"""Config section `eval`: the held-out benchmark, its metrics and encoding settings, the mixed pool."""
from __future__ import annotations

import re

from sembridge_jax.data.retrieval import beir_split_problem
from sembridge_jax.evaluation.evaluator import EvalSettings
from sembridge_jax.evaluation.metrics import DEFAULT_MEASURES, measure_problem
from sembridge_jax.schema import Field, Section

_METRIC = re.compile(r"^[A-Za-z][\w]*(@\d+)?$")
_DEFAULTS = EvalSettings()


def _check_metrics(metrics) -> str | None:
    if not metrics or not all(isinstance(m, str) and _METRIC.match(m) for m in metrics):
        return f"must be a non-empty tuple of names like 'nDCG@10', got {metrics!r}"
    problems = [p for p in map(measure_problem, metrics) if p]
    return "; ".join(problems) or None


def _check_ks(ks) -> str | None:
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in ks):
        return f"must be a non-empty tuple of positive ints, got {ks!r}"
    return None


def _eval_rules(c):
    problem = beir_split_problem(c.eval.beir, c.eval.split)
    if problem:
        yield "eval.beir", problem
    for side in ("target", "english"):
        problem = beir_split_problem(c.eval.mixed[side], c.eval.split)
        if problem:
            yield f"eval.mixed.{side}", problem


def _mixed_rules(c):
    if bool(c.eval.mixed.target) != bool(c.eval.mixed.english):
        yield "eval.mixed", "set both eval.mixed.target and eval.mixed.english, or neither"


# English inclination (docs/evaluation.md): a mixed pool of target + English documents.
MIXED = Section({
    "target": Field("", "BEIR folder in the target language ('' = no mixed-pool run)", path="input"),
    "english": Field("", "BEIR folder in English with parallel documents", path="input"),
    "id_map": Field("", "TSV target-id -> english-id; '' = the two folders share document ids", path="input"),
    "queries": Field("target", "whose queries to run", choices=("target", "english")),
    "complete_at": Field(_DEFAULTS.complete_at, "K values of Complete@K", check=_check_ks),
}, rules=(_mixed_rules,))

EVAL = Section({
    "beir": Field("", "final evaluation set: BEIR folder or hub dataset id ('miracl/miracl')",
                  path="input_or_hub"),
    "subset": Field("", "hub dataset config (MIRACL language 'ko')"),
    "corpus": Field("", "hub corpus of a hub eval set ('miracl/miracl-corpus'); '' = judged passages",
                    path="input_or_hub"),
    "split": Field("dev", "qrels split"),
    "metrics": Field(DEFAULT_MEASURES[:2], "ir-measures names (checked at config time)", check=_check_metrics),
    "k": Field(_DEFAULTS.depth, "retrieval depth per query", ge=1),
    "batch_size": Field(_DEFAULTS.batch_size, "texts per encoding batch", ge=1),
    "max_queries": Field(0, "evaluate on the first N queries; 0 = all", ge=0),
    "max_docs": Field(0, "corpus cap: judged documents + a seeded sample of the others up to N; 0 = all", ge=0),
    "query_top_k": Field(0, "inference pruning of query vectors; 0 = none", ge=0),
    "doc_top_k": Field(0, "inference pruning of document vectors; 0 = none", ge=0),
    "after_stages": Field(False, "also evaluate after each adaptation stage: '<stage> <metric>' and '<stage>_s' columns"),
    "mixed": MIXED,
}, rules=(_eval_rules,))
