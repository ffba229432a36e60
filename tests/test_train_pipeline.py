"""The training loop's machinery off the critical path: the prefetching batch pipeline keeps today's
order and checkpoints the position of the batch the step consumed; metrics stay on the devices until
fetched, with the first NaN/inf step remembered; the profiler window writes a viewable trace.

(The loop itself, killed and resumed with the prefetcher on, is tests/test_train_loop.py.)"""
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_tiny import tiny_config, tiny_dataset, tiny_tokenizer

from sembridge_jax.training import sharding
from sembridge_jax.training.batches import Prefetcher, TrainData, encode_examples
from sembridge_jax.training.monitor import ProfileWindow, StepMetrics

EXAMPLES, BATCH = 64, 8  # 8 batches per epoch


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    tokenizer = tiny_tokenizer(folder / "tokenizer")
    config = tiny_config(folder, tiny_dataset(folder / "train.jsonl", n=EXAMPLES))
    config.train.batch_size = BATCH
    return config, tokenizer


def _data(setup, **kw):
    config, tokenizer = setup
    return TrainData(config, tokenizer, process_index=kw.get("index", 0), process_count=kw.get("count", 1))


def _expected_batches(setup, n: int, index: int = 0, count: int = 1):
    """The documented order (training/batches.py), rebuilt independently: epoch e shuffles with
    default_rng([seed, e]), global batch k is positions [k B, (k + 1) B) of it, process p takes its slice."""
    config, tokenizer = setup
    data = _data(setup)
    out, local = [], BATCH // count
    for j in range(n):
        epoch, k = divmod(j, EXAMPLES // BATCH)
        perm = np.random.default_rng([config.seed, epoch]).permutation(EXAMPLES)
        rows = perm[k * BATCH:(k + 1) * BATCH][index * local:(index + 1) * local]
        out.append(encode_examples([data.examples[i] for i in rows], tokenizer, max_query_length=data.max_query_length,
                                   max_doc_length=data.max_doc_length))
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefetched_batches_keep_the_documented_order_on_the_mesh(setup, depth):
    mesh = sharding.make_mesh({"data": -1})
    place = lambda batch: sharding.global_batch(batch, mesh)
    n = 2 * EXAMPLES // BATCH + 3  # crosses two epoch boundaries
    with Prefetcher(_data(setup), place, depth) as batches:
        got = [batches.next() for _ in range(n)]
    assert all(v.sharding == sharding.batch_sharding(mesh) for v in got[0].values())
    for a, b in zip(got, _expected_batches(setup, n), strict=True):
        _assert_same(a, b)


def test_each_process_prefetches_its_slice_of_the_global_batch(setup):
    with Prefetcher(_data(setup, index=1, count=2), lambda b: b, 2) as batches:
        got = [batches.next() for _ in range(10)]
    for a, b in zip(got, _expected_batches(setup, 10, index=1, count=2), strict=True):
        _assert_same(a, b)


def _wait_for(predicate, timeout=30.0):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_state_is_the_position_after_the_consumed_batch_not_the_read_ahead(setup):
    data = _data(setup)
    with Prefetcher(data, lambda b: b, depth=3) as batches:
        assert batches.state() == {"train": {"epoch": 0, "index": 0}}
        for _ in range(6):
            batches.next()
        _wait_for(batches._queue.full)  # 3 batches wait, a 4th is made: the data has moved on
        _wait_for(lambda: data.state() == {"train": {"epoch": 1, "index": 2}})
        saved = batches.state()
        assert saved == {"train": {"epoch": 0, "index": 6}}
        seventh = batches.next()
    resumed = _data(setup)
    resumed.restore(saved)  # what a checkpoint of step 6 restores
    _assert_same(resumed.next_batch(), seventh)


class _Failing:
    """Data whose third batch raises."""

    def __init__(self):
        self.calls = 0

    def next_batch(self):
        self.calls += 1
        if self.calls == 3:
            raise OSError("disk gone")
        return {"x": np.full(2, self.calls)}

    def state(self):
        return {"calls": self.calls}


def test_a_producer_error_surfaces_in_order():
    with Prefetcher(_Failing(), lambda b: b, 2) as batches:
        assert batches.next()["x"][0] == 1
        assert batches.next()["x"][0] == 2
        with pytest.raises(OSError, match="disk gone"):
            batches.next()
        assert batches.state() == {"calls": 2}


def test_close_stops_a_producer_waiting_for_room():
    batches = Prefetcher(_Failing(), lambda b: b, 1)
    with batches:
        _wait_for(batches._queue.full)
    assert batches._thread is None
    assert not any(t.name == "sembridge-prefetch" and t.is_alive() for t in threading.enumerate())


def test_step_metrics_stay_on_device_and_remember_the_first_bad_step():
    rng = np.random.default_rng(0)
    losses, norms = rng.normal(size=6), rng.uniform(size=6)
    meter = StepMetrics()
    for i in range(4):
        meter.add({"loss": jnp.float32(losses[i]), "grad_norm": jnp.float32(norms[i])}, jnp.int32(i + 1))
    means, bad = meter.fetch()
    assert bad == 0 and len(meter) == 4
    np.testing.assert_allclose([means["loss"], means["grad_norm"]], [losses[:4].mean(), norms[:4].mean()], rtol=1e-5)
    meter.reset()
    assert meter.fetch() == ({}, 0)
    for i, (loss, norm) in enumerate([(1.0, 1.0), (np.nan, 1.0), (2.0, np.inf), (1.0, 1.0)]):
        meter.add({"loss": jnp.float32(loss), "grad_norm": jnp.float32(norm)}, jnp.int32(10 + i))
    means, bad = meter.fetch()
    assert bad == 11  # the first bad step, not a later one
    assert np.isnan(means["loss"]) and np.isinf(means["grad_norm"])


def test_profile_window_writes_tensorboard_and_perfetto_traces(tmp_path):
    window = ProfileWindow(tmp_path, (1, 3))
    f = jax.jit(lambda x: jnp.tanh(x @ x))
    x = jnp.ones((32, 32))
    for step in range(5):
        window.at(step, x)
        x = f(x)
    window.close()
    runs = list((tmp_path / "profile" / "plugins" / "profile").iterdir())
    assert len(runs) == 1
    assert list(runs[0].glob("*.xplane.pb")) and list(runs[0].glob("perfetto_trace.json.gz"))
    ProfileWindow(tmp_path / "off", ()).at(0, x)  # off: nothing written
    assert not (tmp_path / "off").exists()
