"""torch.distributed on 2 CPU processes (gloo, torchrun --standalone): training equivalence with one process,
sharded evaluation, an elastic restart after a killed rank, and the output-folder lock. Small: digits."""

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import robprune as rp
from robprune.cli import main
from robprune.io import OutputLock

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parents[1]
MLP = "user_models.nets:tiny_mlp"  # no BatchNorm: rank-local statistics would differ from one process
TRAIN = ["train", "--data", "digits", "--arch", MLP, "--batch-size", "64", "--lr", "0.05", "--method", "cp",
         "--amount", "0.5", "--augment", "none", "--device", "cpu"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}"
    env["OMP_NUM_THREADS"] = "1"
    return env


def _torchrun(args, nproc=2, extra=(), timeout=240, **kw):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *extra,
           "-m", "robprune", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout, **kw)


def _one(args, timeout=240):
    return subprocess.run([sys.executable, "-m", "robprune", *args], env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _load(path):
    return rp.load_checkpoint(path, expect_arch=MLP)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    two = _torchrun([*TRAIN, "--epochs", "3", "--out", str(tmp / "two")])
    assert two.returncode == 0, two.stderr[-2000:]
    one = _one([*TRAIN, "--epochs", "3", "--out", str(tmp / "one")])
    assert one.returncode == 0, one.stderr[-2000:]
    return tmp


def test_nproc_starts_the_ranks_and_trains_like_torchrun(runs):
    """`robprune train --nproc 2` (the launcher must not hold the folder its rank 0 locks) ends like the same
    command under torchrun, bit for bit; a failing rank is one line, not torch's ChildFailedError blob."""
    out = runs / "nproc"
    proc = _one([*TRAIN, "--epochs", "3", "--nproc", "2", "--out", str(out)], timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mine, _, _ = _load(out / "model.safetensors")
    reference, _, _ = _load(runs / "two" / "model.safetensors")
    for (k, a), (_, b) in zip(mine.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), k
    bad_train = [a if a != "digits" else "imagefolder:" + str(runs / "missing.tar") for a in TRAIN]
    bad = _one([*bad_train, "--epochs", "1", "--nproc=2", "--out", str(runs / "nproc-bad")], timeout=240)
    assert bad.returncode == 2
    assert "ChildFailedError" not in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert bad.stderr.count("robprune: error") == 3  # each rank's own line, then the launcher's
    assert "2 of 2 training processes failed" in bad.stderr


def test_two_processes_train_like_one(runs):
    """Equal exactly: masks, sparsity, the data order (same metrics per epoch up to float sums).
    Equal within float reduction tolerance: the weights (gloo averages the two half-batch gradients)."""
    m1, masks1, meta1 = _load(runs / "one" / "model.safetensors")
    m2, masks2, meta2 = _load(runs / "two" / "model.safetensors")
    assert meta2["world_size"] == 2 and meta1["world_size"] == 1
    assert set(masks1) == set(masks2) and all(torch.equal(masks1[k], masks2[k]) for k in masks1)
    assert rp.sparsity_report(m1)["zeros"] == rp.sparsity_report(m2)["zeros"]
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), k
    h1, h2 = meta1["history"], meta2["history"]
    assert [round(h["train_acc"], 6) for h in h1] == [round(h["train_acc"], 6) for h in h2]


def test_sharded_evaluation_counts_equal_one_process(runs):
    ckpt = runs / "one" / "model.safetensors"
    args = ["eval", str(ckpt), "--arch", MLP, "--data", "digits", "--eps", "8,24", "--steps", "5",
            "--batch-size", "50", "--no-checks", "--device", "cpu"]
    for extra in ([], ["--suite", "fast"]):
        name = "suite" if extra else "pgd"
        two = _torchrun([*args, *extra, "--out", str(runs / f"ev2-{name}")])
        assert two.returncode == 0, two.stderr[-2000:]
        one = _one([*args, *extra, "--out", str(runs / f"ev1-{name}")])
        assert one.returncode == 0, one.stderr[-2000:]
        e1 = json.loads((runs / f"ev1-{name}" / "eval.json").read_text())
        e2 = json.loads((runs / f"ev2-{name}" / "eval.json").read_text())
        assert [r["correct"] for r in e1["robust"]] == [r["correct"] for r in e2["robust"]]
        assert e1["clean"] == e2["clean"]
        assert 0 < e1["robust"][1]["correct"] < e1["clean"]["correct"]  # the attack did something


def test_elastic_restart_after_a_killed_rank_ends_with_the_same_weights(runs):
    out = runs / "elastic"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--max-restarts", "1", "-m", "robprune", *TRAIN, "--epochs", "3", "--resume", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.02)
    assert metrics.is_file(), "the first epoch never finished"
    workers = _workers_writing(out)
    assert len(workers) == 2, workers
    os.kill(max(workers), signal.SIGKILL)  # one rank dies during the second epoch (or just after the first)
    # a restart is a new worker group: rank processes that were not there before the kill
    restarted, deadline = set(), time.time() + 120
    while not restarted and proc.poll() is None and time.time() < deadline:
        restarted = set(_workers_writing(out)) - set(workers)
        time.sleep(0.02)
    try:
        _, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail("the restarted group did not finish: " + err[-3000:])
    assert proc.returncode == 0, err[:3000]
    assert restarted, "no new rank process appeared after the kill: the group was not restarted"
    killed, _, _ = _load(out / "model.safetensors")
    reference, _, _ = _load(runs / "two" / "model.safetensors")
    # Bit-exact: resuming restores weights, momentum and the data-order generator, and gloo sums two ranks in
    # a fixed order, so the restarted group computes exactly what the uninterrupted one did.
    for (k, a), (_, b) in zip(killed.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), k


def _workers_writing(out: Path) -> list[int]:
    """PIDs of the rank processes (not the launcher) whose command line names this output folder."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in cmdline]
        if str(out) in words and "robprune" in words and "torch.distributed.run" not in words:
            pids.append(int(entry.name))
    return pids


def test_bad_distributed_input_is_one_line_on_every_rank(runs):
    bad = _torchrun([*TRAIN, "--epochs", "1", "--batch-size", "63", "--out", str(runs / "odd")])
    assert bad.returncode != 0
    lines = [e for e in bad.stderr.splitlines() if e.startswith("robprune: error")]
    assert len(lines) == 2 and all("not divisible by the 2 ranks" in e for e in lines), bad.stderr[-1500:]
    assert not (runs / "odd" / "model.safetensors").exists()
    assert main([*TRAIN, "--epochs", "1", "--sync-bn", "--out", str(runs / "sync")]) == 2
    if not torch.cuda.is_available():
        assert main([*TRAIN, "--epochs", "1", "--dist-backend", "nccl", "--out", str(runs / "nccl")]) == 2


def test_a_rank_whose_master_port_is_held_by_another_program_gives_up_in_one_line(tmp_path):
    """A program that accepts connections on MASTER_PORT but never answers: torch's store client would wait for
    ever; every rank must end within the join timeout (plus a grace) with one line."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port, accepted = server.getsockname()[1], []
    threading.Thread(target=lambda: [accepted.append(server.accept()) for _ in range(8)], daemon=True).start()
    env = {**_env(), "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "robprune", *TRAIN, "--epochs", "1", "--dist-timeout", "3",
                           "--out", str(tmp_path / "o")], env=env, capture_output=True, text=True, timeout=120)
    server.close()
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - start < 60
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot join the process group" in err[0] and str(port) in err[0], done.stderr
    assert accepted  # the rank did reach the foreign program


@pytest.mark.parametrize("argv", [
    ["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "1"],
    ["eval", "CKPT", "--data", "digits", "--n-images", "5"],
    ["prune", "CKPT", "--method", "cp", "--amount", "0.5"],
    ["stats", "CKPT"],
    ["reproduce", "--data", "digits", "--quick"],
    ["demo"],
])
def test_a_second_writer_of_the_same_folder_is_refused(argv, tmp_path, capsys):
    ckpt = rp.save_checkpoint(tmp_path / "m.safetensors", rp.create_model("small_cnn"))
    out = tmp_path / "busy"
    with OutputLock(out):
        argv = [str(ckpt) if a == "CKPT" else a for a in argv]
        assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is in use by robprune pid" in err and len(err.strip().splitlines()) == 1
    assert not (out / ".robprune.lock").exists()  # released, and nothing else was written
    assert list(out.iterdir()) == [] if out.exists() else True


def test_a_lock_dies_with_its_process(tmp_path):
    out = tmp_path / "o"
    code = f"from robprune.io import OutputLock; import os; l = OutputLock({str(out)!r}).__enter__(); os._exit(9)"
    subprocess.run([sys.executable, "-c", code], env=_env(), check=False)
    with OutputLock(out):  # the killed holder does not block forever
        pass


def test_sharing_processes_hold_a_folder_together_and_no_one_else(tmp_path, capsys):
    """--share takes a shared lock: sharers run side by side; a plain run is refused while they hold the folder
    (told to add --share), and a sharer is refused while a plain run holds it."""
    out = tmp_path / "shared"
    with OutputLock(out, shared=True), OutputLock(out, shared=True):
        with pytest.raises(ValueError, match="processes sharing it .--share.; add --share to join them"):
            OutputLock(out).__enter__()
        assert main(["study", "adversarial", "--quick", "--data", "digits", "--out", str(out)]) == 2
        assert "add --share" in capsys.readouterr().err
    with OutputLock(out):
        with pytest.raises(ValueError, match="in use by robprune pid"):
            OutputLock(out, shared=True).__enter__()
    with OutputLock(out, shared=True):  # everyone gone: free again
        pass


def test_two_sharing_processes_divide_a_study_and_report_it_whole(tmp_path):
    """The same study command started twice with --share on one folder: both finish, every unit is computed by
    exactly one of them, both computed some (two seeds: while one process trains the first dense model the other
    takes the second), and results.json holds every model with the two processes' time."""
    out = tmp_path / "study"
    argv = [sys.executable, "-m", "robprune", "study", "adversarial", "--quick", "--seeds", "0,1", "--data", "digits",
            "--out", str(out), "--device", "cpu", "--suite", "fast", "--suite-images", "20", "--share"]
    procs = [subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    started = [re.findall(r"^\[start\] (\S+)", log, re.M) for log in logs]
    assert all(started), logs  # both processes computed units
    everything = started[0] + started[1]
    assert len(everything) == len(set(everything)), everything  # and none twice
    state = json.loads((out / "results.json").read_text())
    assert state["done"]
    for rows in state["seeds"].values():
        assert set(rows) == {"Dense", "CP-0.9", "RP-0.9", "Ours-0.9", "RP-0.1"}
        assert all(("suite" in row) != ("suite_skipped" in row) for row in rows.values())
    assert set(state["seeds"]) == {"0", "1"}
    assert len(state["elapsed_parts"]) == 2 and state["elapsed_s"] == pytest.approx(sum(
        state["elapsed_parts"].values()))
    assert not list(out.rglob(".claim"))


def test_grid_units_run_on_every_rank_and_only_rank_0_writes(tmp_path):
    """The study engine (reproduce, the demo, the studies) caches units through one store: under torchrun each unit
    is computed by all ranks together, written once by rank 0, and both ranks see the same results."""
    script = str(ROOT / "tests" / "dist_grid_script.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script,
           str(tmp_path / "g")]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads((tmp_path / f"g.rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(r["rank"] for r in lines) == [0, 1]
    assert lines[0]["counts"] == lines[1]["counts"] and lines[0]["sweep"] == lines[1]["sweep"]
    units = sorted((tmp_path / "g" / "units").iterdir())
    assert len(units) == 7 and all((u / ".done").is_file() for u in units)  # 3 models (CP, sweep cp/rp), 4 evals
    assert not list((tmp_path / "g").rglob(".*.tmp"))
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)  # all cached now
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "g.rank1.json").read_text())["counts"] == lines[0]["counts"]
