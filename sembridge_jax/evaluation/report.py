"""Result tables (JSON + markdown, one row per model/method, like the paper's Table 1) and the
FLOPS vs nDCG@10 plot."""
from __future__ import annotations

import json
from pathlib import Path

LEAD = ("model", "dataset", "num_queries", "num_docs")
TAIL = ("query_active_dims", "doc_active_dims", "flops", "encode_s", "retrieve_s")


def columns(rows: list[dict]) -> list[str]:
    """Identity columns, then metrics in first-seen order, then sparsity/FLOPS/timings."""
    seen = [k for r in rows for k in r]
    middle = list(dict.fromkeys(k for k in seen if k not in LEAD and k not in TAIL))
    return [c for c in LEAD if c in seen] + middle + [c for c in TAIL if c in seen]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"
    return str(v)


def markdown_table(rows: list[dict]) -> str:
    cols = columns(rows)
    right = {c for c in cols if c not in ("model", "dataset")}
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if c in right else "---" for c in cols) + "|"]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def plot_flops_vs_metric(rows: list[dict], path: str | Path, metric: str = "nDCG@10") -> Path | None:
    """Scatter of FLOPS (x, log) vs `metric` per model; rows without FLOPS (BM25) are drawn as a
    horizontal reference line. Returns the PNG path, or None when nothing has FLOPS."""
    import matplotlib  # heavy optional: a second of import time, only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy optional: imported after choosing the Agg backend

    pts = [r for r in rows if r.get("flops") is not None and metric in r]
    if not pts:
        return None
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))

    def label(r):  # the dataset goes into the title when there is only one
        return r["model"] if len(datasets) == 1 else f"{r['model']} | {r['dataset'][:40]}"

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in pts:
        ax.scatter(max(r["flops"], 1e-6), r[metric], label=label(r))
    refs = [r for r in rows if r.get("flops") is None and metric in r]
    for r, ls in zip(refs, ("--", ":", "-.") * 10, strict=False):
        ax.axhline(r[metric], ls=ls, lw=0.8, color="gray", label=label(r))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    if len(datasets) == 1:
        ax.set_title(datasets[0], fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("FLOPS (expected multiplications per query-document pair)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_report(rows: list[dict], out_dir: str | Path, *, settings: dict | None = None,
                 plot_metric: str = "nDCG@10") -> dict[str, Path]:
    """OUT/results.json ({"settings", "results": rows}), OUT/results.md and OUT/flops_vs_<metric>.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "results.json", "md": out / "results.md"}
    files["json"].write_text(json.dumps({"settings": settings or {}, "results": rows}, indent=1, ensure_ascii=False))
    files["md"].write_text(markdown_table(rows))
    png = plot_flops_vs_metric(rows, out / f"flops_vs_{plot_metric.replace('@', '_at_')}.png", plot_metric)
    if png is not None:
        files["png"] = png
    return files
