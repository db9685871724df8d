import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robprune import create_model, weight_stats
from robprune.evaluation.bounds import conv_spectral_norm, lipschitz_bound, measured_distortion
from robprune.pruning import prunable_parameters
from robprune.evaluation.stats import stats_markdown


def test_weight_stats_match_numpy(small_cnn):
    w = np.concatenate([p.detach().numpy().ravel() for p in prunable_parameters(small_cnn).values()])
    s = weight_stats(small_cnn)
    assert s["min"] == pytest.approx(w.min()) and s["max"] == pytest.approx(w.max())
    assert s["q50"] == pytest.approx(np.quantile(w, 0.5), abs=1e-7)
    assert s["l1"] == pytest.approx(np.abs(w).sum(), rel=1e-6)
    assert s["l2"] == pytest.approx(np.sqrt((w.astype(np.float64) ** 2).sum()), rel=1e-6)
    assert s["sparsity"] == 0.0
    assert set(s["layers"]) == set(prunable_parameters(small_cnn))
    assert "| m |" in stats_markdown({"m": s})


def test_conv_spectral_norm_matches_svd():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    shape = (3, 6, 6)
    # Build the conv as an explicit matrix and take its largest singular value.
    eye = torch.eye(3 * 6 * 6).view(-1, *shape)
    matrix = F.conv2d(eye, w, stride=2, padding=1).flatten(1).T
    exact = torch.linalg.matrix_norm(matrix, ord=2).item()
    assert conv_spectral_norm(w, shape, stride=2, padding=1, iters=200) == pytest.approx(exact, rel=1e-3)


def test_bound_is_above_measured_distortion():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    measured = measured_distortion(model, x, y, 8 / 255)
    spectral = lipschitz_bound(model, (3, 16, 16), "spectral")["log10_bound"]
    l1 = lipschitz_bound(model, (3, 16, 16), "l1")["log10_bound"]
    assert np.log10(measured["max"]) <= spectral <= l1
