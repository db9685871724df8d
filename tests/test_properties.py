"""Property-based tests (hypothesis) for the invariants of masks, the regulariser and the attacks."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robprune import compute_masks, high_magnitude_penalty, pgd
from robprune.pruning import prunable_parameters

pytestmark = pytest.mark.fuzz


class Tiny(nn.Module):
    def __init__(self, a: int, b: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, a, 3)
        self.linear = nn.Linear(a, b)

    def forward(self, x):
        return self.linear(torch.relu(self.conv(x)).mean((2, 3)))


shapes = st.tuples(st.integers(1, 6), st.integers(2, 5), st.integers(0, 10_000))


@settings(max_examples=40, deadline=None)
@given(shapes, st.floats(0.0, 0.999), st.sampled_from(["cp", "rp", "random"]), st.sampled_from(["global", "layer"]))
def test_masks_prune_exactly_round_amount_n(shape, amount, method, scope):
    model = Tiny(*shape)
    masks = compute_masks(model, method, amount, scope)
    weights = prunable_parameters(model)
    if scope == "global":
        assert sum(int((~m).sum()) for m in masks.values()) == round(amount * sum(w.numel() for w in weights.values()))
    else:
        assert all(int((~masks[k]).sum()) == round(amount * w.numel()) for k, w in weights.items())


@settings(max_examples=40, deadline=None)
@given(shapes, st.floats(0.001, 0.999))
def test_cp_and_rp_split_by_magnitude(shape, amount):
    model = Tiny(*shape)
    cp, rp = compute_masks(model, "cp", amount), compute_masks(model, "rp", 1 - amount)
    weights = prunable_parameters(model)
    kept_cp = torch.cat([w.detach().abs()[cp[k]] for k, w in weights.items()])
    pruned_cp = torch.cat([w.detach().abs()[~cp[k]] for k, w in weights.items()])
    if len(kept_cp) and len(pruned_cp):
        assert pruned_cp.max() <= kept_cp.min()
    # CP at s and RP at 1 - s partition the weights when magnitudes are distinct
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    if flat.unique().numel() == flat.numel():
        n = flat.numel()
        if round(amount * n) + round((1 - amount) * n) == n:
            assert all(torch.equal(cp[k], ~rp[k]) for k in cp)


@settings(max_examples=40, deadline=None)
@given(shapes, st.floats(0.0, 2.0), st.floats(0.0, 2.0), st.sampled_from([1, 2]))
def test_penalty_nonnegative_and_decreasing_in_tau(shape, t1, t2, p):
    model = Tiny(*shape)
    lo, hi = sorted((t1, t2))
    a, b = high_magnitude_penalty(model, lo, p).item(), high_magnitude_penalty(model, hi, p).item()
    assert a >= b - 1e-6 >= -1e-6
    top = max(float(w.detach().abs().max()) for w in prunable_parameters(model).values())
    assert high_magnitude_penalty(model, top, p).item() == 0.0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.floats(0.0, 0.5), st.integers(1, 5), st.booleans())
def test_pgd_in_ball_in_box_and_seeded(seed, eps, steps, random_start):
    model = Tiny(4, 3, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(5, 1, 6, 6, generator=g)
    y = torch.randint(0, 3, (5,), generator=g)
    x_adv = pgd(model, x, y, eps, steps, random_start=random_start, seed=seed)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert torch.equal(x_adv, pgd(model, x, y, eps, steps, random_start=random_start, seed=seed))
