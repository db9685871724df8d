"""Channel pruning: channels are really removed, consistently, by the named criterion, and survive checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robprune import create_model
from robprune.checkpoint import load_checkpoint, save_checkpoint
from robprune.export import export_model, import_model
from robprune.models import PadShortcut
from robprune.models.folding import fold_batchnorm
from robprune.pruning import CHANNEL_CRITERIA, apply_masks, compute_masks, count_macs, prune_channels
from robprune.pruning import channels as channels_module

ARCHS = {"resnet20": {}, "resnet18": {}, "vgg16_bn": {}, "wrn_28_4": {}, "small_cnn": {}}


def _randomised(arch: str, kwargs: dict) -> nn.Module:
    """A model with non-trivial BatchNorm statistics, so a wrong channel shows in the logits."""
    torch.manual_seed(0)
    model = create_model(arch, **kwargs)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.2, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


def _outputs_zeroed(model: nn.Module, removed: dict, x: torch.Tensor) -> torch.Tensor:
    """The original network with the removed channels' activations set to zero where they are produced: every
    BatchNorm, conv, linear and option-A shortcut output channel the pruning removed is zeroed."""
    def zero(idxs):
        def hook(module, inputs, output):
            output = output.clone()
            output[:, idxs] = 0
            return output
        return hook

    hooks = []
    for name, sides in removed.items():
        if sides.get("out"):
            hooks.append(model.get_submodule(name).register_forward_hook(zero(sides["out"])))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("arch", list(ARCHS))
def test_slim_network_equals_original_with_removed_channels_zeroed(arch):
    model = _randomised(arch, ARCHS[arch])
    channels = 1 if arch == "small_cnn" else 3
    x = torch.rand(4, channels, 32, 32, generator=torch.Generator().manual_seed(1))
    before = sum(p.numel() for p in model.parameters())
    slim, _, record = prune_channels(model, "l1", 0.5, x[:2])
    after = sum(p.numel() for p in slim.parameters())
    assert after < 0.3 * before  # half the channels of both sides of most layers: about a quarter of the weights
    assert sum(p.numel() for p in model.parameters()) == before  # the original is untouched
    with torch.no_grad():
        got = slim(x)
    expected = _outputs_zeroed(model, record.removed, x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, float(expected.abs().max())))
    # every coupled group lost round(0.5 * channels)
    assert all(g["removed"] == round(0.5 * g["channels"]) for g in record.groups)
    macs_dense, _ = count_macs(model, x[:1])
    macs_slim, params = count_macs(slim, x[:1])
    assert params == after and macs_slim < 0.3 * macs_dense


def test_option_a_shortcut_is_pruned_through_its_slots():
    model = _randomised("resnet20", {})
    slim, _, record = prune_channels(model, "l1", 0.5, torch.rand(2, 3, 32, 32))
    shortcut = slim.layer2[0].shortcut
    assert isinstance(shortcut, PadShortcut) and shortcut.slots is not None
    slots, out = shortcut.layout()
    assert len(slots) == slim.layer1[-1].bn2.num_features and out == slim.layer2[0].bn2.num_features
    assert slim.linear.in_features == slim.layer3[-1].bn2.num_features == 32
    folded = fold_batchnorm(slim)  # the slim shortcut stays traceable by torch.fx: attacks get the folded copy
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(folded(x), slim(x), rtol=1e-4, atol=1e-4)


def test_a_wrong_removal_is_caught_by_the_equivalence_check(monkeypatch):
    """If the shortcut pruner dropped the wrong input slots, the slim network computes something else: refused."""
    original = channels_module._PadShortcutPruner.prune_in_channels

    def off_by_one(self, layer, idxs):
        return original(self, layer, [(i + 1) % len(layer.layout()[0]) for i in idxs])

    monkeypatch.setattr(channels_module._PadShortcutPruner, "prune_in_channels", off_by_one)
    with pytest.raises(ValueError, match="mis-tracked"):
        prune_channels(_randomised("resnet20", {}), "l1", 0.5, torch.rand(2, 3, 32, 32))


def _plain_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    return net.eval()


@pytest.mark.parametrize("criterion, expect", [("l1", [0, 1, 2, 3]), ("reverse", [4, 5, 6, 7]),
                                               ("bn_scale", [4, 5, 6, 7])])
def test_each_criterion_removes_the_channels_it_should(criterion, expect):
    net = _plain_net()
    with torch.no_grad():
        scale = torch.arange(1, 9, dtype=torch.float32)  # filter norms grow with the index
        net[0].weight.mul_(0).add_(scale.view(8, 1, 1, 1))
        net[1].weight.copy_(9 - scale)  # BN scales shrink with it
    _, _, record = prune_channels(net, criterion, 0.5, torch.rand(2, 3, 8, 8))
    assert record.removed["0"]["out"] == expect
    assert record.removed["1"]["out"] == expect and record.removed["3"]["in"] == expect


def test_global_scope_removes_the_total_where_normalised_scores_are_lowest():
    """Two coupled groups (8 and 4 channels). In the first, six filters are near zero relative to the rest; in the
    second all filters are alike. Layer scope takes 50% of each (4 and 2); global scope takes the same total (6
    of 12) where the normalised scores are lowest, all six from the first group, and never a group's last
    channel."""
    net = _plain_net()
    with torch.no_grad():
        net[0].weight.copy_(torch.ones_like(net[0].weight) * torch.tensor([1e-3] * 6 + [1.0] * 2).view(8, 1, 1, 1))
        net[3].weight.copy_(torch.ones_like(net[3].weight) * torch.tensor([1.0, 1.01, 1.02, 1.03]).view(4, 1, 1, 1))
    x = torch.rand(2, 3, 8, 8)
    _, _, layer = prune_channels(net, "l1", 0.5, x)
    assert {g["root"]: g["removed"] for g in layer.groups} == {"0": 4, "3": 2}
    _, _, glob = prune_channels(net, "l1", 0.5, x, scope="global")
    assert [(g["root"], g["removed"]) for g in glob.groups] == [("0", 6)]
    assert glob.removed["0"]["out"] == [0, 1, 2, 3, 4, 5] and "out" not in glob.removed.get("3", {})
    _, _, most = prune_channels(net, "l1", 0.9, x, scope="global")  # 11 of 12 asked; every group keeps one
    assert {g["root"]: g["removed"] for g in most.groups} == {"0": 7, "3": 3}
    with pytest.raises(ValueError, match="scope"):
        prune_channels(net, "l1", 0.5, x, scope="per-group")


def test_random_criterion_follows_the_seed():
    runs = [prune_channels(_plain_net(), "random", 0.5, torch.rand(2, 3, 8, 8), seed=s)[2].removed["0"]["out"]
            for s in (0, 0, 1, 2, 3)]
    assert runs[0] == runs[1] and any(r != runs[0] for r in runs[2:])
    assert set(CHANNEL_CRITERIA.names()) >= {"l1", "reverse", "random", "bn_scale"}


def test_removing_every_channel_or_untraceable_models_are_refused_unchanged():
    net = _plain_net()
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(ValueError, match="with none of its 4"):
        prune_channels(net, "l1", 0.9, torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune_channels(net, "l1", 1.0, torch.rand(2, 3, 8, 8))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))

    class Mixer(nn.Module):  # mixes channels outside any module: Torch-Pruning cannot see it
        def __init__(self, constant: bool):
            super().__init__()
            self.a, self.b, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 2)
            self.constant = constant

        def forward(self, x):
            h = self.a(x)
            mixed = h.flip(1) * torch.arange(8.0).view(1, 8, 1, 1) if self.constant else h.flip(1)
            return self.fc((self.b(h) + mixed).mean((2, 3)))

    with pytest.raises(ValueError, match="inconsistent after module 'a'"):  # the slim model does not even run
        prune_channels(Mixer(constant=True), "l1", 0.5, torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="mis-tracked"):  # it runs but computes something else
        prune_channels(Mixer(constant=False), "l1", 0.5, torch.rand(2, 3, 8, 8))


def test_slim_checkpoint_round_trips_with_masks_and_exports(tmp_path):
    model = _randomised("resnet20", {})
    masks = compute_masks(model, "cp", 0.5)
    apply_masks(model, masks)
    x = torch.rand(3, 3, 32, 32)
    slim, slim_masks, _ = prune_channels(model, "l1", 0.5, x, masks=masks)
    for name, mask in slim_masks.items():  # the carried masks still mark exactly the zero weights of the slim model
        assert torch.equal(mask, slim.get_parameter(name).detach() != 0)
    path = save_checkpoint(tmp_path / "slim.safetensors", slim, slim_masks, {"note": "slim"})
    loaded, loaded_masks, meta = load_checkpoint(path)
    assert meta["structure"]["channels"] and set(loaded_masks) == set(slim_masks)
    assert torch.equal(loaded.eval()(x), slim(x))
    with pytest.raises(ValueError, match="not resnet56"):
        load_checkpoint(path, expect_arch="resnet56")
    export_model(loaded, loaded_masks, meta, "torch", tmp_path / "slim.pt")
    payload = torch.load(tmp_path / "slim.pt", weights_only=True)
    assert payload["structure"] == meta["structure"]
    back, _ = import_model(tmp_path / "slim.pt", "resnet20", "torch")
    torch.testing.assert_close(back.eval()(x), slim(x))
    # pruned again: the slots of the slim shortcut are rewritten, the result loads again
    slimmer, _, _ = prune_channels(loaded, "l1", 0.5, x)
    again, _, _ = load_checkpoint(save_checkpoint(tmp_path / "slimmer.safetensors", slimmer))
    assert torch.equal(again.eval()(x), slimmer(x))


@pytest.mark.slow
def test_cli_prune_train_eval_a_slim_model(tmp_path, capsys):
    from robprune.cli import main

    torch.manual_seed(0)
    dense = create_model("resnet20", in_channels=1, mean=(0.3,), std=(0.4,))
    base = save_checkpoint(tmp_path / "base.safetensors", dense, None, {"data": "digits"})
    assert main(["prune", str(base), "--structure", "channel", "--method", "l1", "--amount", "0.5",
                 "--out", str(tmp_path / "ch50")]) == 0
    assert "| parameters |" in capsys.readouterr().out
    sizes = __import__("json").loads((tmp_path / "ch50" / "channels.json").read_text())
    assert sizes["params"][1] < 0.3 * sizes["params"][0] and sizes["input_size"] == [1, 8, 8]
    slim = tmp_path / "ch50" / "model.safetensors"
    assert main(["train", "--data", "digits", "--init", str(slim), "--epochs", "1", "--n-train", "256",
                 "--lam", "0.01", "--out", str(tmp_path / "ft")]) == 0
    tuned, _, _ = load_checkpoint(tmp_path / "ft" / "model.safetensors")
    assert sum(p.numel() for p in tuned.parameters()) == sizes["params"][1]
    # train --structure channel prunes first, then trains the slim model
    assert main(["train", "--data", "digits", "--init", str(base), "--structure", "channel", "--method",
                 "bn_scale", "--amount", "0.75", "--epochs", "1", "--n-train", "256", "--out",
                 str(tmp_path / "t75")]) == 0
    t75, _, meta = load_checkpoint(tmp_path / "t75" / "model.safetensors")
    assert meta["channel_pruning"][0]["method"] == "bn_scale"
    assert sum(p.numel() for p in t75.parameters()) == meta["channel_pruning"][0]["params"][1]
    # --scope global: the same total, spread unevenly over the groups
    assert main(["prune", str(base), "--structure", "channel", "--method", "l1", "--amount", "0.5", "--scope",
                 "global", "--out", str(tmp_path / "g50")]) == 0
    groups = __import__("json").loads((tmp_path / "g50" / "channels.json").read_text())["groups"]
    assert sum(g["removed"] for g in groups) == round(0.5 * sum(g["channels"] for g in sizes["groups"]))
    assert len({round(g["removed"] / g["channels"], 2) for g in groups}) > 1
    assert load_checkpoint(tmp_path / "g50" / "model.safetensors")[2]["channel_pruning"][0]["scope"] == "global"
    # bad input: one line, exit 2, nothing written
    for argv, message in ((["--amount", "0.99"], "with none of its"), (["--arch", "resnet56"], "not resnet56"),
                          (["--method", "cp"], "unknown channel criterion"), (["--scope", "all"], "unknown channel "
                                                                                                  "pruning scope")):
        args = ["prune", str(base), "--structure", "channel", "--method", "l1", "--amount", "0.5",
                "--out", str(tmp_path / "bad")]
        for flag, value in zip(argv[::2], argv[1::2]):
            if flag in args:
                args[args.index(flag) + 1] = value
            else:
                args += [flag, value]
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        assert not (tmp_path / "bad" / "model.safetensors").exists()


def _recalibrated_accuracy(model: nn.Module, data) -> float:
    """Accuracy after re-estimating BatchNorm statistics on the training images (no weight changes): a slim
    network's old running statistics describe the dense one."""
    import copy

    from robprune.evaluation import predict

    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(data.x_train), 256):
            model(data.x_train[i:i + 256].float() / 255)
    return float((predict(model.eval(), data.x_test) == data.y_test).float().mean())


@pytest.mark.slow
def test_learned_channel_scores_beat_their_l1_start_and_leave_the_model_unchanged(tmp_path):
    """HYDRA at channel level: scores start from the L1 filter norms and are trained under the objective with the
    weights frozen (measured on this setup: 17% for L1, 71% for the learned channels at 50%, both before any
    fine-tuning). A score update that never reaches the mask leaves the L1 choice and fails this."""
    import robprune as rp
    from robprune.learned.hydra_channels import learn_channel_scores

    data = rp.load_dataset("digits")
    torch.manual_seed(0)
    mean, std = data.channel_stats()
    model = rp.create_model("resnet20", in_channels=1, mean=mean, std=std)
    rp.train(model, data, rp.TrainConfig(epochs=4, batch_size=64, lr=0.05))
    x = data.x_test[:2].float() / 255
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores, history = learn_channel_scores(model, data, rp.TrainConfig(epochs=3, batch_size=64, lr=0.1), 0.5, x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters()) and len(history) == 3
    learned, _, record = prune_channels(model, "l1", 0.5, x, scores=scores)
    assert set(scores) == {g["root"] for g in record.groups}
    assert all(g["removed"] == round(0.5 * g["channels"]) for g in record.groups)
    l1, _, _ = prune_channels(model, "l1", 0.5, x)
    assert _recalibrated_accuracy(learned, data) > _recalibrated_accuracy(l1, data) + 0.2
    # from the CLI: prune --structure channel --method hydra --data ...
    from robprune.cli import main

    base = save_checkpoint(tmp_path / "base.safetensors", model, None, {"data": "digits"})
    assert main(["prune", str(base), "--structure", "channel", "--method", "hydra", "--amount", "0.5", "--data",
                 "digits", "--epochs", "1", "--batch-size", "64", "--out", str(tmp_path / "hydra50")]) == 0
    _, _, meta = load_checkpoint(tmp_path / "hydra50" / "model.safetensors")
    assert meta["channel_pruning"][0]["method"] == "hydra" and len(meta["channel_pruning"][0]["score_learning"]) == 1


@pytest.mark.parametrize("structure", [{"channels": True, "shortcuts": {"layer2.0.shortcut": {"slots": "x"}}},
                                       {"channels": True, "shortcuts": {"linear": {"slots": [0], "out_channels": 1}}},
                                       {"channels": True, "shortcuts": {"layer2.0.shortcut": {"slots": [99],
                                                                                             "out_channels": 4}}},
                                       {"channels": True, "shortcuts": ["not", "a", "mapping"]}])
def test_a_damaged_channel_structure_is_one_clear_error(tmp_path, structure):
    import json

    import safetensors.torch

    slim, _, _ = prune_channels(_randomised("resnet20", {}), "l1", 0.5, torch.rand(2, 3, 32, 32))
    path = save_checkpoint(tmp_path / "slim.safetensors", slim)
    tensors = safetensors.torch.load_file(path)
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["robprune"])
    meta["structure"] = structure
    safetensors.torch.save_file(tensors, tmp_path / "bad.safetensors", metadata={"robprune": json.dumps(meta)})
    with pytest.raises(ValueError, match="structure|slots"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_channel_score_learning_stopped_after_an_epoch_resumes_bit_exactly(tmp_path):
    import robprune as rp
    from robprune.learned.hydra_channels import learn_channel_scores

    data = rp.load_dataset("digits")
    torch.manual_seed(0)
    mean, std = data.channel_stats()
    model = rp.create_model("resnet20", in_channels=1, mean=mean, std=std)
    x = data.x_test[:2].float() / 255
    config = rp.TrainConfig(epochs=3, batch_size=64, lr=0.1, adv="fgsm", adv_eps=16 / 255, n_train=256)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    whole, _ = learn_channel_scores(model, data, config, 0.5, x, out_dir=tmp_path / "whole")

    class Stop(Exception):
        pass

    def stop(event):
        if "epoch 2" in event.get("text", ""):
            raise Stop

    with pytest.raises(Stop):
        learn_channel_scores(model, data, config, 0.5, x, progress=stop, out_dir=tmp_path / "cut")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # restored even when stopped
    epochs = []
    resumed, history = learn_channel_scores(model, data, config, 0.5, x, out_dir=tmp_path / "cut", resume=True,
                                            progress=lambda e: epochs.append(e["text"].split(":")[0].strip()))
    assert len(history) == 3 and epochs == ["channel scores epoch 3"]  # only the epoch left was learned
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    with pytest.raises(ValueError, match="another configuration"):
        learn_channel_scores(model, data, rp.TrainConfig(epochs=3, batch_size=64, lr=0.2, n_train=256), 0.5, x,
                             out_dir=tmp_path / "cut", resume=True)
