"""AutoAttack-grade evaluation: APGD-T, FAB-T, the autoattack suite, cross-checks against torchattacks, the CLI."""

import json

import pytest
import torch

import robprune as rp
from robprune.attacks import linf_projection, run_attack
from robprune.cli import main
from robprune.data import load_digits
from robprune.evaluation import SUITES, attack_model, worst_case


@pytest.fixture(scope="module")
def model_and_data():
    data = load_digits()
    torch.manual_seed(0)
    mean, std = data.channel_stats()
    model = rp.create_model("small_cnn", mean=mean, std=std)
    rp.train(model, data, rp.TrainConfig(epochs=6, batch_size=64, lr=0.05))
    return model.eval(), data


def test_linf_projection_is_minimal_and_feasible():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 4, 4)
    w = torch.randn(64, 1, 4, 4)
    b = torch.randn(64) * 0.5
    d = linf_projection(x, w, b)
    z = x + d
    assert z.min() >= -1e-6 and z.max() <= 1 + 1e-6  # inside the box
    reached = (w * d).flatten(1).sum(1) + b
    norm = d.flatten(1).abs().amax(1)
    # where the hyperplane is reachable inside the box it is reached
    reachable = reached.abs() < 1e-4
    assert reachable.float().mean() > 0.5
    # minimality: any smaller radius cannot reach it (the best move at radius 0.99 * t falls short)
    t = norm[reachable] * 0.99
    xs, ws, bs = x.flatten(1)[reachable], w.flatten(1)[reachable], b[reachable]
    direction = -torch.sign(bs)[:, None] * torch.sign(ws)
    room = torch.where(direction > 0, 1 - xs, xs)
    best = (ws.abs() * torch.minimum(room, t[:, None])).sum(1)
    assert (best < bs.abs() + 1e-6).all()


def _surviving_eps(model, data, n=120):
    x, y = data.x_test[:n], data.y_test[:n]
    for levels in range(4, 42, 2):
        acc = rp.evaluate(model, x, y, [levels / 255], 20)["robust"][0]["accuracy"]
        if 0.3 <= acc <= 0.6:
            return levels / 255
    pytest.fail("no eps between 4/255 and 40/255 leaves 30-60% of the points robust")


def test_autoattack_is_at_least_as_strong_as_torchattacks(model_and_data):
    torchattacks = pytest.importorskip("torchattacks")
    model, data = model_and_data
    n = 60
    x, y = data.x_test[:n].float() / 255, data.y_test[:n]
    eps = _surviving_eps(model, data, n)
    ours = worst_case(model, x, y, eps, SUITES["autoattack"], batch_size=60, attacker=attack_model(model))
    theirs_adv = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)(x, y)
    with torch.no_grad():
        theirs = int((model(theirs_adv).argmax(1) == y).sum())
    kept = ours["worst_case"]["correct"]
    assert 0.2 * n <= theirs <= 0.7 * n  # the eps is in the range where the comparison means something
    assert kept <= theirs + 0.01 * n, (kept, theirs)


def test_fab_t_cross_check_against_torchattacks_fab(model_and_data):
    torchattacks = pytest.importorskip("torchattacks")
    model, data = model_and_data
    n = 80
    x, y = data.x_test[:n].float() / 255, data.y_test[:n]
    eps = _surviving_eps(model, data)
    ours = run_attack("fab-t", model, x, y, eps, budget=20, targets=9)
    theirs = torchattacks.FAB(model, eps=eps, steps=20, multi_targeted=True, n_classes=10, seed=0)(x, y)
    with torch.no_grad():
        ours_kept = int((model(ours).argmax(1) == y).sum())
        theirs_kept = int((model(theirs).argmax(1) == y).sum())
    assert (ours - x).abs().max() <= eps + 1e-6
    assert ours_kept <= theirs_kept + 0.05 * n, (ours_kept, theirs_kept)
    assert ours_kept < int((model(x).argmax(1) == y).sum())  # FAB-T breaks points on its own


def test_autoattack_suite_from_the_cli_with_several_checkpoints(model_and_data, tmp_path, capsys):
    model, _ = model_and_data
    a = rp.save_checkpoint(tmp_path / "base" / "model.safetensors", model)
    pruned = rp.load_checkpoint(a)[0]
    rp.apply_masks(pruned, rp.compute_masks(pruned, "cp", 0.5))
    b = rp.save_checkpoint(tmp_path / "cp" / "model.safetensors", pruned)
    assert main(["eval", str(a), str(b), "--data", "digits", "--suite", "autoattack", "--eps", "16", "--n-images",
                 "20", "--check-images", "20", "--out", str(tmp_path / "ev"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| base |" in out and "| cp |" in out and "worst case eps=16/255" in out
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())
    row = ev["models"]["base"]["robust"][0]
    assert list(row["attacks"]) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    after = [row["attacks"][k]["robust_after"]["correct"] for k in row["attacks"]]
    assert after == sorted(after, reverse=True) and row["correct"] == after[-1]
    assert ev["models"]["base"]["request"]["suite"] == "autoattack"


def test_eps_as_a_fraction_and_unit_mistakes(model_and_data, tmp_path, capsys):
    model, _ = model_and_data
    ck = rp.save_checkpoint(tmp_path / "m.safetensors", model)
    assert main(["eval", str(ck), "--data", "digits", "--eps", "0.0627", "--eps-unit", "fraction", "--n-images", "30",
                 "--no-checks", "--out", str(tmp_path / "f")]) == 0
    ev = json.loads((tmp_path / "f" / "eval.json").read_text())
    assert ev["robust"][0]["eps"] == pytest.approx(0.0627)
    capsys.readouterr()
    for argv, message in ((["--eps", "300"], "larger than the whole pixel range"),
                          (["--eps", "2", "--eps-unit", "fraction"], "8/255 is 0.031"),
                          (["--eps-unit", "percent"], "unknown --eps-unit"),
                          (["--suite", "ultimate"], "unknown suite")):
        assert main(["eval", str(ck), "--data", "digits", *argv, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "bad" / "eval.json").exists()
    # eps written as 0.03 in units of 1/255 changes nothing: a loud warning, not silence
    assert main(["eval", str(ck), "--data", "digits", "--eps", "0.03", "--n-images", "60", "--check-images", "60",
                 "--out", str(tmp_path / "tiny")]) == 0
    assert "eps_units_plausible FAILED" in capsys.readouterr().err


def test_checks_flag_a_near_constant_model_and_a_training_mode_model(model_and_data):
    from robprune.evaluation import sanity_checks
    model, data = model_and_data

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.zeros(len(x), 10) + torch.arange(10.0) + self.w * x.flatten(1)[:, :1]

    x, y = data.x_test[:50], data.y_test[:50]
    events = []
    checks = {c["name"]: c["passed"] for c in sanity_checks(Constant().eval(), x, y, [8 / 255], 3,
                                                            progress=events.append)}
    assert events[-1]["done"] == events[-1]["total"] == len(checks)  # the checks have a progress bar
    assert checks["not_near_chance"] is False
    model.train()
    try:
        checks = {c["name"]: c["passed"] for c in sanity_checks(model, x, y, [8 / 255], 3)}
    finally:
        model.eval()
    assert checks["model_in_eval_mode"] is False and checks["deterministic_outputs"] is True


def test_check_images_are_class_balanced(model_and_data):
    from robprune.evaluation import check_images
    _, data = model_and_data
    order = data.y_test.argsort()  # a test split sorted by class, as ImageFolder gives
    _, y = check_images(data.x_test[order], data.y_test[order], 50)
    counts = torch.bincount(y, minlength=10)
    assert counts.min() >= 4 and counts.max() <= 6


def test_suite_in_bf16_is_checked_in_fp32(tmp_path):
    """--precision bf16 reaches every attack of a suite; outcomes are decided by the fp32 model."""
    from robprune.evaluation.run import EvalRequest, run_evaluation
    from robprune.models import create_model

    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    x = torch.rand(24, 1, 8, 8)
    y = torch.randint(0, 10, (24,))
    request = EvalRequest(eps=(16 / 255,), suite="fast", precision="bf16", checks=False, batch_size=12)
    result = run_evaluation(model, x, y, request)
    assert "bf16 attack passes" in result["attack"]["label"]
    row = result["robust"][0]
    assert row["correct"] <= result["clean"]["correct"]
    with pytest.raises(ValueError, match="exact-model"):
        EvalRequest(suite="fast", precision="bf16", exact_model=True).validate()
