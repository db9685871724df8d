"""``import --format robustbench``: state dicts in RobustBench's layouts give the same logits in robprune.

The reference networks below are written here from RobustBench's architecture
definitions (TRADES' WideResNet with ``block.layer`` Sequentials and an unused
``sub_block1``, PreActResNet with PreActBlockV2 and a BN before the classifier,
kuangliu's ResNet-18), with mu/sigma buffers where RobustBench entries have them,
random weights and random BatchNorm statistics.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robprune.checkpoint import load_checkpoint
from robprune.cli import main
from robprune.export import import_model


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


class _WRNBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(cout), nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        pre = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(pre))))
        return out + (x if self.equal else self.convShortcut(pre))


class _Network(nn.Module):
    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.layer = nn.Sequential(*[_WRNBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class RobustBenchWRN(nn.Module):
    def __init__(self, depth, widen, sub_block1=True, bias_last=True, normalise=True):
        super().__init__()
        n, w = (depth - 4) // 6, (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(3, w[0], 3, 1, 1, bias=False)
        self.block1 = _Network(n, w[0], w[1], 1)
        if sub_block1:
            self.sub_block1 = _Network(n, w[0], w[1], 1)
        self.block2, self.block3 = _Network(n, w[1], w[2], 2), _Network(n, w[2], w[3], 2)
        self.bn1, self.relu = nn.BatchNorm2d(w[3]), nn.ReLU()
        self.fc = nn.Linear(w[3], 10, bias=bias_last)
        self.normalise = normalise
        if normalise:
            self.register_buffer("mu", torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1))
            self.register_buffer("sigma", torch.tensor([0.2471, 0.2435, 0.2616]).view(1, 3, 1, 1))

    def forward(self, x):
        if self.normalise:
            x = (x - self.mu) / self.sigma
        out = self.relu(self.bn1(self.block3(self.block2(self.block1(self.conv1(x))))))
        return self.fc(F.avg_pool2d(out, 8).flatten(1))


class _PreActV2(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + shortcut


class RobustBenchPreAct18(nn.Module):
    def __init__(self, bn_before_fc=True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        layers, cin = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(_PreActV2(cin, planes, stride), _PreActV2(planes, planes, 1)))
            cin = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        if bn_before_fc:
            self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, 10)
        self.register_buffer("mu", torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1))
        self.register_buffer("sigma", torch.tensor([0.2471, 0.2435, 0.2616]).view(1, 3, 1, 1))

    def forward(self, x):
        out = self.conv1((x - self.mu) / self.sigma)
        out = F.relu(self.bn(self.layer4(self.layer3(self.layer2(self.layer1(out))))))
        return self.linear(F.avg_pool2d(out, 4).flatten(1))


def _save(model, path, wrap=True):
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state} if wrap else state, path)
    return path


@pytest.mark.parametrize("reference,arch", [
    (lambda: RobustBenchWRN(28, 4), "wrn_28_4"),
    (lambda: RobustBenchWRN(28, 4, sub_block1=False, bias_last=False, normalise=False), "wrn_28_4"),
    (RobustBenchPreAct18, "preact_resnet18"),
])
def test_robustbench_files_give_the_reference_logits(reference, arch, tmp_path):
    torch.manual_seed(0)
    ref = _randomise(reference(), 1)
    path = _save(ref, tmp_path / "entry.pt", wrap=arch != "preact_resnet18")
    x = torch.rand(4, 3, 32, 32)
    model, masks = import_model(path, arch, "robustbench")
    with torch.no_grad():
        expected, got = ref(x), model.eval()(x)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (got - expected).abs().max()
    assert masks is None


def test_resnet18_files_are_kuangliu_keys_and_cli_writes_a_checkpoint(tmp_path, capsys):
    from robprune import create_model

    ref = _randomise(create_model("resnet18", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)), 2)
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("normalize.")}
    torch.save({"state_dict": state}, tmp_path / "r18.pt")
    out = tmp_path / "r18.safetensors"
    assert main(["import", str(tmp_path / "r18.pt"), "--arch", "resnet18", "--format", "robustbench",
                 "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--out", str(out)]) == 0
    assert "mean (0.5, 0.5, 0.5)" in capsys.readouterr().out
    model, _, meta = load_checkpoint(out)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), ref(x), atol=1e-4)
    assert meta["import_format"] == "robustbench"
    # without --mean/--std a file with no mu/sigma is taken as unnormalised, and the command says so
    assert main(["import", str(tmp_path / "r18.pt"), "--arch", "resnet18", "--format", "robustbench",
                 "--out", str(tmp_path / "plain.safetensors")]) == 0
    assert "mean (0, 0, 0) and std (1, 1, 1)" in capsys.readouterr().out


@pytest.mark.parametrize("make,arch,message", [
    (lambda: RobustBenchPreAct18(bn_before_fc=False), "preact_resnet18", "no BatchNorm before its classifier"),
    (lambda: RobustBenchWRN(28, 4), "wrn_28_10", "does not fit wrn_28_10"),
    (lambda: RobustBenchWRN(28, 4), "resnet20", "maps wrn_28_4"),
])
def test_files_that_are_not_the_architecture_are_refused_in_one_line(make, arch, message, tmp_path, capsys):
    path = _save(make(), tmp_path / "f.pt")
    assert main(["import", str(path), "--arch", arch, "--format", "robustbench",
                 "--out", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o.safetensors").exists()


def test_mean_and_std_only_where_the_file_does_not_carry_them(tmp_path, capsys):
    path = _save(RobustBenchWRN(28, 4), tmp_path / "f.pt")
    assert main(["import", str(path), "--arch", "wrn_28_4", "--format", "apb", "--mean", "0.5",
                 "--std", "0.5", "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "carries its normalisation" in capsys.readouterr().err
    assert main(["import", str(path), "--arch", "wrn_28_4", "--format", "robustbench", "--mean", "0.5,0.5,0.5",
                 "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "both mean and std" in capsys.readouterr().err
