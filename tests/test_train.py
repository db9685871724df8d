import pytest
import torch

from robprune import TrainConfig, create_model, load_dataset, train
from robprune.checkpoint import load_checkpoint
from robprune.pruning import prunable_parameters
from robprune.training import DivergenceError, learning_rate


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model(digits):
    torch.manual_seed(0)
    mean, std = digits.channel_stats()
    return create_model("small_cnn", in_channels=1, mean=mean, std=std)


def test_training_learns_digits(digits):
    model = _model(digits)
    result = train(model, digits, TrainConfig(epochs=3, batch_size=64, lr=0.05))
    assert result["history"][-1]["test_acc"] > 0.85
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]


@pytest.mark.parametrize("method,amount", [("cp", 0.5), ("rp", 0.1)])
def test_masks_hold_through_training(digits, method, amount):
    model = _model(digits)
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-3,
                         method=method, amount=amount, lam=0.01)
    result = train(model, digits, config)
    params = prunable_parameters(model)
    n = sum(p.numel() for p in params.values())
    zeros = sum(int((~m).sum()) for m in result["masks"].values())
    assert zeros == round(amount * n)
    for name, mask in result["masks"].items():
        assert torch.all(params[name][~mask] == 0)
    assert result["history"][-1]["sparsity"] >= round(amount * n) / n - 1e-9


def test_gradual_schedule_reaches_target(digits):
    model = _model(digits)
    result = train(model, digits, TrainConfig(epochs=4, batch_size=128, lr=0.05, method="cp", amount=0.6,
                                              prune_schedule="gradual"))
    sparsities = [h["sparsity"] for h in result["history"]]
    assert sparsities == sorted(sparsities) and sparsities[0] < 0.6
    assert sparsities[-1] == pytest.approx(0.6, abs=1e-4)


def test_regulariser_shrinks_large_weights(digits):
    plain, reg = _model(digits), _model(digits)
    base = TrainConfig(epochs=2, batch_size=64, lr=0.05, weight_decay=0.0)
    train(plain, digits, base)
    train(reg, digits, TrainConfig(**{**base.__dict__, "lam": 0.2, "tau": "q0.9"}))
    top = lambda m: max(float(w.detach().abs().max()) for w in prunable_parameters(m).values())  # noqa: E731
    assert top(reg) < top(plain)


class _Crash(Exception):
    pass


def test_resume_after_crash_is_bit_exact(tmp_path, digits):
    config = TrainConfig(epochs=3, batch_size=64, lr=0.05, method="cp", amount=0.3, lam=0.01)
    straight = _model(digits)
    train(straight, digits, config, out_dir=tmp_path / "a")

    def crash_in_epoch_2(event):
        if event["kind"] == "step" and event["epoch"] == 2 and event["step"] == 5:
            raise _Crash

    interrupted = _model(digits)
    with pytest.raises(_Crash):
        train(interrupted, digits, config, out_dir=tmp_path / "b", progress=crash_in_epoch_2)
    resumed = _model(digits)  # a fresh process would start from a fresh model
    result = train(resumed, digits, config, out_dir=tmp_path / "b", resume=True)
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_resume_with_other_config_is_refused(tmp_path, digits):
    train(_model(digits), digits, TrainConfig(epochs=1, batch_size=128), out_dir=tmp_path)
    with pytest.raises(ValueError, match="different config"):
        train(_model(digits), digits, TrainConfig(epochs=1, batch_size=64), out_dir=tmp_path, resume=True)


def test_divergence_stops_with_clear_message_and_keeps_checkpoint(tmp_path, digits):
    model = _model(digits)
    train(model, digits, TrainConfig(epochs=1, batch_size=128, lr=0.01), out_dir=tmp_path)
    good = load_checkpoint(tmp_path / "last.safetensors")[0].state_dict()
    with pytest.raises(DivergenceError, match="lower the learning rate"):
        train(model, digits, TrainConfig(epochs=3, batch_size=128, lr=1e30, momentum=0.0), out_dir=tmp_path / "x")
    reloaded = load_checkpoint(tmp_path / "last.safetensors")[0].state_dict()
    assert all(torch.equal(a, b) for a, b in zip(good.values(), reloaded.values()))


@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", -1), ("lr", -0.1), ("method", "magic"),
                                         ("amount", 1.0), ("schedule", "linear"), ("tau", "qq"), ("p", 3),
                                         ("augment", "mixup"), ("lam", float("nan"))])
def test_bad_config(field, value):
    with pytest.raises((ValueError, TypeError)):
        TrainConfig(**{field: value}).validate()


def test_learning_rate_schedules():
    cos = TrainConfig(lr=1.0, schedule="cosine")
    assert learning_rate(cos, 0, 100) == 1.0 and learning_rate(cos, 100, 100) == pytest.approx(0.0)
    ms = TrainConfig(lr=1.0, schedule="multistep")
    assert [learning_rate(ms, s, 100) for s in (0, 50, 75)] == pytest.approx([1.0, 0.1, 0.01])
