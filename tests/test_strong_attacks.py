import pytest
import torch

from robprune import create_model, load_dataset, train, TrainConfig
from robprune.attacks.apgd import apgd, apgd_checkpoints
from robprune.attacks import cw_loss, dlr_loss, pgd, pgd_l2
from robprune.attacks.square import square_attack
from robprune.evaluation import AttackSpec, sanity_checks, worst_case


@pytest.fixture(scope="module")
def trained_digits():
    data = load_dataset("digits")
    torch.manual_seed(0)
    mean, std = data.channel_stats()
    model = create_model("small_cnn", in_channels=1, mean=mean, std=std)
    train(model, data, TrainConfig(epochs=4, batch_size=64, lr=0.05))
    return model.eval(), data


def test_apgd_checkpoints_match_the_paper():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_apgd_steps_with_the_papers_momentum():
    """Eq. 2 of Croce & Hein: z = P(x_k + eta * sign(grad)), x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1})).
    Read off the points APGD evaluates on a model it never fools (every step runs), before the first checkpoint
    (eta = 2 eps); an APGD without momentum (alpha 1) steps to z instead."""

    class Wavy(torch.nn.Module):  # class 0 always wins by at least 1.6; the CE gradient changes sign inside the ball
        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, x):
            self.seen.append(x.detach().clone())
            flat = x.flatten(1)
            return torch.stack([4 + 0.3 * torch.sin(7 * flat).sum(1), 0.3 * torch.cos(5 * flat).sum(1),
                                torch.zeros(len(x))], dim=1)

    model, eps = Wavy(), 0.1
    x, y = torch.tensor([[[[0.5, 0.45], [0.3, 0.6]]]]), torch.tensor([0])
    apgd(model, x, y, eps, steps=20, seed=0)  # the first checkpoint comes after step 5
    path = list(model.seen)  # x_0 (the random start), then one point per step
    assert len(path) == 21
    lower, upper = x - eps, x + eps
    differs = 0
    for k in (1, 2, 3, 4):
        x_k = path[k].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x_k), y, reduction="sum"), x_k)
        z = torch.minimum(torch.maximum(x_k + 2 * eps * grad.sign(), lower), upper).detach()
        expected = torch.minimum(torch.maximum(x_k + 0.75 * (z - x_k) + 0.25 * (x_k - path[k - 1]), lower), upper)
        differs += not torch.allclose(expected, z)
        assert torch.allclose(path[k + 1], expected.detach(), atol=1e-6), k
    assert differs >= 2  # steps where momentum moves the point away from z: the check can fail


def test_dlr_is_scale_and_shift_invariant_and_cw_sign():
    torch.manual_seed(0)
    z, y = torch.randn(6, 10), torch.randint(0, 10, (6,))
    assert torch.allclose(dlr_loss(3.0 * z + 7.0, y), dlr_loss(z, y), atol=1e-5)
    assert torch.equal(cw_loss(z, y) > 0, z.argmax(1) != y)


@pytest.mark.parametrize("attack", ["apgd-ce", "apgd-dlr", "square", "pgd-cw", "pgd-dlr"])
def test_linf_attacks_stay_in_ball_and_box(trained_digits, attack):
    model, data = trained_digits
    x, y = data.x_test[:40].float() / 255, data.y_test[:40]
    eps = 16 / 255
    if attack.startswith("apgd"):
        x_adv = apgd(model, x, y, eps, steps=10, loss=attack.split("-")[1])
    elif attack == "square":
        x_adv = square_attack(model, x, y, eps, queries=50)
    else:
        x_adv = pgd(model, x, y, eps, 5, loss=attack.split("-")[1])
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and (x_adv - x).abs().max() <= eps + 1e-6
    assert (model(x_adv).argmax(1) == y).sum() <= (model(x).argmax(1) == y).sum()


def test_l2_pgd_stays_in_l2_ball(trained_digits):
    model, data = trained_digits
    x, y = data.x_test[:20].float() / 255, data.y_test[:20]
    x_adv = pgd_l2(model, x, y, 0.5, steps=5)
    assert (x_adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_square_uses_no_gradients(trained_digits):
    model, data = trained_digits

    class NoBackward(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            assert not torch.is_grad_enabled(), "square attack must not build a graph"
            return self.m(x)

    x, y = data.x_test[:10].float() / 255, data.y_test[:10]
    square_attack(NoBackward(model), x, y, 16 / 255, queries=20)


def test_restarts_break_more_and_never_fewer_points(trained_digits):
    """A one-step PGD from a random start, at the eps where about half of 600 images survive one start, leaves many
    points that new random starts break (measured: 183 broken by one start, 198 by three): every point the first
    start breaks stays broken, and clearly more fall. Ignoring the restarts fails this."""
    model, data = trained_digits
    x = torch.cat([data.x_test, data.x_train])[:600].float() / 255
    y = torch.cat([data.y_test, data.y_train])[:600]
    for levels in range(8, 64, 4):  # the model's robustness depends on the run's float reductions: find the eps
        x_one = pgd(model, x, y, levels / 255, 1, seed=0, exact_model=True)
        with torch.no_grad():
            one = model(x_one).argmax(1) == y
        if one.float().mean() <= 0.6:
            break
    assert 0.2 <= one.float().mean() <= 0.6
    x_three = pgd(model, x, y, levels / 255, 1, seed=0, restarts=3, exact_model=True)
    with torch.no_grad():
        three = model(x_three).argmax(1) == y
    # every point the first start breaks stays broken, up to 2% of points near a tie: the attack judges success
    # under frozen parameters, whose kernels may differ from this check's in the last bits (seen: 5 of 600)
    assert int((three & ~one).sum()) <= 12
    assert int((one & ~three).sum()) > 12  # points the new starts break: more than any tie could flip


@pytest.mark.parametrize("loss", ["ce", "cw", "dlr"])
def test_each_pgd_loss_alone_lowers_accuracy(trained_digits, loss):
    """The `standard` suite relies on the CW and DLR losses: each must attack on its own (measured: 98% clean
    to 30-36% at 24/255 with 10 steps)."""
    model, data = trained_digits
    x, y = data.x_test[:100].float() / 255, data.y_test[:100]
    x_adv = pgd(model, x, y, 24 / 255, 10, loss=loss)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
        robust = (model(x_adv).argmax(1) == y).float().mean().item()
    assert clean - robust >= 0.4


def test_worst_case_is_below_every_attack(trained_digits):
    model, data = trained_digits
    x, y = data.x_test[:120], data.y_test[:120]
    attacks = [AttackSpec("apgd-ce", 10), AttackSpec("square", 100)]
    suite = worst_case(model, x, y, 24 / 255, attacks, batch_size=64)
    for spec in attacks:
        alone = worst_case(model, x, y, 24 / 255, [spec], batch_size=64)["worst_case"]["correct"]
        assert suite["worst_case"]["correct"] <= alone
    assert suite["worst_case"]["correct"] <= suite["clean"]["correct"]


class RoundedInput(torch.nn.Module):
    """Gradient masking by construction: rounding the input makes every input gradient zero."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(torch.round(x * 4) / 4)


def test_sanity_checks_pass_on_a_healthy_model_and_flag_masking(trained_digits):
    model, data = trained_digits
    x, y = data.x_test[:100], data.y_test[:100]
    healthy = {c["name"]: c["passed"] for c in sanity_checks(model, x, y, [8 / 255, 32 / 255], steps=10)}
    assert healthy["eps0_equals_clean"] and healthy["monotone_in_eps"] and healthy["nonzero_input_gradients"]
    assert healthy["outputs_are_logits"] and healthy["large_eps_breaks_model"]
    masked = {c["name"]: c["passed"] for c in sanity_checks(RoundedInput(model).eval(), x, y, [8 / 255, 32 / 255],
                                                              steps=10)}
    assert not masked["nonzero_input_gradients"]
    assert not masked["blackbox_not_stronger"] or not masked["large_eps_breaks_model"]


def test_probability_outputs_are_flagged(trained_digits):
    model, data = trained_digits
    probs = torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval()
    checks = {c["name"]: c["passed"] for c in sanity_checks(probs, data.x_test[:50], data.y_test[:50], [8 / 255], 5)}
    assert not checks["outputs_are_logits"]


def test_cross_check_against_torchattacks_pgd(trained_digits):
    torchattacks = pytest.importorskip("torchattacks")
    model, data = trained_digits
    x = torch.cat([data.x_test, data.x_train])[:600].float() / 255
    y = torch.cat([data.y_test, data.y_train])[:600]
    eps, steps = 16 / 255, 10
    alpha = 2.5 * eps / steps
    ours = pgd(model, x, y, eps, steps, step_size=alpha, random_start=False)
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    with torch.no_grad():
        acc_ours = (model(ours).argmax(1) == y).float().mean().item()
        acc_theirs = (model(theirs).argmax(1) == y).float().mean().item()
    assert 0.05 < acc_theirs < 0.95  # a regime where the attack strength matters
    assert abs(acc_ours - acc_theirs) <= 0.005, (acc_ours, acc_theirs)


def test_apgd_attacks_only_unfooled_images_and_that_changes_no_result(trained_digits):
    model, data = trained_digits
    x, y = data.x_test[:30].float() / 255, data.y_test[:30]
    sizes = []

    class Recorder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, z):
            sizes.append(len(z))
            return self.m(z)

    eps = 24 / 255
    both = apgd(Recorder(model), x, y, eps, steps=20, seed=3)
    assert sizes[0] == 30 and min(sizes) < 30  # images fooled early drop out of later steps
    # The first 20 images get the same random start either way; the 10 extra ones must not change their result.
    alone = apgd(model, x[:20], y[:20], eps, steps=20, seed=3)
    assert torch.allclose(both[:20], alone, atol=1e-6)


class _Stop(Exception):
    pass


def test_a_stopped_suite_continues_from_its_batch_log_with_the_same_outcome(trained_digits, tmp_path, monkeypatch):
    """The batch log lets an interrupted worst case continue: the resumed run attacks only the batches not yet
    saved and ends with the uninterrupted run's per-point outcome and counts."""
    import robprune.evaluation.suite as suite_module
    from robprune.evaluation.suite import BatchLog

    model, data = trained_digits
    x, y = data.x_test[:150], data.y_test[:150]
    attacks = [AttackSpec("apgd-ce", 10), AttackSpec("apgd-dlr", 10), AttackSpec("square", 60)]
    calls = []
    real = suite_module.run_attack
    monkeypatch.setattr(suite_module, "run_attack", lambda *a, **k: calls.append(k["seed"]) or real(*a, **k))
    whole = worst_case(model, x, y, 16 / 255, attacks, batch_size=40)
    whole_calls = len(calls)
    calls.clear()
    done = []

    def stop_after_five(n):
        done.append(n)
        if len(done) == 5:  # all 4 batches of the first attack and 1 of the second
            raise _Stop

    with pytest.raises(_Stop):
        worst_case(model, x, y, 16 / 255, attacks, batch_size=40, progress=stop_after_five,
                   log=BatchLog(tmp_path, "eps0"))
    first = len(calls)

    def stop_after_three_more(n):  # a second interruption: the first run's batches must survive it too
        if len(calls) == first + 3:
            raise _Stop

    with pytest.raises(_Stop):
        worst_case(model, x, y, 16 / 255, attacks, batch_size=40, progress=stop_after_three_more,
                   log=BatchLog(tmp_path, "eps0"))
    resumed = worst_case(model, x, y, 16 / 255, attacks, batch_size=40, log=BatchLog(tmp_path, "eps0"))
    assert resumed["robust_mask"] == whole["robust_mask"]
    assert {k: v["robust_after"] for k, v in resumed["attacks"].items()} == {
        k: v["robust_after"] for k, v in whole["attacks"].items()}
    assert first == 5 and len(calls) == whole_calls  # no saved batch was attacked again, over two interruptions

    # A log made for another configuration (another seed) is not used; a damaged one is only ignored.
    other = worst_case(model, x, y, 16 / 255, attacks, batch_size=40, seed=7)
    assert worst_case(model, x, y, 16 / 255, attacks, batch_size=40, seed=7,
                      log=BatchLog(tmp_path, "eps0"))["robust_mask"] == other["robust_mask"]
    (tmp_path / "partial-eps0-r0.json").write_text("{not json")
    assert worst_case(model, x, y, 16 / 255, attacks, batch_size=40,
                      log=BatchLog(tmp_path, "eps0"))["robust_mask"] == whole["robust_mask"]
