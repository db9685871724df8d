import pytest
import torch

from robprune import create_model, evaluate, fgsm, pgd
from robprune.evaluation import predict, wilson_interval


@pytest.fixture
def model_and_data():
    torch.manual_seed(0)
    model = create_model("small_cnn", in_channels=1).eval()
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # labels the model gets right, so attacks have something to flip
    return model, x, y


@pytest.mark.parametrize("eps", [0.0, 2 / 255, 8 / 255, 0.3])
@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_ball_and_box(model_and_data, eps, random_start):
    model, x, y = model_and_data
    x_adv = pgd(model, x, y, eps, steps=5, random_start=random_start)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= eps + 1e-6


def test_fgsm_stays_in_ball_and_box(model_and_data):
    model, x, y = model_and_data
    x_adv = fgsm(model, x, y, 0.1)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6


def test_eps_zero_is_identity(model_and_data):
    model, x, y = model_and_data
    assert torch.equal(pgd(model, x, y, 0.0, steps=3), x)


def test_pgd_lowers_accuracy_and_is_seeded(model_and_data):
    model, x, y = model_and_data
    x_adv = pgd(model, x, y, 0.3, steps=10, seed=1)
    assert (model(x_adv).argmax(1) == y).float().mean() < 1.0
    assert torch.equal(x_adv, pgd(model, x, y, 0.3, steps=10, seed=1))
    assert not torch.equal(x_adv, pgd(model, x, y, 0.3, steps=10, seed=2))


def test_attack_restores_model_state_and_leaves_param_grads(model_and_data):
    model, x, y = model_and_data
    model.train()
    pgd(model, x, y, 0.1, steps=2)
    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_per_channel_eps():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x = torch.rand(4, 3, 16, 16)
    y = torch.zeros(4, dtype=torch.long)
    eps = [0.01, 0.02, 0.03]
    delta = (pgd(model, x, y, eps, steps=3) - x).abs().amax(dim=(0, 2, 3))
    assert torch.all(delta <= torch.tensor(eps) + 1e-6)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "8"])
def test_bad_eps(model_and_data, bad):
    model, x, y = model_and_data
    with pytest.raises(ValueError, match="eps"):
        pgd(model, x, y, bad, steps=2)


@pytest.mark.parametrize("steps", [0, -1, 1.5])
def test_bad_steps(model_and_data, steps):
    model, x, y = model_and_data
    with pytest.raises(ValueError, match="steps"):
        pgd(model, x, y, 0.1, steps=steps)


def test_evaluate_invariants():
    torch.manual_seed(0)
    model = create_model("small_cnn", in_channels=1).eval()
    x = (torch.rand(50, 1, 8, 8) * 255).to(torch.uint8)
    y = torch.randint(0, 10, (50,))
    y[:40] = predict(model, x)[:40]  # most points start correct, so the attack has work to do
    result = evaluate(model, x, y, [0.0, 0.05, 0.2], steps=5, batch_size=16)
    clean = int((predict(model, x) == y).sum())
    assert result["clean"]["correct"] == clean
    correct = [r["correct"] for r in result["robust"]]
    assert correct[0] == clean  # eps = 0 equals clean accuracy
    assert all(c <= clean for c in correct)  # robust <= clean
    assert correct[2] <= correct[1] and correct[2] < clean
    assert result["n"] == 50 and result["robust"][1]["n"] == 50
    low, high = result["clean"]["ci95"]
    assert low <= clean / 50 <= high


def test_wilson_interval_known_value():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
