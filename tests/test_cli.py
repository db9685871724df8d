import json
import struct

import pytest
import torch

from robprune.cli import main

from conftest import write_cifar_batches, write_imagefolder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small_cnn trained for one epoch on digits through the CLI."""
    out = tmp_path_factory.mktemp("cli") / "base"
    assert main(["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "2", "--lr", "0.05",
                 "--batch-size", "64", "--out", str(out), "--device", "cpu"]) == 0
    return out / "model.safetensors"


@pytest.mark.slow
def test_demo_writes_tables_and_plot(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "Table 2 analogue" in printed and "Table 1 analogue" in printed and "| RP |" in printed
    for name in ("report.md", "results.json", "demo.png", "config.json"):
        assert (tmp_path / "demo" / name).is_file()
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    rows = results["rows"]
    assert set(rows) == {"Baseline", "CP", "RP", "Ours"}
    assert rows["CP"]["stats"]["sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert rows["RP"]["stats"]["sparsity"] == pytest.approx(0.1, abs=1e-4)
    for row in rows.values():
        clean = row["eval"]["clean"]["correct"]
        assert all(r["correct"] <= clean for r in row["eval"]["robust"])
    assert rows["Baseline"]["eval"]["clean"]["accuracy"] > 0.9  # the demo trains a real model
    assert (tmp_path / "demo" / "demo.png").read_bytes()[:4] == b"\x89PNG"


def test_train_prune_eval_stats_chain(tmp_path, trained, capsys):
    assert main(["prune", str(trained), "--method", "rp", "--amount", "0.1", "--out", str(tmp_path / "rp")]) == 0
    pruned = tmp_path / "rp" / "model.safetensors"
    sparsity = json.loads((tmp_path / "rp" / "sparsity.json").read_text())
    assert sparsity["zeros"] == round(0.1 * sparsity["numel"])
    assert main(["eval", str(pruned), "--data", "digits", "--eps", "0,8,32", "--steps", "3",
                 "--n-images", "100", "--out", str(tmp_path / "ev"), "--device", "cpu"]) == 0
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert ev["n"] == 100 and ev["robust"][0]["correct"] == ev["clean"]["correct"]
    assert ev["config"]["args"]["steps"] == 3  # the resolved config sits next to the result
    assert main(["stats", str(trained), str(pruned), "--out", str(tmp_path / "st")]) == 0
    st = json.loads((tmp_path / "st" / "stats.json").read_text())["stats"]
    assert st[str(pruned)]["max_abs"] < st[str(trained)]["max_abs"]  # RP removed the largest weights
    assert "Per layer" in (tmp_path / "st" / "stats.md").read_text()
    # fine-tune the pruned model: its masks are kept
    assert main(["train", "--data", "digits", "--init", str(pruned), "--epochs", "1", "--lr", "0.01",
                 "--out", str(tmp_path / "ft"), "--device", "cpu"]) == 0
    st = json.loads((tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()[-1])
    assert st["sparsity"] == pytest.approx(sparsity["sparsity"])


def test_import_command(tmp_path):
    import torch

    from robprune import create_model
    model = create_model("resnet20")
    sd = {f"module.{k}": v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    torch.save({"state_dict": sd}, tmp_path / "c.th")
    assert main(["import", str(tmp_path / "c.th"), "--arch", "resnet20", "--out", str(tmp_path / "r.safetensors")]) == 0
    assert (tmp_path / "r.safetensors").is_file()


def test_help_shows_an_example(capsys):
    for command in ("train", "prune", "eval", "stats", "import", "demo", "reproduce"):
        assert main([command, "--help"]) == 0
        assert "example:" in capsys.readouterr().out


def _with_tensor(src, dst, key, tensor):
    import safetensors
    import safetensors.torch

    with safetensors.safe_open(str(src), "pt") as f:
        meta = f.metadata()
    tensors = safetensors.torch.load_file(src)
    tensors[key] = tensor
    safetensors.torch.save_file(tensors, dst, metadata=meta)
    return dst


def _with_meta(src, dst, **changes):
    import safetensors
    import safetensors.torch

    with safetensors.safe_open(str(src), "pt") as f:
        meta = json.loads(f.metadata()["robprune"])
    safetensors.torch.save_file(safetensors.torch.load_file(src), dst,
                                metadata={"robprune": json.dumps({**meta, **changes})})
    return dst


def _bad_inputs(tmp, trained):
    empty = tmp / "empty.safetensors"
    empty.write_bytes(b"")
    trunc = tmp / "trunc.safetensors"
    trunc.write_bytes(trained.read_bytes()[:300])
    tampered = tmp / "tampered.safetensors"
    tampered.write_bytes(struct.pack("<Q", 10**12) + trained.read_bytes()[8:])
    a_file = tmp / "afile"
    a_file.write_text("x")
    no_classes = tmp / "noclasses"
    (no_classes / "train").mkdir(parents=True)
    (no_classes / "test").mkdir(parents=True)
    cifar = write_cifar_batches(tmp / "cifar")
    folder = write_imagefolder(tmp / "if")
    unreadable = write_imagefolder(tmp / "unreadable")
    (unreadable / "test" / "cat" / "zz.png").write_bytes(b"garbage")
    mixed = write_imagefolder(tmp / "mixed")
    write_imagefolder(tmp / "big", size=12)
    (tmp / "big" / "test" / "dog" / "000.png").rename(mixed / "test" / "dog" / "zz.png")
    bad_mask = _with_tensor(trained, tmp / "badmask.safetensors", "mask.conv1.weight", torch.ones(2, dtype=torch.bool))
    classes5 = _with_meta(trained, tmp / "classes5.safetensors", num_classes=5)
    bad_cifar = write_cifar_batches(tmp / "badcifar")
    import pickle
    import numpy as np
    with open(bad_cifar / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 1000), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, f)
    ck = str(trained)
    return {
        "unknown attack": ["eval", ck, "--data", "digits", "--attack", "deepfool", "--out", str(tmp / "o36")],
        "unknown loss": ["eval", ck, "--data", "digits", "--loss", "hinge", "--out", str(tmp / "o37")],
        "unknown suite": ["eval", ck, "--data", "digits", "--suite", "ultimate", "--out", str(tmp / "o38")],
        "cifar wrong shape": ["eval", ck, "--data", f"cifar10:{bad_cifar}", "--out", str(tmp / "o39")],
        "bad precision": ["eval", ck, "--data", "digits", "--precision", "int4", "--out", str(tmp / "o40")],
        "bad sparsities": ["study", "adversarial", "--data", "digits", "--sparsities", "0.9,1", "--out",
                           str(tmp / "o41")],
        "unreadable image": ["eval", ck, "--data", f"imagefolder:{unreadable}", "--out", str(tmp / "o32")],
        "mixed image sizes": ["eval", ck, "--data", f"imagefolder:{mixed}", "--out", str(tmp / "o33")],
        "mask wrong shape": ["stats", str(bad_mask), "--out", str(tmp / "o34")],
        "other class count": ["stats", str(classes5), "--out", str(tmp / "o35")],
        "unknown arch": ["train", "--data", "digits", "--arch", "vgg99", "--out", str(tmp / "o1")],
        "unknown method": ["prune", ck, "--method", "magic", "--amount", "0.5", "--out", str(tmp / "o2")],
        "unknown scope": ["prune", ck, "--method", "cp", "--amount", "0.5", "--scope", "row", "--out", str(tmp / "o3")],
        "unknown dataset": ["eval", ck, "--data", "mnist", "--out", str(tmp / "o4")],
        "amount negative": ["prune", ck, "--method", "cp", "--amount", "-0.1", "--out", str(tmp / "o5")],
        "amount one": ["prune", ck, "--method", "cp", "--amount", "1", "--out", str(tmp / "o6")],
        "amount text": ["prune", ck, "--method", "cp", "--amount", "half", "--out", str(tmp / "o7")],
        "negative eps": ["eval", ck, "--data", "digits", "--eps", "-1", "--out", str(tmp / "o8")],
        "text eps": ["eval", ck, "--data", "digits", "--eps", "big", "--out", str(tmp / "o9")],
        "zero steps": ["eval", ck, "--data", "digits", "--steps", "0", "--out", str(tmp / "o10")],
        "zero epochs": ["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "0", "--out", str(tmp / "o11")],
        "negative batch": ["train", "--data", "digits", "--arch", "small_cnn", "--batch-size", "-4",
                           "--out", str(tmp / "o12")],
        "missing checkpoint": ["eval", str(tmp / "nope.safetensors"), "--data", "digits", "--out", str(tmp / "o13")],
        "empty checkpoint": ["stats", str(empty), "--out", str(tmp / "o14")],
        "truncated checkpoint": ["stats", str(trunc), "--out", str(tmp / "o15")],
        "tampered header": ["stats", str(tampered), "--out", str(tmp / "o16")],
        "arch mismatch": ["train", "--data", "digits", "--init", ck, "--arch", "resnet20", "--out", str(tmp / "o17")],
        "class/channel mismatch": ["eval", ck, "--data", f"imagefolder:{folder}", "--out", str(tmp / "o18")],
        "no classes": ["eval", ck, "--data", f"imagefolder:{no_classes}", "--out", str(tmp / "o19")],
        "cifar missing": ["eval", ck, "--data", f"cifar10:{tmp / 'nowhere'}", "--out", str(tmp / "o20")],
        "cifar channel mismatch": ["eval", ck, "--data", f"cifar10:{cifar}", "--out", str(tmp / "o21")],
        "out is a file": ["eval", ck, "--data", "digits", "--n-images", "5", "--out", str(a_file)],
        "bad tau": ["train", "--data", "digits", "--arch", "small_cnn", "--tau", "qx", "--out", str(tmp / "o23")],
        "bad schedule": ["train", "--data", "digits", "--arch", "small_cnn", "--schedule", "zigzag",
                         "--out", str(tmp / "o24")],
        "bad p": ["train", "--data", "digits", "--arch", "small_cnn", "--p", "3", "--out", str(tmp / "o25")],
        "no arch no init": ["train", "--data", "digits", "--out", str(tmp / "o26")],
        "import unknown arch": ["import", ck, "--arch", "vgg", "--out", str(tmp / "o27.safetensors")],
        "import not a pickle": ["import", str(a_file), "--arch", "resnet20", "--out", str(tmp / "o28.safetensors")],
        "unknown command": ["explode"],
        "cuda absent": ["eval", ck, "--data", "digits", "--device", "cuda:7", "--out", str(tmp / "o30")],
        "reproduce missing init": ["reproduce", "--data", "digits", "--init", str(tmp / "no.th"),
                                   "--out", str(tmp / "o31")],
    }




@pytest.fixture(scope="module")
def bad_cases(tmp_path_factory, trained):
    return _bad_inputs(tmp_path_factory.mktemp("bad"), trained)


@pytest.mark.parametrize("case", [
    "unknown arch", "unknown method", "unknown scope", "unknown dataset", "amount negative", "amount one",
    "amount text", "negative eps", "text eps", "zero steps", "zero epochs", "negative batch", "missing checkpoint",
    "empty checkpoint", "truncated checkpoint", "tampered header", "arch mismatch", "class/channel mismatch",
    "no classes", "cifar missing", "cifar channel mismatch", "out is a file", "bad tau", "bad schedule", "bad p",
    "no arch no init", "import unknown arch", "import not a pickle", "unknown command", "cuda absent",
    "reproduce missing init", "unreadable image", "mixed image sizes", "mask wrong shape", "other class count",
    "unknown attack", "unknown loss", "unknown suite", "cifar wrong shape", "bad precision",
    "bad sparsities"])
def test_bad_input_gives_one_line_and_exit_2(bad_cases, case, capsys):
    import torch

    argv = bad_cases[case]
    if case == "cuda absent" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    before = {p for p in _outputs(argv)}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robprune: error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for out in _outputs(argv):  # no partial output left behind
        assert out in before or not out.exists() or out.is_file()


def test_error_line_is_one_write(bad_cases, monkeypatch):
    """Ranks under torchrun share one stderr pipe; a line written in two pieces (print's text, then its newline,
    each passed straight through) can be split by another rank's line, as CI once saw."""
    import io
    import sys

    writes = []

    class Recorder(io.StringIO):
        def write(self, text):
            writes.append(text)
            return super().write(text)

    monkeypatch.setattr(sys, "stderr", Recorder())
    assert main(bad_cases["unknown arch"]) == 2
    errors = [w for w in writes if "robprune: error" in w]
    assert len(errors) == 1 and errors[0].endswith("\n") and errors[0].count("\n") == 1, writes


def _outputs(argv):
    from pathlib import Path
    if "--out" in argv:
        out = Path(argv[argv.index("--out") + 1])
        return [out] if out.exists() else []
    return []


def test_suite_progress_ends_exactly_at_its_total(tmp_path, trained, monkeypatch):
    import robprune.cli as cli

    events = []
    monkeypatch.setattr(cli.Progress, "__call__", lambda self, e: events.append(e))
    assert main(["eval", str(trained), "--data", "digits", "--suite", "fast", "--eps", "8,16", "--n-images", "30",
                 "--no-checks", "--out", str(tmp_path / "e")]) == 0
    bars = [e for e in events if e["kind"] == "eval"]
    assert bars[-1]["done"] == bars[-1]["total"] == 30 * 2 * 3
    assert all(e["done"] <= e["total"] for e in bars)
