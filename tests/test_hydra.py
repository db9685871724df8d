"""HYDRA score learning: exact mask counts, weights untouched, scores that learn, a top-k that acts in the forward
pass, old zeros kept, bit-exact resume, and the CLI."""

from __future__ import annotations

import copy

import pytest
import torch

import robprune as rp
from robprune.cli import main
from robprune.learned.hydra import initial_scores, learn_masks, masks_from_scores


@pytest.fixture(scope="module")
def base(trained_digits_cnn):
    import copy

    model, data = trained_digits_cnn
    return copy.deepcopy(model).eval(), data


SCORE = rp.TrainConfig(epochs=3, batch_size=64, lr=0.1, adv="ce", augment="none")


def test_initial_scores_are_hydras_scaled_weights():
    w = torch.tensor([[[[1.0, -2.0], [0.5, 4.0]]]])  # fan_in 4
    assert torch.allclose(initial_scores(w), (6 / 4) ** 0.5 * w / 4.0)


def test_masks_from_scores_prune_exactly_round_amount_n():
    torch.manual_seed(0)
    scores = {"a": torch.randn(7, 3), "b": torch.randn(50)}
    layer = masks_from_scores(scores, 0.3, "layer")
    assert [int((~m).sum()) for m in layer.values()] == [round(0.3 * 21), round(0.3 * 50)]
    flat = masks_from_scores(scores, 0.3, "global")
    assert sum(int((~m).sum()) for m in flat.values()) == round(0.3 * 71)
    with pytest.raises(ValueError, match="amount"):
        masks_from_scores(scores, 1.0)


def _objective_under(model, data, masks) -> float:
    """What score learning minimises, measured: the CE loss of the masked network (weights frozen, BatchNorm on
    batch statistics as during learning) on 512 fixed training images."""
    net = copy.deepcopy(model)
    rp.apply_masks(net, masks)
    x, y = data.x_train[:512].float() / 255, data.y_train[:512]
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(net.train()(x), y))


def test_hydra_learns_masks_that_beat_its_own_starting_point(base):
    """Scores start proportional to the weights (the magnitude mask); learning must lower the objective of the
    masked network well below that start. A HYDRA whose scores never update, or whose top-k mask is not applied
    in the forward pass (no gradient reaches the scores), ends at the magnitude mask and fails."""
    model, data = base
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks, history = learn_masks(model, data, SCORE, 0.9)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights and buffers untouched
    assert all(p.requires_grad for p in model.parameters())  # flags restored
    n = [m.numel() for m in masks.values()]
    assert [int((~m).sum()) for m in masks.values()] == [round(0.9 * k) for k in n]
    assert history[0]["mask_changes"] > 0
    start = rp.compute_masks(model, "cp", 0.9, scope="layer")
    initial = masks_from_scores({k: initial_scores(p) for k, p in rp.pruning.prunable_parameters(model).items()},
                                0.9)
    assert all(torch.equal(initial[k], start[k]) for k in start)  # the initial scores give the magnitude mask
    learned, magnitude = _objective_under(model, data, masks), _objective_under(model, data, start)
    assert learned < 0.8 * magnitude, (learned, magnitude)


def test_hydra_keeps_a_pruned_checkpoints_zeros(base):
    model, data = base
    old = rp.compute_masks(model, "cp", 0.5)
    pruned = copy.deepcopy(model)
    rp.apply_masks(pruned, old)
    masks, _ = learn_masks(pruned, data, rp.TrainConfig(epochs=1, batch_size=64, lr=0.1, augment="none"), 0.9,
                           scope="global", previous=old)
    for name, mask in old.items():
        assert not (masks[name] & ~mask).any(), name
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.9 * sum(m.numel() for m in masks.values()))


def test_score_learning_killed_mid_epoch_resumes_bit_exactly(base, tmp_path):
    model, data = base
    config = rp.TrainConfig(epochs=3, batch_size=64, lr=0.1, adv="fgsm", adv_eps=16 / 255, n_train=512)
    whole, _ = learn_masks(model, data, config, 0.8, out_dir=tmp_path / "whole")

    class Stop(Exception):
        pass

    def stop(event):
        if event["kind"] == "step" and event["epoch"] == 2 and event["step"] == 3:
            raise Stop

    with pytest.raises(Stop):
        learn_masks(model, data, config, 0.8, out_dir=tmp_path / "cut", progress=stop)
    resumed, history = learn_masks(model, data, config, 0.8, out_dir=tmp_path / "cut", resume=True)
    assert len(history) == 3
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    with pytest.raises(ValueError, match="another configuration"):
        learn_masks(model, data, rp.TrainConfig(epochs=3, batch_size=64, lr=0.2, adv="fgsm", n_train=512), 0.8,
                    out_dir=tmp_path / "cut", resume=True)


def test_hydra_from_the_cli_then_fine_tuning(base, tmp_path, capsys):
    model, _ = base
    ckpt = rp.save_checkpoint(tmp_path / "dense.safetensors", model)
    out = tmp_path / "hydra"
    argv = ["prune", str(ckpt), "--method", "hydra", "--amount", "0.9", "--data", "digits", "--adv", "ce",
            "--epochs", "1", "--lr", "0.1", "--batch-size", "64", "--out", str(out)]
    assert main(argv) == 0
    pruned, masks, meta = rp.load_checkpoint(out / "model.safetensors")
    assert meta["pruned"]["method"] == "hydra" and meta["pruned"]["history"]
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.9 * sum(m.numel() for m in masks.values()))
    assert all((p[~masks[n]] == 0).all() for n, p in pruned.named_parameters() if n in masks)
    capsys.readouterr()
    # bad input: one line, exit 2, nothing written
    for bad, message in ((["--data"], "learns its mask from data"), (["--adv"], "unknown")):
        args = list(argv)
        if bad == ["--data"]:
            i = args.index("--data")
            del args[i:i + 2]
        else:
            args[args.index("--adv") + 1] = "nonsense"
        args[-1] = str(tmp_path / "bad")
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
    assert main(["train", "--data", "digits", "--init", str(out / "model.safetensors"), "--epochs", "1",
                 "--out", str(tmp_path / "ft")]) == 0
    _, kept, _ = rp.load_checkpoint(tmp_path / "ft" / "model.safetensors")
    assert all(torch.equal(kept[k], masks[k]) for k in masks)


def test_train_method_hydra_learns_the_mask_prune_would_then_fine_tunes_under_it(base, tmp_path, capsys):
    """``train --method hydra`` is ``prune --method hydra`` then ``train --init``, in one command and folder."""
    model, _ = base
    ckpt = rp.save_checkpoint(tmp_path / "dense.safetensors", model)
    common = ["--amount", "0.8", "--data", "digits", "--adv", "ce", "--batch-size", "64", "--scope", "global"]
    assert main(["prune", str(ckpt), "--method", "hydra", *common, "--epochs", "2", "--lr", "0.1",
                 "--out", str(tmp_path / "p")]) == 0
    _, pruned_masks, _ = rp.load_checkpoint(tmp_path / "p" / "model.safetensors")
    out = tmp_path / "t"
    assert main(["train", "--init", str(ckpt), "--method", "hydra", *common, "--score-epochs", "2",
                 "--epochs", "1", "--out", str(out)]) == 0
    tuned, masks, meta = rp.load_checkpoint(out / "model.safetensors")
    assert all(torch.equal(masks[k], pruned_masks[k]) for k in pruned_masks)  # the same mask as prune learns
    assert meta["pruned"]["method"] == "hydra" and len(meta["pruned"]["history"]) == 2
    assert meta["config"]["epochs"] == 1 and meta["pruned"]["config"]["lr"] == 0.1
    weights = dict(tuned.named_parameters())
    assert all((weights[n][~m] == 0).all() for n, m in masks.items())
    assert not torch.equal(weights["conv1.weight"], dict(model.named_parameters())["conv1.weight"] * masks[
        "conv1.weight"])  # and fine-tuned under it
    capsys.readouterr()
    for argv, message in ((["--method", "hydra", "--amount", "0.5"], "give --init"),
                          (["--init", str(ckpt), "--score-epochs", "2"], "set the score learning of --method hydra")):
        assert main(["train", "--data", "digits", "--arch", "small_cnn", *argv, "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


def test_the_hinge_acts_on_score_learning(base):
    """HYDRA + the paper's hinge (Eq. 4 on the masked weights): the penalty reaches the scores, so the learned
    mask keeps smaller weights than without it."""
    model, data = base
    plain = rp.TrainConfig(epochs=2, batch_size=64, lr=0.1, augment="none", n_train=512)
    hinge = rp.TrainConfig(epochs=2, batch_size=64, lr=0.1, augment="none", n_train=512, lam=1.0, tau="q0.5")
    weights = rp.pruning.prunable_parameters(model)

    def kept_magnitude(masks):
        return float(sum(w.detach().abs()[masks[n]].sum() for n, w in weights.items()))

    without, _ = learn_masks(model, data, plain, 0.5)
    with_hinge, _ = learn_masks(model, data, hinge, 0.5)
    assert any(not torch.equal(without[n], with_hinge[n]) for n in without)
    assert kept_magnitude(with_hinge) < kept_magnitude(without)
