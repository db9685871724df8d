"""Crash safety: atomic writes, kill -9 and resume in a real subprocess, disk full, bounded metadata."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from robprune import load_checkpoint, save_checkpoint
from robprune.cli import main

pytestmark = pytest.mark.slow


def test_crash_during_write_keeps_the_old_file(tmp_path, monkeypatch, small_cnn):
    path = save_checkpoint(tmp_path / "m.safetensors", small_cnn, meta={"v": 1})
    old = path.read_bytes()

    def failing_fsync(fd):
        raise OSError(errno.EIO, "simulated crash")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        save_checkpoint(path, small_cnn, meta={"v": 2})
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left


def test_disk_full_gives_one_line_and_no_partial_output(tmp_path, monkeypatch, capsys, small_cnn):
    ckpt = save_checkpoint(tmp_path / "m.safetensors", small_cnn)
    import robprune.io as rio

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rio.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    out = tmp_path / "out"
    assert main(["stats", str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robprune: error:") and "No space left" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_oversized_metadata_is_refused(tmp_path):
    import safetensors.torch

    path = tmp_path / "big.safetensors"
    meta = {"arch": "small_cnn", "num_classes": 10, "in_channels": 1, "junk": "x" * (17 * 1024 * 1024)}
    safetensors.torch.save_file({"model.w": torch.zeros(1)}, path, metadata={"robprune": json.dumps(meta)})
    with pytest.raises(ValueError, match="header claims"):
        load_checkpoint(path)


def _train_cmd(out):
    return [sys.executable, "-m", "robprune.cli", "train", "--data", "digits", "--arch", "small_cnn",
            "--epochs", "4", "--batch-size", "16", "--lr", "0.02", "--method", "cp", "--amount", "0.5",
            "--lam", "0.01", "--seed", "3", "--device", "cpu", "--out", str(out)]


def _final_weights(out):
    model, _, _ = load_checkpoint(out / "model.safetensors")
    return model.state_dict()


def test_kill_9_mid_epoch_then_resume_is_bit_exact(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same kernels in every process
    subprocess.run(_train_cmd(tmp_path / "straight"), check=True, env=env, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch, well before its end
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model.safetensors").exists()
    done = len((out / "metrics.jsonl").read_text().splitlines())
    assert 1 <= done < 4
    subprocess.run(_train_cmd(out) + ["--resume"], check=True, env=env, capture_output=True)
    straight, resumed = _final_weights(tmp_path / "straight"), _final_weights(out)
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k


def test_a_damaged_cached_unit_is_rebuilt_not_fatal(tmp_path, caplog):
    """Truncate the cached model of a unit: the rerun logs it, recomputes it, and finishes."""
    import logging

    from robprune.data import load_digits
    from robprune.experiments.grid import finetuned
    from robprune.training import TrainConfig
    from robprune import create_model

    data = load_digits()
    torch.manual_seed(0)
    base = create_model("small_cnn")
    config = TrainConfig(epochs=1, batch_size=64, lr=0.01, method="cp", amount=0.5, n_train=200)
    model, _ = finetuned(base, {"b": 1}, data, config, tmp_path, "CP")
    (unit,) = (tmp_path / "units").iterdir()
    path = unit / "model.safetensors"
    path.write_bytes(path.read_bytes()[:500])
    with caplog.at_level(logging.WARNING):
        again, masks = finetuned(base, {"b": 1}, data, config, tmp_path, "CP")
    assert "is damaged" in caplog.text and "recomputing" in caplog.text
    assert (unit / ".done").is_file() and len(path.read_bytes()) > 500
    assert sum(int((~m).sum()) for m in masks.values()) > 0
    # a completed unit is reused (no retraining): the same weights come back
    third, _ = finetuned(base, {"b": 1}, data, config, tmp_path, "CP")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), third.state_dict().values()))
