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


def test_library_attacks_use_a_cached_folded_copy_by_default_and_agree_with_the_exact_path():
    import robprune as rp
    from robprune.models.folding import cached_attack_model

    torch.manual_seed(0)
    model = _with_bn_statistics(create_model("resnet20")).eval()
    x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
    y = model(x).argmax(1)  # every image starts correct, so the attack has something to do
    eps = 32 / 255
    fast = rp.pgd(model, x, y, eps, 5)
    exact = rp.pgd(model, x, y, eps, 5, exact_model=True)
    with torch.no_grad():
        acc_fast = (model(fast).argmax(1) == y).float().mean()
        acc_exact = (model(exact).argmax(1) == y).float().mean()
    assert acc_exact < 0.9  # the attack works
    assert abs(float(acc_fast - acc_exact)) <= 2 / 64  # float-order differences may flip a point or two
    assert (fast - x).abs().max() <= eps + 1e-6  # inside the ball
    for name in ("apgd-ce", "fgsm"):
        a = rp.run_attack(name, model, x, y, eps, budget=5)
        b = rp.run_attack(name, model, x, y, eps, budget=5, exact_model=True)
        with torch.no_grad():
            assert abs(float((model(a).argmax(1) == y).float().mean() - (model(b).argmax(1) == y).float().mean())) \
                <= 2 / 64
    copy = cached_attack_model(model)
    assert cached_attack_model(model) is copy  # a loop of calls folds once
    assert model.training is False and all(p.requires_grad for p in model.parameters())  # the model is untouched


@pytest.mark.parametrize("change", ["no_grad", "data", "load_state_dict", "buffer"])
def test_a_weight_change_invalidates_the_cached_copy(change):
    from robprune.models.folding import cached_attack_model

    torch.manual_seed(0)
    model = _with_bn_statistics(create_model("resnet20")).eval()
    x = torch.rand(4, 3, 32, 32)
    before = cached_attack_model(model)
    if change == "no_grad":
        with torch.no_grad():
            model.conv1.weight.mul_(0.5)
    elif change == "data":
        model.linear.weight.data[0, 0] += 1.0
    elif change == "load_state_dict":
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state["linear.bias"] += 0.25
        model.load_state_dict(state)
    else:
        model.bn1.running_mean.data += 0.5
    after = cached_attack_model(model)
    assert after is not before
    with torch.no_grad():
        torch.testing.assert_close(after(x), model(x), rtol=1e-4, atol=1e-4)
