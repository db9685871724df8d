"""Every registered model, attack and pruning criterion is held to the same invariants (parametrised over the
registries, so a new entry is tested by these tests without writing new ones)."""

import pytest
import torch

import robprune as rp
from robprune.attacks import ATTACKS, run_attack
from robprune.models import MODELS, Normalize, count_parameters
from robprune.pruning import compute_masks, prunable_parameters

SMALL = {"resnet20", "small_cnn", "resnet32"}  # the others are built once for counts and shapes only


@pytest.mark.parametrize("name", rp.list_models())
def test_model_shape_parameters_and_normalisation(name):
    torch.manual_seed(0)
    model = rp.create_model(name).eval()
    assert count_parameters(model) == MODELS.info(name)["params"]
    assert isinstance(model.normalize, Normalize)  # inputs in [0, 1], normalised inside the model
    channels = MODELS.info(name)["in_channels"]
    size = 8 if name == "small_cnn" else 32
    x = torch.rand(2, channels, size, size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 10)
    # normalisation lives inside: shifting the model's mean buffer changes the output
    with torch.no_grad():
        model.normalize.mean.add_(0.5)
        assert not torch.allclose(model(x), out)


@pytest.fixture(scope="module")
def digits_trained():
    from robprune.data import load_digits
    torch.manual_seed(0)
    data = load_digits()
    model = rp.create_model("small_cnn")
    rp.train(model, data, rp.TrainConfig(epochs=3, batch_size=64, lr=0.05))
    return model.eval(), data


@pytest.fixture(scope="module")
def digits_model(digits_trained):
    model, data = digits_trained
    return model, data.x_test[:24], data.y_test[:24]


# The budget at which each registered attack, alone, must take at least MIN_DROP points of accuracy off the
# digits model at 24/255 (L2 attacks at 8 x that radius). Measured margins: every attack removes 46 points or
# more (FGSM the fewest); an attack that returns its input, or one whose loss or steps are broken, removes none.
ATTACK_BUDGET = {"square": 300}
MIN_DROP = 0.30


@pytest.mark.parametrize("name", rp.list_attacks())
def test_each_attack_alone_lowers_accuracy(name, digits_trained):
    model, data = digits_trained
    x, y = data.x_test[:100].float() / 255, data.y_test[:100]
    info = ATTACKS.info(name)
    eps = 24 / 255 if info["norm"] == "linf" else 8 * 24 / 255
    options = {"targets": 3} if "targets" in info["options"] else {}
    x_adv = run_attack(name, model, x, y, eps, seed=0, budget=ATTACK_BUDGET.get(name, 10), **options)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
        robust = (model(x_adv).argmax(1) == y).float().mean().item()
    assert clean > 0.9
    assert clean - robust >= MIN_DROP, f"{name} took only {100 * (clean - robust):.1f} points off {100 * clean:.1f}%"


@pytest.mark.parametrize("name", rp.list_attacks())
def test_attack_invariants(name, digits_model):
    model, x_u8, y = digits_model
    x = x_u8.float() / 255
    eps = 16 / 255
    budget = 3 if name not in ("square",) else 20
    options = {"targets": 2} if "targets" in ATTACKS.info(name)["options"] else {}
    model.train()  # the attack must use eval mode and restore this
    flags = [p.requires_grad for p in model.parameters()]
    x_adv = run_attack(name, model, x, y, eps, seed=3, budget=budget, **options)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    model.eval()
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    if ATTACKS.info(name)["norm"] == "linf":
        assert (x_adv - x).abs().max() <= eps + 1e-6
    else:
        assert (x_adv - x).flatten(1).norm(dim=1).max() <= eps + 1e-5
    again = run_attack(name, model, x, y, eps, seed=3, budget=budget, **options)
    assert torch.equal(x_adv, again)  # deterministic under a seed
    at_zero = run_attack(name, model, x, y, 0.0, seed=3, budget=budget, **options)
    assert torch.allclose(at_zero, x, atol=1e-7)  # eps = 0 returns x
    from_uint8 = run_attack(name, model, x_u8, y, eps, seed=3, budget=budget, **options)
    assert torch.allclose(from_uint8, x_adv)  # uint8 images (load_dataset's) are accepted


def test_unknown_attack_and_option_are_refused(digits_model):
    model, x, y = digits_model
    with pytest.raises(ValueError, match="unknown attack"):
        run_attack("deepfool", model, x, y, 0.1)
    with pytest.raises(ValueError, match="takes no option"):
        run_attack("square", model, x, y, 0.1, steps=5)
    with pytest.raises(ValueError, match="targets"):
        run_attack("apgd-t", model, x, y, 0.1, budget=2, targets=10)
    with pytest.raises(ValueError, match="pixel range"):
        run_attack("pgd", model, x, y, 8)


@pytest.mark.parametrize("name", rp.list_criteria())
@pytest.mark.parametrize("amount", [0.0, 0.1, 0.5, 0.93])
def test_criterion_prunes_exactly_round_amount_n(name, amount):
    torch.manual_seed(0)
    model = rp.create_model("small_cnn")
    n = sum(p.numel() for p in prunable_parameters(model).values())
    for scope in ("global", "layer"):
        masks = compute_masks(model, name, amount, scope)
        pruned = sum(int((~m).sum()) for m in masks.values())
        expected = round(amount * n) if scope == "global" else sum(round(amount * m.numel()) for m in masks.values())
        assert pruned == expected


def test_adding_an_attack_is_one_function_and_one_decorator(digits_model):
    from robprune.attacks.registry import register_attack

    @register_attack("test-noise", label="noise ({steps} steps)", default_budget=1)
    def noise(model, x, y, eps, steps=1, *, seed=0):
        g = torch.Generator().manual_seed(seed)
        return (x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1)

    try:
        model, x, y = digits_model
        assert "test-noise" in rp.list_attacks()
        from robprune.evaluation import AttackSpec, worst_case
        res = worst_case(model, x, y, 8 / 255, [AttackSpec("test-noise", 1)])
        assert res["attacks"]["test-noise"]["label"] == "noise (1 steps)"
    finally:
        ATTACKS._entries.pop("test-noise")
        ATTACKS._info.pop("test-noise")
