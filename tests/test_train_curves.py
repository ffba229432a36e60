"""Every curve the plot names is a metric the training run writes to metrics.jsonl, and the PNG draws it."""
import sys
from pathlib import Path

import jax.numpy as jnp
import matplotlib.axes
import numpy as np
import pytest

from sembridge_jax.training import losses, monitor, trainer
from sembridge_jax.training.batches import TrainData

sys.path.insert(0, str(Path(__file__).parent))
from train_tiny import tiny_config, tiny_dataset, tiny_model, tiny_tokenizer  # noqa: E402

# Curves that only an objective with a teacher or parallel queries reports, and the loss settings that
# make total_loss produce them.
OPTIONAL = {"distill": dict(distill="margin_mse"), "xling_js": dict(xling_weight=0.5)}


@pytest.mark.slow  # compiles a train step
def test_every_plotted_curve_is_written_by_a_tiny_fit(tmp_path, monkeypatch):
    tokenizer = tiny_tokenizer(tmp_path / "tok")
    config = tiny_config(tmp_path / "run", tiny_dataset(tmp_path / "train.jsonl"), steps=2)
    model = tiny_model(len(tokenizer))
    trainer.fit(config, model, tmp_path / "run", TrainData(config, tokenizer, process_index=0, process_count=1))
    records = monitor.read_metrics(tmp_path / "run" / monitor.METRICS_FILE)
    written = {k for r in records for k in r}
    assert set(monitor.PLOTTED) - set(OPTIONAL) <= written, set(monitor.PLOTTED) - written

    titles = []
    draw = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda ax, t, *a, **k: titles.append(t) or draw(ax, t))
    png = monitor.plot_curves(tmp_path / "run")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert titles == [k for k in monitor.PLOTTED if k in written]


def test_the_optional_curves_are_metrics_of_the_loss():
    """The curves a tiny fit cannot write are still names that total_loss reports."""
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.random((4, 16), np.float32))
    d = jnp.asarray(rng.random((4, 2, 16), np.float32))
    for key, settings in OPTIONAL.items():
        _, metrics = losses.total_loss(losses.LossSettings(**settings), q, d, 0,
                                       teacher_scores=jnp.ones((4, 2)), xling=(q, q))
        assert key in metrics and key in monitor.PLOTTED
