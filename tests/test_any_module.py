"""Any nn.Module: user factories end to end through the CLI, wrap_model, graph-based BatchNorm folding,
the Eq. 3 bound on other graphs, torch.nn.utils.prune interop, and python -m robprune."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import robprune as rp
from robprune.cli import main
from robprune.evaluation import fold_batchnorm, lipschitz_bound, measured_distortion

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def test_user_model_goes_through_every_command(tmp_path, capsys):
    arch = "user_models.nets:tiny_cnn"
    base = tmp_path / "base"
    assert main(["train", "--data", "digits", "--arch", arch, "--epochs", "2", "--lr", "0.05", "--batch-size", "64",
                 "--out", str(base), "--device", "cpu"]) == 0
    ckpt = base / "model.safetensors"
    meta = rp.checkpoint.read_checkpoint(ckpt)[1]
    assert meta["arch"] == arch and meta["normalization"]["std"]  # the factory spec and its normalisation
    assert main(["prune", str(ckpt), "--arch", arch, "--method", "cp", "--amount", "0.5",
                 "--out", str(tmp_path / "cp")]) == 0
    pruned = tmp_path / "cp" / "model.safetensors"
    assert main(["eval", str(pruned), "--arch", arch, "--data", "digits", "--eps", "0,16", "--steps", "3",
                 "--n-images", "60", "--no-checks", "--out", str(tmp_path / "ev"), "--device", "cpu"]) == 0
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert ev["robust"][0]["correct"] == ev["clean"]["correct"] >= ev["robust"][1]["correct"]
    assert main(["stats", str(ckpt), str(pruned), "--arch", arch, "--out", str(tmp_path / "st")]) == 0
    st = json.loads((tmp_path / "st" / "stats.json").read_text())["stats"]
    assert st[str(pruned)]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    model, masks, _ = rp.load_checkpoint(pruned, expect_arch=arch)
    again = tmp_path / "again.safetensors"
    rp.save_checkpoint(again, model, masks)
    model2, masks2, _ = rp.load_checkpoint(again, expect_arch=arch)
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), k
    # channel pruning of the user's module: traced by Torch-Pruning, saved slim, rebuilt through the factory
    assert main(["prune", str(ckpt), "--arch", arch, "--structure", "channel", "--method", "l1", "--amount", "0.5",
                 "--out", str(tmp_path / "ch")]) == 0
    slim, _, slim_meta = rp.load_checkpoint(tmp_path / "ch" / "model.safetensors", expect_arch=arch)
    assert slim_meta["channel_pruning"][0]["params"][1] == sum(p.numel() for p in slim.parameters())
    assert sum(p.numel() for p in slim.parameters()) < 0.5 * sum(p.numel() for p in model.parameters())
    assert main(["eval", str(tmp_path / "ch" / "model.safetensors"), "--arch", arch, "--data", "digits", "--eps",
                 "16", "--steps", "2", "--n-images", "40", "--no-checks", "--out", str(tmp_path / "ev-ch")]) == 0
    # loading never imports a factory the caller did not name
    assert main(["stats", str(ckpt), "--out", str(tmp_path / "st2")]) == 2
    assert "pass --arch user_models.nets:tiny_cnn" in capsys.readouterr().err


@pytest.mark.parametrize("spec,message", [("user_models.nets:broken", "raised RuntimeError"),
                                          ("user_models.nets:not_a_module", "not a torch.nn.Module"),
                                          ("user_models.nowhere:f", "cannot import"),
                                          ("user_models.nets:missing", "has no attribute")])
def test_bad_factory_is_one_line_and_exit_2(spec, message, tmp_path, capsys):
    assert main(["train", "--data", "digits", "--arch", spec, "--epochs", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robprune: error:") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_wrap_model_normalises_its_input():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    wrapped = rp.wrap_model(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.rand(2, 3, 2, 2)
    assert torch.allclose(wrapped(x), net((x - 0.5) / 0.25))


def _with_statistics(model, shape):
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, *shape))
    return model.eval()


@pytest.mark.parametrize("factory,shape", [
    (lambda: __import__("user_models.nets", fromlist=["x"]).tiny_cnn(), (1, 8, 8)),
    (lambda: __import__("user_models.nets", fromlist=["x"]).downsample_net(), (3, 16, 16)),
    (lambda: rp.create_model("resnet20"), (3, 16, 16)),
    (lambda: rp.create_model("vgg16_bn"), (3, 32, 32)),
    (lambda: rp.create_model("preact_resnet18"), (3, 16, 16)),
])
def test_graph_folding_removes_every_conv_bn_pair_and_keeps_outputs(factory, shape):
    model = _with_statistics(factory(), shape)
    folded = fold_batchnorm(model)
    x = torch.rand(4, *shape)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-4, rtol=1e-4)
    convs_before_bn = sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    left = sum(1 for m in folded.modules() if isinstance(m, nn.BatchNorm2d))
    if factory is not None and "preact" not in str(type(model)).lower() and not hasattr(model, "preact"):
        assert left == 0 < convs_before_bn
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched


def test_untraceable_model_is_returned_unfolded():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                return self.bn(self.conv(x))
            return self.conv(x)

    model = Branchy().eval()
    folded = fold_batchnorm(model)
    assert any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 1, 5, 5)
    assert torch.allclose(model(x), folded(x))


@pytest.mark.parametrize("factory,shape", [
    (lambda: __import__("user_models.nets", fromlist=["x"]).downsample_net(), (3, 16, 16)),
    (lambda: rp.create_model("vgg16_bn"), (3, 32, 32)),
    (lambda: rp.wrap_model(__import__("user_models.nets", fromlist=["x"]).tiny_cnn(), (0.5,), (0.5,)), (1, 8, 8)),
])
def test_eq3_bound_for_other_graphs_is_above_the_measured_distortion(factory, shape):
    model = _with_statistics(factory(), shape)
    x, y = torch.rand(6, *shape), torch.randint(0, 10, (6,))
    measured = measured_distortion(model, x, y, 8 / 255)
    spectral = lipschitz_bound(model, shape, "spectral")["log10_bound"]
    l1 = lipschitz_bound(model, shape, "l1")["log10_bound"]
    assert torch.log10(torch.tensor(measured["max"])) <= spectral <= l1


def test_eq3_bound_refuses_what_it_cannot_bound():
    class Gate(nn.Module):
        def forward(self, x):
            return torch.sigmoid(x) * x  # an input-dependent product

    with pytest.raises(ValueError, match="not supported for this model"):
        lipschitz_bound(nn.Sequential(nn.Conv2d(1, 2, 3), Gate()).eval(), (1, 6, 6))


def test_torch_prune_round_trip_is_exact():
    torch.manual_seed(0)
    model = rp.create_model("small_cnn")
    masks = rp.compute_masks(model, "cp", 0.6)
    rp.apply_masks(model, masks)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    rp.to_torch_prune(model, masks)
    assert any(k.endswith("weight_mask") for k in model.state_dict())
    back = rp.from_torch_prune(model)
    assert set(back) == set(masks) and all(torch.equal(back[k], masks[k]) for k in masks)
    assert set(model.state_dict()) == set(reference)  # keys back to "weight"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())


def test_torch_global_unstructured_matches_our_global_cp():
    torch.manual_seed(0)
    model = rp.create_model("small_cnn")
    ours = rp.compute_masks(model, "cp", 0.7, "global")
    from robprune.pruning import prunable_parameters
    params = [(model.get_submodule(n.rsplit(".", 1)[0]), "weight") for n in prunable_parameters(model)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.7)
    theirs = rp.from_torch_prune(model)
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)  # random float weights: no ties


def test_python_dash_m_behaves_like_the_command(tmp_path):
    src = TESTS.parent / "src"
    run = subprocess.run([sys.executable, "-m", "robprune", "stats", "nope.safetensors", "--out",
                          str(tmp_path / "o")], capture_output=True, text=True,
                         env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 2 and run.stderr.startswith("robprune: error: checkpoint nope.safetensors")
    helped = subprocess.run([sys.executable, "-m", "robprune", "train", "--help"], capture_output=True, text=True,
                            env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "COLUMNS": "250"})
    assert helped.returncode == 0 and "(default: 0.1 from scratch, 0.01 with --init)" in helped.stdout
    assert "--adv-eps" in helped.stdout and "(default: 8/255)" in helped.stdout


def test_abbreviated_flags_are_refused(tmp_path, capsys):
    assert main(["eval", "x.safetensors", "--data", "digits", "--n-image", "5", "--out", str(tmp_path / "o")]) == 2
    assert "unrecognized arguments: --n-image" in capsys.readouterr().err
