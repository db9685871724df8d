import pytest
import torch

from robprune import high_magnitude_penalty
from robprune.pruning import prunable_parameters
from robprune.pruning.regularizer import parse_tau, resolve_tau


def test_zero_when_all_weights_below_tau(small_cnn):
    tau = max(float(w.detach().abs().max()) for w in prunable_parameters(small_cnn).values())
    for p in (1, 2):
        pen = high_magnitude_penalty(small_cnn, tau, p=p)
        assert pen.item() == 0.0
        pen.backward()
        assert all(w.grad is None or torch.all(w.grad == 0) for w in prunable_parameters(small_cnn).values())


def test_value_and_gradient_match_formula_p1(small_cnn):
    tau = 0.1
    pen = high_magnitude_penalty(small_cnn, tau, p=1)
    weights = prunable_parameters(small_cnn)
    expected = sum(torch.relu(w.detach().abs() - tau).sum() for w in weights.values())
    assert pen.item() == pytest.approx(expected.item(), rel=1e-5)
    pen.backward()
    for w in weights.values():
        want = torch.sign(w.detach()) * (w.detach().abs() > tau)
        assert torch.allclose(w.grad, want)


def test_value_and_gradient_match_formula_p2(small_cnn):
    tau = 0.1
    pen = high_magnitude_penalty(small_cnn, tau, p=2)
    weights = prunable_parameters(small_cnn)
    excess = {k: torch.relu(w.detach().abs() - tau) for k, w in weights.items()}
    assert pen.item() == pytest.approx(sum(e.norm() for e in excess.values()).item(), rel=1e-5)
    pen.backward()
    for k, w in weights.items():
        norm = excess[k].norm()
        want = torch.sign(w.detach()) * excess[k] / norm if norm > 0 else torch.zeros_like(w)
        assert torch.allclose(w.grad, want, atol=1e-6)


def test_quantile_tau(small_cnn):
    mags = torch.cat([w.detach().abs().flatten() for w in prunable_parameters(small_cnn).values()])
    tau = resolve_tau(small_cnn, "q0.9")
    assert float((mags > tau).float().mean()) == pytest.approx(0.1, abs=1e-3)
    assert resolve_tau(small_cnn, 0.25) == 0.25


@pytest.mark.parametrize("bad", ["q1.5", "qx", "-1", "abc", -0.1, float("inf")])
def test_bad_tau(bad):
    with pytest.raises(ValueError):
        parse_tau(bad)


def test_bad_p(small_cnn):
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        high_magnitude_penalty(small_cnn, 0.1, p=3)
