"""Processes sharing one unit store: each unit is computed once, independent work is divided, and a claim left by
a dead process never blocks a unit."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from robprune.experiments import sharing, store
from robprune.experiments.store import UnitBusy, UnitStore, defer_busy, deferring

pytestmark = pytest.mark.distributed

WORKER = textwrap.dedent('''
    import json, os, sys, time
    from robprune.experiments import store
    store.POLL_S = 0.1
    root, log = sys.argv[1], sys.argv[2]
    names = [f"u{i}" for i in range(8)]
    values = {}

    def step(name):
        def make(path):
            time.sleep(0.6)
            (path / "value.json").write_text(json.dumps({"name": name, "by": os.getpid()}))
            with open(log, "a") as f:
                f.write(f"{name} {os.getpid()}\\n")
            return json.loads((path / "value.json").read_text())
        values[name] = store.UnitStore(root).compute(name, {"n": name}, lambda p: json.loads(
            (p / "value.json").read_text()), make)

    store.defer_busy(names, step)
    print(json.dumps(values))
''')


def test_two_processes_divide_a_walk_and_compute_every_unit_once(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    log = tmp_path / "made.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(p) for p in sys.path if p])}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), str(log)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    made = [line.split() for line in log.read_text().splitlines()]
    assert sorted(name for name, _ in made) == [f"u{i}" for i in range(8)]  # each unit made exactly once
    assert len({pid for _, pid in made}) == 2  # and both processes made some
    for values in outs:  # every process returns every unit's value, whoever computed it
        assert {n: v["name"] for n, v in values.items()} == {f"u{i}": f"u{i}" for i in range(8)}
    assert outs[0] == outs[1]
    assert not list((tmp_path / "store").rglob(".claim"))  # claims are released


def _claim(unit_path, pid, host=None):
    unit_path.mkdir(parents=True, exist_ok=True)
    # as Unit.claim writes it: the holder's host, pid and start time
    (unit_path / ".claim").write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid,
                                                  "started": sharing.started(pid)}))


def test_a_live_claim_is_deferred_or_waited_for_and_a_dead_one_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "POLL_S", 0.05)
    s = UnitStore(tmp_path)
    made = []

    def make(path):
        made.append(path.name)
        (path / "v.txt").write_text("7")
        return 7

    def load(path):
        return int((path / "v.txt").read_text())

    # a claim by a process that is gone (same host, no such pid) is taken over
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _claim(s.unit("a", {}).path, gone.pid)
    assert s.compute("a", {}, load, make) == 7 and len(made) == 1

    # a claim by a live process: deferred inside deferring(); outside it, waited for until the process is gone
    # (killed and reaped after half a second), then taken over
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _claim(s.unit("b", {}).path, sleeper.pid)
        with deferring(), pytest.raises(UnitBusy):
            s.compute("b", {}, load, make)
        tried = []

        def step(name):
            tried.append(name)
            assert s.compute(name, {}, load, make) == 7

        threading.Timer(0.5, lambda: (sleeper.kill(), sleeper.wait())).start()
        defer_busy(["b", "c"], step)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert tried == ["b", "c", "b", "b"]  # b put off behind c, looked at again, then (all left busy) waited for
    assert [m.split("-")[0] for m in made] == ["a", "c", "b"]


def test_a_claim_from_another_host_counts_until_it_is_stale(tmp_path, monkeypatch):
    s = UnitStore(tmp_path)
    path = s.unit("x", {}).path
    _claim(path, 1, host="elsewhere")
    assert {k: v for k, v in s.unit("x", {}).claim().items() if k != "started"} == {"host": "elsewhere", "pid": 1}
    old = time.time() - store.STALE_S - 5
    os.utime(path / ".claim", (old, old))
    assert s.unit("x", {}).claim() is None  # taken over: now this process's
    assert json.loads((path / ".claim").read_text())["pid"] == os.getpid()
    s.unit("x", {}).release()
    assert not (path / ".claim").exists()


def test_a_pid_reused_by_another_process_does_not_hold_a_claim(tmp_path):
    """After a restart a claimant's pid may belong to some other process: the claim records when its process
    started, and a live pid that started at another time does not hold the unit."""
    if sharing.started(os.getpid()) is None:
        pytest.skip("no /proc here: the claim falls back to the pid alone")
    s = UnitStore(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = s.unit("r", {}).path
        path.mkdir(parents=True)
        (path / ".claim").write_text(json.dumps({"host": socket.gethostname(), "pid": other.pid,
                                                 "started": "another-boot:123"}))
        assert s.unit("r", {}).claim() is None  # taken over
        (path / ".claim").write_text(json.dumps({"host": socket.gethostname(), "pid": other.pid,
                                                 "started": sharing.started(other.pid)}))
        assert s.unit("r", {}).claim()["pid"] == other.pid  # the same process: still its
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", "null", '{"host": "x"}', '{"pid": "7"}'])
def test_a_claim_that_names_no_holder_is_no_claim(tmp_path, content):
    """Garbage, an empty file (a process died while writing it) or a claim without host and pid: taken over
    once it is older than a write takes, not honoured for STALE_S."""
    s = UnitStore(tmp_path)
    path = s.unit("g", {}).path
    path.mkdir(parents=True)
    (path / ".claim").write_text(content)
    old = time.time() - store.CLAIM_WRITE_S - 1
    os.utime(path / ".claim", (old, old))
    assert s.unit("g", {}).claim() is None
    assert json.loads((path / ".claim").read_text())["pid"] == os.getpid()


def test_a_live_pid_without_a_start_time_does_not_hold_a_claim(tmp_path):
    if sharing.started(os.getpid()) is None:
        pytest.skip("no /proc here: the claim falls back to the pid alone")
    s = UnitStore(tmp_path)
    path = s.unit("n", {}).path
    path.mkdir(parents=True)
    (path / ".claim").write_text(json.dumps({"host": socket.gethostname(), "pid": 1}))  # pid 1 is alive
    assert s.unit("n", {}).claim() is None
