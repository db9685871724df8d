"""HYDRA with learned layer rates (learned/rates.py, in the spirit of HARP): the exact allocation, the size term,
rates that move and the allocation they learn, bit-exact resume, refusals and the CLI."""

from __future__ import annotations

import copy

import pytest
import torch

import robprune as rp
from robprune.cli import main
from robprune.learned.hydra import learn_masks
from robprune.learned.rates import LearnedRates, _RatedWeight, allocate, learn_rated_masks


@pytest.fixture(scope="module")
def base(trained_digits_cnn):
    import copy

    model, data = trained_digits_cnn
    return copy.deepcopy(model).eval(), data


SCORE = rp.TrainConfig(epochs=3, batch_size=64, lr=0.1, adv="ce", augment="none")


def test_allocate_is_exact_bounded_and_proportional():
    assert allocate({"a": 10.0, "b": 30.0, "c": 0.0}, {"a": 100, "b": 100, "c": 5}, 41) == {"a": 10, "b": 30, "c": 1}
    assert allocate({"a": 1000.0, "b": 10.0}, {"a": 50, "b": 100}, 80) == {"a": 50, "b": 30}  # a is full
    counts = allocate({"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 10, "b": 10, "c": 10}, 10)
    assert sum(counts.values()) == 10 and sorted(counts.values()) == [3, 3, 4]
    with pytest.raises(ValueError):
        allocate({"a": 1.0, "b": 1.0}, {"a": 10, "b": 10}, 1)  # one weight cannot serve two layers


def test_the_size_term_pulls_the_rates_down_above_the_target_and_is_silent_below():
    inits = {"a": torch.randn(20, 5), "b": torch.randn(100)}
    strategy = LearnedRates(inits, inits, 0.9)
    with torch.no_grad():
        for part in strategy.parts.values():
            part.rate.fill_(0.0)  # keep 1/2 of each layer: five times the target
    strategy.loss(0.5).backward()  # the middle third: gamma 10
    assert all(part.rate.grad > 0 for part in strategy.parts.values())  # SGD lowers every keep fraction
    with torch.no_grad():
        for part in strategy.parts.values():
            part.rate.fill_(-5.0)
    assert strategy.loss(0.5).item() == 0.0


def _objective_under(model, data, masks) -> float:
    net = copy.deepcopy(model)
    rp.apply_masks(net, masks)
    x, y = data.x_train[:512].float() / 255, data.y_train[:512]
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(net.train()(x), y))


def _cp_keeps(model, amount) -> dict[str, float]:
    """What global magnitude pruning keeps of each layer: the rates' start."""
    return {n: float(m.float().mean()) for n, m in rp.compute_masks(model, "cp", amount, scope="global").items()}


def test_learned_rates_move_and_beat_a_fixed_rate_per_layer(base):
    """At 95% the rates leave their start (global magnitude pruning's allocation; a rate that no gradient reaches
    stays there) and the allocation they learn (with HYDRA's scores) beats HYDRA's fixed rate per layer on the
    objective both minimise; exactly round(0.95 n) weights pruned over the network, at least one kept per layer,
    the weights untouched."""
    model, data = base
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks, history = learn_rated_masks(model, data, SCORE, 0.95)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    n = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.95 * n)
    assert all(m.any() for m in masks.values())
    start, keeps = _cp_keeps(model, 0.95), history[-1]["layer_keep"]
    assert max(abs(keeps[k] - start[k]) for k in keeps) > 0.02, (keeps, start)
    fixed, _ = learn_masks(model, data, SCORE, 0.95, scope="layer")
    assert _objective_under(model, data, masks) < _objective_under(model, data, fixed)


def test_without_the_soft_rank_step_the_rates_do_not_move(base, monkeypatch):
    """The mechanism, removed: a mask whose backward pass reaches only the scores leaves every rate at its start."""
    model, data = base

    def scores_only(self, w):
        magnitude = self.scores.abs()
        return w * (self.mask.to(w.dtype) + magnitude - magnitude.detach())

    monkeypatch.setattr(_RatedWeight, "forward", scores_only)
    _, history = learn_rated_masks(model, data, rp.TrainConfig(epochs=1, batch_size=64, lr=0.1, augment="none"),
                                   0.95)
    start = _cp_keeps(model, 0.95)
    assert all(k == pytest.approx(start[n], abs=1e-5) for n, k in history[-1]["layer_keep"].items())


def test_rates_resume_bit_exactly_and_refuse_what_they_cannot_do(base, tmp_path):
    model, data = base
    config = rp.TrainConfig(epochs=2, batch_size=64, lr=0.1, n_train=512, augment="none")
    whole, _ = learn_rated_masks(model, data, config, 0.9, out_dir=tmp_path / "whole")

    class Stop(Exception):
        pass

    def stop(event):
        if event["kind"] == "step" and event["epoch"] == 2 and event["step"] == 3:
            raise Stop

    with pytest.raises(Stop):
        learn_rated_masks(model, data, config, 0.9, out_dir=tmp_path / "cut", progress=stop)
    resumed, history = learn_rated_masks(model, data, config, 0.9, out_dir=tmp_path / "cut", resume=True)
    assert len(history) == 2 and all(torch.equal(whole[k], resumed[k]) for k in whole)
    with pytest.raises(ValueError, match="global"):
        learn_rated_masks(model, data, config, 0.9, scope="layer")
    with pytest.raises(ValueError, match="dense"):
        learn_rated_masks(model, data, config, 0.9, previous=rp.compute_masks(model, "cp", 0.5))


def test_hydra_rates_from_the_cli(base, tmp_path, capsys):
    model, data = base
    ckpt = tmp_path / "dense.safetensors"
    rp.save_checkpoint(ckpt, model, {}, {"arch": "small_cnn"})
    assert rp.list_methods()["hydra-rates"]["needs_data"]
    out = tmp_path / "p"
    assert main(["prune", str(ckpt), "--method", "hydra-rates", "--amount", "0.9", "--data", "digits",
                 "--epochs", "1", "--out", str(out)]) == 0
    _, masks, _ = rp.load_checkpoint(out / "model.safetensors")
    n = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.9 * n)
    assert main(["prune", str(ckpt), "--method", "hydra-rates", "--amount", "0.9", "--data", "digits",
                 "--scope", "layer", "--out", str(tmp_path / "never")]) == 2
    assert "global" in capsys.readouterr().err and not (tmp_path / "never").exists()
