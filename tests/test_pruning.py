import copy

import pytest
import torch
import torch.nn.functional as F

from robprune import apply_masks, compute_masks, create_model, sparsity_report
from robprune.pruning import prunable_parameters


def _n_pruned(masks):
    return sum(int((~m).sum()) for m in masks.values())


@pytest.mark.parametrize("method", ["cp", "rp", "random"])
@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("amount", [0.0, 0.1, 0.5, 0.37, 0.999])
def test_exact_counts(tiny_resnet, method, scope, amount):
    masks = compute_masks(tiny_resnet, method, amount, scope)
    weights = prunable_parameters(tiny_resnet)
    if scope == "global":
        n = sum(w.numel() for w in weights.values())
        assert _n_pruned(masks) == round(amount * n)
    else:
        for name, w in weights.items():
            assert int((~masks[name]).sum()) == round(amount * w.numel())
    assert all(m.dtype == torch.bool and m.shape == weights[k].shape for k, m in masks.items())


def _distinct_magnitudes(model):
    """Give the prunable weights distinct magnitudes (random order, random signs)."""
    weights = prunable_parameters(model)
    n = sum(w.numel() for w in weights.values())
    g = torch.Generator().manual_seed(0)
    values = (torch.randperm(n, generator=g).float() + 1) / n
    values *= torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    start = 0
    with torch.no_grad():
        for w in weights.values():
            w.copy_(values[start : start + w.numel()].view_as(w))
            start += w.numel()
    return n


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_cp_and_rp_complementary_at_half(small_cnn, scope):
    n = _distinct_magnitudes(small_cnn)
    assert n % 2 == 0
    cp = compute_masks(small_cnn, "cp", 0.5, scope)
    rp = compute_masks(small_cnn, "rp", 0.5, scope)
    for k in cp:
        assert torch.equal(cp[k], ~rp[k])


def test_cp_prunes_smallest_rp_largest(small_cnn):
    cp = compute_masks(small_cnn, "cp", 0.3)
    rp = compute_masks(small_cnn, "rp", 0.3)
    weights = prunable_parameters(small_cnn)
    kept_cp = torch.cat([w.detach().abs()[cp[k]] for k, w in weights.items()])
    gone_cp = torch.cat([w.detach().abs()[~cp[k]] for k, w in weights.items()])
    assert gone_cp.max() <= kept_cp.min()
    kept_rp = torch.cat([w.detach().abs()[rp[k]] for k, w in weights.items()])
    gone_rp = torch.cat([w.detach().abs()[~rp[k]] for k, w in weights.items()])
    assert gone_rp.min() >= kept_rp.max()


def test_keep_ends_leaves_first_and_last_dense(tiny_resnet):
    masks = compute_masks(tiny_resnet, "cp", 0.5, keep_ends=True)
    assert "conv1.weight" not in masks and "linear.weight" not in masks
    assert "layer1.0.conv1.weight" in masks


@pytest.mark.parametrize("amount", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_amount(tiny_resnet, amount):
    with pytest.raises(ValueError, match="amount"):
        compute_masks(tiny_resnet, "cp", amount)


def test_bad_method_and_scope(tiny_resnet):
    with pytest.raises(ValueError, match="unknown pruning method 'magic'"):
        compute_masks(tiny_resnet, "magic", 0.5)
    with pytest.raises(ValueError, match="scope"):
        compute_masks(tiny_resnet, "cp", 0.5, scope="row")


def test_mask_of_ones_leaves_forward_unchanged(tiny_resnet):
    x = torch.rand(4, 3, 32, 32)
    before = tiny_resnet(x)
    ones = {k: torch.ones_like(p, dtype=torch.bool) for k, p in prunable_parameters(tiny_resnet).items()}
    apply_masks(tiny_resnet, ones)
    assert torch.equal(before, tiny_resnet(x))


def test_wrong_shape_mask_raises(tiny_resnet):
    with pytest.raises(ValueError, match="shape"):
        apply_masks(tiny_resnet, {"conv1.weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="matches no parameter"):
        apply_masks(tiny_resnet, {"nope.weight": torch.ones(3, dtype=torch.bool)})


def test_masked_weights_stay_zero_after_sgd_momentum_weight_decay(small_cnn):
    masks = compute_masks(small_cnn, "cp", 0.5)
    apply_masks(small_cnn, masks)
    opt = torch.optim.SGD(small_cnn.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    small_cnn.train()
    for _ in range(5):
        x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
        opt.zero_grad()
        F.cross_entropy(small_cnn(x), y).backward()
        opt.step()
        apply_masks(small_cnn, masks)
        params = dict(small_cnn.named_parameters())
        for k, m in masks.items():
            assert torch.all(params[k][~m] == 0)
            assert torch.any(params[k][m] != 0)


def test_previous_masks_only_grow(small_cnn):
    first = compute_masks(small_cnn, "rp", 0.2)
    apply_masks(small_cnn, first)
    second = compute_masks(small_cnn, "rp", 0.4, previous=first)
    for k in first:
        assert torch.all(~second[k][~first[k]])  # pruned before -> still pruned
    assert _n_pruned(second) == round(0.4 * sum(m.numel() for m in first.values()))


def test_random_is_seeded(small_cnn):
    a = compute_masks(small_cnn, "random", 0.5, seed=3)
    b = compute_masks(small_cnn, "random", 0.5, seed=3)
    c = compute_masks(small_cnn, "random", 0.5, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_sparsity_report(small_cnn):
    model = copy.deepcopy(small_cnn)
    apply_masks(model, compute_masks(model, "cp", 0.25, scope="layer"))
    report = sparsity_report(model)
    assert report["sparsity"] == pytest.approx(0.25, abs=1e-3)
    for layer in report["layers"]:
        assert layer["zeros"] == round(0.25 * layer["numel"])


def test_masking_keeps_state_dict_keys_and_deepcopy(small_cnn):
    keys = list(small_cnn.state_dict())
    apply_masks(small_cnn, compute_masks(small_cnn, "cp", 0.5))
    assert list(small_cnn.state_dict()) == keys
    clone = copy.deepcopy(small_cnn)
    assert all(torch.equal(a, b) for a, b in zip(clone.state_dict().values(), small_cnn.state_dict().values()))


def test_models_parameter_counts():
    from robprune.models import count_parameters
    expected = {"resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
                "resnet110": 1_727_962}
    for name, n in expected.items():
        assert count_parameters(create_model(name)) == n


def test_lamp_scores_follow_the_definition_on_a_hand_made_tensor():
    """Lee et al. 2021, Eq. 2 by hand: w = [1, -2, 3, 0.5] -> squares 1, 4, 9, 0.25; in ascending order
    0.25, 1, 4, 9 with suffix sums 14.25, 14, 13, 9."""
    from robprune.pruning.criteria import lamp_scores

    w = torch.tensor([1.0, -2.0, 3.0, 0.5])
    expected = torch.tensor([1 / 14, 4 / 13, 9 / 9, 0.25 / 14.25])
    assert torch.allclose(lamp_scores(w, torch.Generator()), expected)
    w2 = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # an all-zero layer: scores 0, never NaN
    assert torch.equal(lamp_scores(w2, torch.Generator()), torch.zeros(2, 2))


def test_lamp_global_pruning_never_empties_a_layer_where_magnitude_does():
    from torch import nn

    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    with torch.no_grad():
        model[0].weight.mul_(1e-3)  # a layer of small weights: global magnitude pruning takes all of it
    cp = compute_masks(model, "cp", 0.9)
    lamp = compute_masks(model, "lamp", 0.9)
    assert not cp["0.weight"].any()
    assert lamp["0.weight"].any() and lamp["2.weight"].any()
    n = sum(m.numel() for m in lamp.values())
    assert sum(int((~m).sum()) for m in lamp.values()) == round(0.9 * n)
