"""Overlap copy: which target tokens take a source row as is (docs/methods.md, "The paper's algorithm", step 2).

Rules, tried in this order for every target token (the first rule that finds a source wins):
  symbols  special tokens by role ([CLS]/<s>, [SEP]/</s>, [PAD], [UNK], [MASK]); then numbers,
           punctuation and whitespace by canonical form, else by fuzzy form;
  exact    canonical forms equal;
  fuzzy    equal ignoring "▁" and case.
When several source tokens share the key, the lowest source id wins (deterministic "first match").
"""
from __future__ import annotations

import numpy as np

from sembridge_jax.bridge.token_strings import TokenForms, is_symbol


def _first_index(keys: list[str]) -> dict[str, int]:
    view: dict[str, int] = {}
    for i, k in enumerate(keys):
        view.setdefault(k, i)
    return view


def overlap_copy(target: TokenForms, source: TokenForms, *, exact: bool = True, fuzzy: bool = True,
                 symbols: bool = True) -> tuple[np.ndarray, list[str]]:
    """Returns (copy_src [V_t] int32 with the source id or -1, rule name per target id or "")."""
    exact_view = _first_index(source.canonical)
    fuzzy_view = _first_index(source.fuzzy)
    copy_src = np.full(len(target.raw), -1, dtype=np.int32)
    rule = [""] * len(target.raw)
    role_of = {tid: role for role, tid in target.roles.items()}
    for t in range(len(target.raw)):
        src, how = None, ""
        if symbols:
            if t in role_of and role_of[t] in source.roles:
                src, how = source.roles[role_of[t]], "special"
            elif t in target.special_ids or is_symbol(target.fuzzy[t]):
                src = exact_view.get(target.canonical[t], fuzzy_view.get(target.fuzzy[t]))
                how = "symbol"
        if src is None and exact:
            src, how = exact_view.get(target.canonical[t]), "exact"
        if src is None and fuzzy:
            src, how = fuzzy_view.get(target.fuzzy[t]), "fuzzy"
        if src is not None:
            copy_src[t], rule[t] = src, how
    return copy_src, rule
