"""sembridge_jax.storage and the run files written through it, on local paths and gs:// (a local GCS server)."""
import os

import pytest

from sembridge_jax import storage


def test_schemes_and_local_paths(tmp_path, monkeypatch):
    assert storage.scheme("gs://b/run") == "gs" and storage.scheme("runs/x") is None
    assert storage.is_remote("s3://b/x") and not storage.is_remote(tmp_path)
    with pytest.raises(ValueError, match="unsupported storage scheme http://"):
        storage.scheme("http://host/run")
    monkeypatch.chdir(tmp_path)
    assert str(storage.as_path("runs/x")) == str(tmp_path / "runs" / "x")  # Orbax needs absolute paths
    assert str(storage.as_path("gs://b/run/")) == "gs://b/run"


def test_replace_file_leaves_no_partial_or_temp_file(tmp_path):
    target = storage.as_path(tmp_path / "cache" / "x.npz")
    storage.replace_file(target, b"one")
    storage.replace_file(target, b"two")
    assert target.read_bytes() == b"two" and os.listdir(tmp_path / "cache") == ["x.npz"]


def test_staged_folders_round_trip_through_gcs(gcs, tmp_path):
    dest = gcs.path("staged/model")
    with storage.writable_dir(dest) as local:
        (local / "sub").mkdir()
        (local / "config.json").write_text("{}")
        (local / "sub" / "weights.bin").write_bytes(b"\0\1\2")
    with storage.readable_dir(dest) as local:
        assert sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()) == [
            "config.json", os.path.join("sub", "weights.bin")]
        assert (local / "sub" / "weights.bin").read_bytes() == b"\0\1\2"
    with pytest.raises(RuntimeError), storage.writable_dir(gcs.path("failed")) as local:
        (local / "half.json").write_text("{")
        raise RuntimeError("crash while writing")
    assert not storage.as_path(gcs.path("failed")).exists()  # nothing is uploaded from a failed body
    with storage.writable_dir(tmp_path / "plain") as local:  # a local destination is used as is
        assert local == tmp_path / "plain" and local.is_dir()


def test_metrics_writer_on_gcs_trims_on_resume_and_plots(gcs):
    from sembridge_jax.training.monitor import MetricsWriter, plot_curves, read_metrics

    run = storage.as_path(gcs.path("metrics-run"))
    writer = MetricsWriter(run)
    for step in range(1, 6):
        writer.write(step, {"loss": 1.0 / step})
    writer.close()
    writer = MetricsWriter(run, resume_step=3)  # killed after the step-3 checkpoint: 4 and 5 are replayed
    writer.write(4, {"loss": 0.3})
    writer.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl")] == [
        (1, 1.0), (2, 0.5), (3, 1 / 3), (4, 0.3)]
    assert any(p.name.startswith("events.out.tfevents.") for p in (run / "tensorboard").iterdir())
    png = plot_curves(run)
    assert str(png) == f"{run}/training_curves.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
