import pytest
import torch

from robprune import create_model, evaluate
from robprune.evaluation.fast import attack_model, fold_batchnorm


def _with_bn_statistics(model):
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(32, *((3, 16, 16) if model.conv1.in_channels == 3 else (1, 8, 8))))
    return model.eval()


@pytest.mark.parametrize("arch", ["resnet20", "small_cnn"])
def test_folding_preserves_outputs(arch):
    model = _with_bn_statistics(create_model(arch))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(8, *((3, 16, 16) if arch == "resnet20" else (1, 8, 8)))
    assert torch.allclose(model(x), folded(x), atol=1e-4, rtol=1e-4)
    assert torch.allclose(model(x), attack_model(model)(x.contiguous(memory_format=torch.channels_last)),
                          atol=1e-4, rtol=1e-4)


def test_folding_refuses_a_training_model():
    with pytest.raises(ValueError, match="training mode"):
        fold_batchnorm(create_model("resnet20").train())


def test_fast_and_bf16_paths_agree_with_fp32():
    model = _with_bn_statistics(create_model("small_cnn"))
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    with torch.no_grad():
        y[:48] = model(x[:48]).argmax(1)
    eps = [4 / 255, 16 / 255]
    ref = evaluate(model, x, y, eps, steps=5, random_start=False)
    fast = evaluate(model, x, y, eps, steps=5, random_start=False, fast=True)
    bf16 = evaluate(model, x, y, eps, steps=5, random_start=False, precision="bf16")
    assert fast["clean"] == ref["clean"]
    for a, b, c in zip(ref["robust"], fast["robust"], bf16["robust"]):
        assert abs(a["correct"] - b["correct"]) <= 1
        assert abs(a["correct"] - c["correct"]) <= 4  # bf16 gradients: signs may differ on a few pixels
    assert "bf16" in bf16["attack"]["path"] and "fp32 check" in bf16["attack"]["path"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_path_agrees_with_cpu():
    model = _with_bn_statistics(create_model("resnet20"))
    x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
    cpu = evaluate(model, x, y, [2 / 255], steps=3, random_start=False)
    gpu_model = model.to("cuda")
    for precision in ("fp32", "fp16", "bf16"):
        gpu = evaluate(gpu_model, x.cuda(), y.cuda(), [2 / 255], steps=3, random_start=False, fast=True,
                       precision=precision)
        assert gpu["clean"]["correct"] == cpu["clean"]["correct"]
        assert abs(gpu["robust"][0]["correct"] - cpu["robust"][0]["correct"]) <= 3
