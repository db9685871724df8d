"""Regression tests for what a new user and a probe tripped over: each failed on the code before its fix."""

from __future__ import annotations

import json

import pytest
import torch

import robprune as rp
from robprune.cli import main
from robprune.cli.common import Progress


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("defects") / "m"
    assert main(["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "1", "--out", str(out)]) == 0
    return out / "model.safetensors"


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_export_never_writes_over_its_input_or_an_existing_file(trained, tmp_path, capsys):
    before = trained.read_bytes()
    code, err = _run(["export", trained, "--format", "torch", "--out", trained], capsys)
    assert code == 2 and "is the input file itself" in err
    assert trained.read_bytes() == before  # the checkpoint is intact and still loads
    rp.load_checkpoint(trained)
    out = tmp_path / "plain.pt"
    assert _run(["export", trained, "--format", "torch", "--out", out], capsys)[0] == 0
    first = out.read_bytes()
    code, err = _run(["export", trained, "--format", "torch", "--out", out], capsys)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == first
    assert _run(["export", trained, "--format", "torch", "--out", out, "--overwrite"], capsys)[0] == 0


def test_export_leaves_other_folders_temporaries_alone(trained, tmp_path, capsys):
    other = tmp_path / "study" / "units"
    other.mkdir(parents=True)
    theirs = other / ".results.json.abc.tmp"  # another process's write in flight
    theirs.write_text("{}")
    mine = tmp_path / ".plain.pt.xyz.tmp"  # this file's own leftover from a killed export
    mine.write_text("x")
    assert _run(["export", trained, "--format", "torch", "--out", tmp_path / "plain.pt"], capsys)[0] == 0
    assert theirs.exists() and not mine.exists()


@pytest.mark.parametrize("command", ["eval", "stats"])
def test_eval_and_stats_keep_an_earlier_result_without_overwrite(trained, tmp_path, capsys, command):
    out = tmp_path / "e"
    extra = ["--data", "digits", "--eps", "8", "--n-images", "20", "--no-checks"] if command == "eval" else []
    assert _run([command, trained, *extra, "--out", out], capsys)[0] == 0
    written = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for again in ("eval", "stats"):
        more = ["--data", "digits", "--eps", "8", "--n-images", "20", "--no-checks"] if again == "eval" else []
        code, err = _run([again, trained, *more, "--out", out], capsys)
        assert code == 2 and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == written
    assert _run([command, trained, *extra, "--out", out, "--overwrite"], capsys)[0] == 0


def test_a_train_run_that_stopped_before_saving_anything_is_run_again(tmp_path, capsys):
    out = tmp_path / "t"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"command": "train"}))  # what a run killed in epoch 1 leaves
    code, err = _run(["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "1", "--out", out], capsys)
    assert code == 0, err
    assert (out / "model.safetensors").is_file()
    # a folder with a checkpoint is a result: the same command is refused (or continued with --resume)
    code, err = _run(["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "1", "--out", out], capsys)
    assert code == 2 and ("--resume" in err or "--overwrite" in err)


def test_eps_unit_check_runs_even_without_sanity_checks(trained, tmp_path, capsys):
    code, err = _run(["eval", trained, "--data", "digits", "--eps", "0.03", "--no-checks", "--out", tmp_path / "a"],
                     capsys)
    assert code == 2 and "--eps-unit fraction" in err and not (tmp_path / "a").exists()
    # written with its unit it is taken as meant; a fraction is labelled in the same unit as every other table
    assert _run(["eval", trained, "--data", "digits", "--eps", "0.03/255", "--n-images", "20", "--no-checks",
                 "--out", tmp_path / "b"], capsys)[0] == 0
    assert _run(["eval", trained, "--data", "digits", "--eps", "0.031", "--eps-unit", "fraction", "--n-images", "20",
                 "--no-checks", "--out", tmp_path / "c"], capsys)[0] == 0
    table = (tmp_path / "c" / "eval.md").read_text()
    assert "7.905/255" in table and "eps=0.031" not in table


def test_progress_without_a_terminal_writes_lines_not_frames(capsys):
    progress = Progress(live=False)
    for epoch in (1, 2):
        for step in range(1, 51):
            progress({"kind": "step", "epoch": epoch, "epochs": 2, "step": step, "steps": 50, "loss": 1.0,
                      "images": 64})
        progress({"kind": "epoch", "epoch": epoch, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.5,
                  "sparsity": 0.0, "images_per_s": 1000.0})
    for done in range(0, 101, 10):
        progress({"kind": "eval", "name": "m", "done": done, "total": 100})
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.count("\n") == 3 and "epoch 2:" in err and "attack m: 100 done" in err



def test_pruning_a_pruned_checkpoint_keeps_its_zeros_and_refuses_a_smaller_total(trained, tmp_path, capsys):
    cp = tmp_path / "cp90"
    assert _run(["prune", trained, "--method", "cp", "--amount", "0.9", "--out", cp], capsys)[0] == 0
    code, err = _run(["prune", cp / "model.safetensors", "--method", "rp", "--amount", "0.1", "--out",
                      tmp_path / "rp"], capsys)
    assert code == 2 and "at least 0.9000" in err and not (tmp_path / "rp").exists()
    assert _run(["prune", cp / "model.safetensors", "--method", "rp", "--amount", "0.91", "--out",
                 tmp_path / "rp2"], capsys)[0] == 0
    _, old, _ = rp.load_checkpoint(cp / "model.safetensors")
    _, new, _ = rp.load_checkpoint(tmp_path / "rp2" / "model.safetensors")
    for name, mask in old.items():
        assert not (new[name] & ~mask).any(), name  # nothing pruned before is unmasked
    n = sum(m.numel() for m in new.values())
    assert sum(int((~m).sum()) for m in new.values()) == round(0.91 * n)


def test_a_layer_pruned_entirely_is_warned_about(caplog):
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    with torch.no_grad():
        model[0].weight.mul_(1e-4)  # a layer of small weights: global CP takes all of it
    with caplog.at_level("WARNING"):
        masks = rp.compute_masks(model, "cp", 0.9)
    assert not masks["0.weight"].any()
    assert "removes every weight of 0.weight (108 of 108)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        rp.compute_masks(model, "cp", 0.9, scope="layer")
    assert "every weight" not in caplog.text


def test_train_says_when_its_final_model_is_at_chance(tmp_path, capsys):
    code, err = _run(["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "1", "--lr", "0.0001",
                      "--out", tmp_path / "t"], capsys)
    assert code == 0 and "WARNING: the final model is at chance" in err


class _SomeNaN(torch.nn.Module):
    """A model whose logits are NaN for every third image, with the NaN where argmax finds it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        rows = torch.arange(len(x), device=x.device) % 3 == 0
        return torch.where(rows[:, None], torch.full_like(logits, float("nan")), logits)


def test_nan_logits_count_as_wrong_and_are_named(trained, caplog):
    model, _, _ = rp.load_checkpoint(trained)
    data = rp.load_dataset("digits")
    x, y = data.x_test[:60], data.y_test[:60]
    broken = _SomeNaN(model.eval()).eval()
    with caplog.at_level("WARNING"):
        result = rp.evaluate(broken, x, y, [8 / 255], 2, batch_size=60, fast=False)
    assert result["nonfinite_logits"] == 20 and "non-finite" in caplog.text
    good = rp.evaluation.predict(model, x) == y
    assert result["clean"]["correct"] == int(good[torch.arange(60) % 3 != 0].sum())
    from robprune.evaluation import SUITES, worst_case

    suite = worst_case(broken, x, y, 8 / 255, SUITES["fast"][:1], batch_size=60)
    assert suite["clean"]["correct"] == result["clean"]["correct"]


def _user_env(monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    sys.modules.pop("user_models.argv_parser", None)


def test_user_factories_get_the_datas_channels_or_a_clear_line(tmp_path, capsys, monkeypatch):
    _user_env(monkeypatch)
    code, err = _run(["train", "--data", "digits", "--arch", "user_models.nets:channels_cnn", "--epochs", "1",
                      "--out", tmp_path / "ok"], capsys)
    assert code == 0, err
    model, _, meta = rp.load_checkpoint(tmp_path / "ok" / "model.safetensors",
                                        expect_arch="user_models.nets:channels_cnn")
    assert meta["in_channels"] == 1
    code, err = _run(["train", "--data", "digits", "--arch", "user_models.nets:rgb_only", "--epochs", "1",
                      "--out", tmp_path / "rgb"], capsys)
    assert code == 2 and "builds 3-channel inputs; the data has 1" in err


@pytest.mark.parametrize("factory", ["user_models.nets:exits", "user_models.argv_parser:net"])
def test_a_factory_that_exits_or_parses_argv_is_an_error_not_success(tmp_path, capsys, monkeypatch, factory):
    _user_env(monkeypatch)
    code, err = _run(["train", "--data", "digits", "--arch", factory, "--epochs", "1", "--out", tmp_path / "x"],
                     capsys)
    assert code == 2 and "SystemExit" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x" / "model.safetensors").exists()


def test_garbage_torchrun_environment_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "abc")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, err = _run(["stats", "nothing.safetensors"], capsys)
    assert code == 2 and "RANK='abc'" in err and "Traceback" not in err


def test_export_then_import_keeps_the_models_own_normalisation_and_refuses_nan(tmp_path, capsys):
    model = rp.create_model("resnet20", mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7)).eval()
    ckpt = rp.save_checkpoint(tmp_path / "m.safetensors", model)
    assert _run(["export", ckpt, "--format", "torch", "--out", tmp_path / "m.pt"], capsys)[0] == 0
    x = torch.rand(4, 3, 32, 32)
    for fmt in ("torch", "community"):  # community is the default a user may leave in place
        assert _run(["import", tmp_path / "m.pt", "--arch", "resnet20", "--format", fmt, "--out",
                     tmp_path / f"back-{fmt}.safetensors"], capsys)[0] == 0
        back, _, _ = rp.load_checkpoint(tmp_path / f"back-{fmt}.safetensors")
        with torch.no_grad():
            assert torch.allclose(back.eval()(x), model(x), atol=1e-6), fmt
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    first = next(k for k in payload["state_dict"] if k.endswith("conv1.weight"))
    payload["state_dict"][first][0, 0, 0, 0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    code, err = _run(["import", tmp_path / "nan.pt", "--arch", "resnet20", "--format", "torch", "--out",
                      tmp_path / "nan.safetensors"], capsys)
    assert code == 2 and "NaN" in err and not (tmp_path / "nan.safetensors").exists()


def test_checkpoint_metadata_cannot_ask_for_a_model_larger_than_the_file(tmp_path):
    """A small file whose metadata asks an architecture for absurd sizes is refused before anything is allocated
    (it drove memory past 3 GB in seconds): the model is first built on the meta device and counted."""
    import json
    import resource

    import safetensors
    import safetensors.torch

    path = rp.save_checkpoint(tmp_path / "m.safetensors", rp.create_model("small_cnn"))
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["robprune"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["num_classes"] = 100_000  # a linear head of 100,000 x 64 weights the file does not carry
    (tmp_path / "big.safetensors").write_bytes(safetensors.torch.save(tensors, metadata={"robprune": json.dumps(meta)}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="file carries"):
        rp.load_checkpoint(tmp_path / "big.safetensors")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing large allocated
    meta["num_classes"], meta["kwargs"] = 10, {"no_such_option": 3}
    (tmp_path / "kw.safetensors").write_bytes(safetensors.torch.save(tensors, metadata={"robprune": json.dumps(meta)}))
    with pytest.raises(ValueError, match="cannot be built"):
        rp.load_checkpoint(tmp_path / "kw.safetensors")


def test_eval_refuses_a_model_whose_logits_do_not_match_the_classes(tmp_path, capsys, monkeypatch):
    _user_env(monkeypatch)
    from user_models.nets import three_logits

    model = rp.create_model("user_models.nets:three_logits", in_channels=1)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3) and three_logits is not None
    ckpt = rp.save_checkpoint(tmp_path / "m.safetensors", model)
    code, err = _run(["eval", ckpt, "--arch", "user_models.nets:three_logits", "--data", "digits", "--no-checks",
                      "--eps", "none", "--out", tmp_path / "e"], capsys)
    assert code == 2 and "gives 3 logits per image; digits has 10 classes" in err


def test_eval_with_several_eps_draws_accuracy_against_eps(trained, tmp_path, capsys):
    assert _run(["eval", trained, "--data", "digits", "--eps", "8,16", "--n-images", "20", "--no-checks",
                 "--out", tmp_path / "e"], capsys)[0] == 0
    assert (tmp_path / "e" / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _run(["eval", trained, "--data", "digits", "--eps", "8", "--n-images", "20", "--no-checks",
                 "--out", tmp_path / "one"], capsys)[0] == 0
    assert not (tmp_path / "one" / "eval.png").exists()  # one eps: a table says it all


def test_arch_kwargs_build_the_model_and_are_recorded(tmp_path, capsys, monkeypatch):
    _user_env(monkeypatch)
    arch = "user_models.nets:tiny_cnn"
    code, err = _run(["train", "--data", "digits", "--arch", arch, "--arch-kwargs", '{"width": 4}', "--epochs", "1",
                      "--out", tmp_path / "kw"], capsys)
    assert code == 0, err
    model, _, meta = rp.load_checkpoint(tmp_path / "kw" / "model.safetensors", expect_arch=arch)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert meta["kwargs"] == {"width": 4} and first.out_channels == 4
    for bad, message in (('[1]', "JSON object"), ('{"num_classes": 3}', "come from the data"), ("{", "not JSON")):
        code, err = _run(["train", "--data", "digits", "--arch", arch, "--arch-kwargs", bad, "--out",
                          tmp_path / "bad"], capsys)
        assert code == 2 and message in err and not (tmp_path / "bad").exists()
    code, err = _run(["train", "--data", "digits", "--init", tmp_path / "kw" / "model.safetensors", "--arch", arch,
                      "--arch-kwargs", '{"width": 8}', "--out", tmp_path / "bad"], capsys)
    assert code == 2 and "rebuilds its own" in err
