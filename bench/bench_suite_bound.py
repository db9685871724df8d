"""The autoattack suite against its compute bound: every pass each attack makes is counted, each kind of pass is
timed at the batch sizes the attack used, and the suite's time is set beside the sum (the bound).

    PYTHONPATH=src:bench python bench/bench_suite_bound.py [--arch resnet20 --images 100 --eps 0.5]
    PYTHONPATH=src:bench python bench/bench_suite_bound.py --checkpoint M.safetensors --data digits --eps 8

A forward hook on the attacked copy (BN-folded, frozen, channels_last) and on the original model (which judges
every adversarial example) records rows per call, split into passes made with gradients on (counted as a
forward and an input-backward pass) and without (a forward pass). Each attack's bound is its rows times the
per-row cost of that kind of pass, timed here on random images at the attack's mean batch size (the fastest of
at least 10 after warm-up).
Target on the CPU (issue 28): time <= 1.3x the bound for an adversarially trained ResNet-20.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch

from common import machine, model_and_images
from robprune.attacks.common import frozen, loss_and_gradient
from robprune.evaluation import suite as suite_module
from robprune.evaluation.suite import SUITES, worst_case
from robprune.models.folding import attack_model


def count_passes(model, attacker, x, y, eps, batch):
    """Run the suite with hooks; (worst_case row, {(attack, module, grad): [rows per call]})."""
    calls, current = defaultdict(list), {"name": "clean"}
    run_attack = suite_module.run_attack

    def tagged(name, *args, **kwargs):
        current["name"] = name
        return run_attack(name, *args, **kwargs)

    def hook(which):
        return lambda m, inputs, out: calls[current["name"], which, torch.is_grad_enabled()].append(len(inputs[0]))

    handles = [model.register_forward_hook(hook("original")), attacker.register_forward_hook(hook("copy"))]
    suite_module.run_attack = tagged
    try:
        t0 = time.perf_counter()
        row = worst_case(model, x, y, eps, SUITES["autoattack"], batch, attacker=attacker)
        row["total_seconds"] = time.perf_counter() - t0
    finally:
        suite_module.run_attack = run_attack
        for h in handles:
            h.remove()
    return row, calls


def per_row_cost(module, shape, rows: int, backward: bool, channels_last: bool) -> float:
    """Seconds per row of one pass of ``rows`` random images: after two warm-up passes, the fastest of at least 10
    (and of as many as fit in half a second), so a bound of cheap passes does not rest on three noisy timings."""
    x = torch.rand(rows, *shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (rows,))

    def one_pass() -> float:
        t0 = time.perf_counter()
        if backward:
            with frozen(module):
                loss_and_gradient(module, x, y, "ce", None)
        else:
            with torch.no_grad():
                module(x)
        return time.perf_counter() - t0

    one_pass(), one_pass()
    times, start = [], time.perf_counter()
    while len(times) < 10 or time.perf_counter() - start < 0.5:
        times.append(one_pass())
    return min(times) / rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--checkpoint", help="a robprune checkpoint instead of the community model")
    ap.add_argument("--data", default=None, help="with --checkpoint: digits (default: CIFAR-10 JPEG test images)")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--eps", type=float, default=0.5, help="in units of 1/255")
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    if args.data == "digits":
        import robprune as rp
        from robprune.evaluation import fixed_subset

        data = rp.load_dataset("digits")
        x, y = fixed_subset(data.x_test, data.y_test, args.images)
        x = x.float() / 255
        model = rp.load_checkpoint(args.checkpoint)[0].eval()
        source = f"{args.checkpoint} on digits test images"
    else:
        model, x, y, source = model_and_images(args.arch, args.images, torch.device("cpu"), args.checkpoint)
    eps = args.eps / 255
    attacker = attack_model(model)
    print(f"# {machine()}\n# {source}, {len(x)} images, eps {args.eps:g}/255, {torch.get_num_threads()} threads")
    row, calls = count_passes(model, attacker, x, y, eps, args.batch)
    shape = tuple(x.shape[1:])
    seconds = {name: a["seconds"] for name, a in row["attacks"].items()}
    print(f"suite: clean {row['clean']['correct']}, robust {row['worst_case']['correct']}, "
          f"{row['total_seconds']:.1f} s in all")
    print("| attack | calls | fwd+bwd rows (copy) | fwd rows (copy) | fwd rows (original) | mean batch | time s "
          "| bound s | time / bound |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    total_bound = 0.0
    for name in seconds:
        kinds = {(which, grad): calls.get((name, which, grad), []) for which in ("copy", "original")
                 for grad in (True, False)}
        n_calls = sum(len(v) for v in kinds.values())
        if not n_calls:
            print(f"| {name} | 0 | 0 | 0 | 0 | - | {seconds[name]:.2f} | 0 | - |")
            continue
        bound = 0.0
        for (which, grad), rows in kinds.items():
            if rows:
                mean = max(1, round(sum(rows) / len(rows)))
                module = attacker if which == "copy" else model
                bound += sum(rows) * per_row_cost(module, shape, mean, grad, which == "copy")
        total_bound += bound
        fb, f, fo = (sum(kinds[k]) for k in (("copy", True), ("copy", False), ("original", False)))
        mean_batch = sum(sum(v) for v in kinds.values()) / n_calls
        print(f"| {name} | {n_calls} | {fb} | {f} | {fo} | {mean_batch:.0f} | {seconds[name]:.2f} | {bound:.2f} | "
              f"{seconds[name] / bound:.2f} |")
    suite_s = sum(seconds.values())
    print(f"attacks together: {suite_s:.1f} s, bound {total_bound:.1f} s: time / bound = {suite_s / total_bound:.2f} "
          f"(target <= 1.3: {'met' if suite_s / total_bound <= 1.3 else 'missed'})")


if __name__ == "__main__":
    main()
