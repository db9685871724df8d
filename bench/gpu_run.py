"""The prepared GPU run (one call, under 8 minutes on one H100): throughput, a short robust-pruning study, AutoAttack.

Stages, each writing its JSON to OUT as soon as it finishes (a timeout keeps what is done):
1. smoke: CUDA checks (folded model equals the original, masks stay zero after a bf16 step, PGD stays in the ball).
2. throughput: training images/s of resnet20, resnet56, resnet18 with ce, fgsm and pgd-10 objectives,
   fp32 and bf16, channels_last; torch.compile once (resnet18, ce, bf16); PGD-10 attack images/s.
3. study (with CIFAR): ResNet-18 FGSM-RS adversarial training (bf16), then CP 90% and Ours 90% (hinge + CP)
   fine-tuned adversarially; clean accuracy on the 10,000 test images, PGD-10 at 8/255, and --suite autoattack
   at 8/255 on 1,000 test images (timed: the AutoAttack images/s of issue 12).

Usage: PYTHONPATH=src python3 bench/gpu_run.py --data imagefolder:gpu_data/cifar10-jpeg.tar.gz --out $OUT
       (--quick: tiny sizes, for a CPU check of the script itself)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from robprune import TrainConfig, create_model, train
from robprune.attacks import pgd
from robprune.data import load_dataset
from robprune.evaluation import AttackSpec, attack_model, evaluate, fixed_subset, fold_batchnorm, worst_case
from robprune.evaluation.suite import SUITES
from robprune.evaluation.stats import weight_stats
from robprune.training.loop import autocast_factory
from robprune.training.objectives import OBJECTIVES


def dump(out: Path, name: str, obj) -> None:
    (out / name).write_text(json.dumps(obj, indent=2, default=str))
    print(f"[{time.strftime('%H:%M:%S')}] wrote {name}", flush=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def smoke(device) -> dict:
    torch.manual_seed(0)
    model = create_model("resnet20").to(device)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(64, 3, 32, 32, device=device))
    model.eval()
    x = torch.rand(32, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (32,), device=device)
    with torch.no_grad():
        diff = float((model(x) - fold_batchnorm(model)(x)).abs().max())
    x_adv = pgd(attack_model(model), x, y, 8 / 255, 10)
    in_ball = bool(((x_adv - x).abs() <= 8 / 255 + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1)
    return {"folded_max_abs_diff": diff, "pgd_in_ball": in_ball, "device": torch.cuda.get_device_name(0)
            if device.type == "cuda" else "cpu"}


def train_throughput(arch: str, adv: str, precision: str, device, steps: int, batch: int, compile_: bool = False):
    torch.manual_seed(0)
    model = create_model(arch).to(device).to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile_ else model
    config = TrainConfig(adv=adv, adv_steps=10, precision=precision)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    autocast = autocast_factory(device, precision)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    objective = OBJECTIVES.get(adv)
    model.train()

    def step():
        out = objective(net, x, y, config, gen, autocast)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - t0)


def throughput(device, quick: bool) -> dict:
    rows = []
    steps, batch = (2, 16) if quick else (20, 256)
    for arch in ("resnet20", "resnet56", "resnet18"):
        for precision in ("fp32", "bf16"):
            for adv in ("ce", "fgsm", "pgd"):
                ips = train_throughput(arch, adv, precision, device, steps if adv != "pgd" else max(2, steps // 4),
                                       batch)
                rows.append({"arch": arch, "precision": precision, "objective": adv, "images_per_s": ips,
                             "epoch_s_50k": 50000 / ips})
                print(rows[-1], flush=True)
    if device.type == "cuda":
        try:
            ips = train_throughput("resnet18", "ce", "bf16", device, steps, batch, compile_=True)
            rows.append({"arch": "resnet18", "precision": "bf16", "objective": "ce", "compile": True,
                         "images_per_s": ips, "epoch_s_50k": 50000 / ips})
        except Exception as err:  # compile needs a working toolchain; record why not
            rows.append({"compile_error": f"{type(err).__name__}: {str(err)[:200]}"})
    # PGD-10 attack throughput (eval, fast path) on resnet56 and resnet18
    for arch in ("resnet56", "resnet18"):
        model = create_model(arch).to(device).eval()
        x = torch.rand(batch * 2, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (len(x),), device=device)
        fast = attack_model(model)
        xc = x.contiguous(memory_format=torch.channels_last)
        pgd(fast, xc, y, 8 / 255, 2)
        sync(device)
        t0 = time.perf_counter()
        pgd(fast, xc, y, 8 / 255, 10)
        sync(device)
        rows.append({"arch": arch, "attack": "pgd-10 fp32 fast path",
                     "images_per_s": len(x) / (time.perf_counter() - t0)})
    return {"rows": rows}


ARMS = {"CP90": {"method": "cp", "amount": 0.9}, "Ours90": {"method": "cp", "amount": 0.9, "lam": 0.003, "tau": "q0.9"},
        "CP99": {"method": "cp", "amount": 0.99},
        "Ours99": {"method": "cp", "amount": 0.99, "lam": 0.003, "tau": "q0.9"},
        "RP10": {"method": "rp", "amount": 0.1}}


def study(data_spec: str, device, out: Path, quick: bool, dense_epochs: int = 10, ft_epochs: int = 5,
          arms: tuple[str, ...] = ("CP90", "Ours90"), aa_images: int = 1000,
          aa_models: tuple[str, ...] = ("dense", "CP90")) -> None:
    data = load_dataset(data_spec)
    eps = 8 / 255
    dense_cfg = TrainConfig(epochs=2 if quick else dense_epochs, batch_size=512, lr=0.2, adv="fgsm", adv_eps=eps,
                            precision="bf16", seed=0, n_train=512 if quick else None, n_test=256 if quick else None)
    torch.manual_seed(0)
    mean, std = data.channel_stats()
    model = create_model("resnet18", in_channels=data.in_channels, mean=mean, std=std).to(device)
    t0 = time.perf_counter()
    dense = train(model, data, dense_cfg, out_dir=out / "runs" / "dense")
    results = {"dense": {"train": dense["history"], "config": asdict(dense_cfg), "seconds": time.perf_counter() - t0}}
    models = {"dense": (model, {})}
    dump(out, "study.json", results)
    ft = replace(dense_cfg, epochs=1 if quick else ft_epochs, lr=0.02)
    for name in arms:
        extra = ARMS[name]
        m = create_model("resnet18", in_channels=data.in_channels, mean=mean, std=std).to(device)
        m.load_state_dict(model.state_dict())
        cfg = replace(ft, **extra).validate()
        t0 = time.perf_counter()
        res = train(m, data, cfg, out_dir=out / "runs" / name)
        results[name] = {"train": res["history"], "config": asdict(cfg), "seconds": time.perf_counter() - t0}
        models[name] = (m, res["masks"])
        dump(out, "study.json", results)
    n_aa = 64 if quick else aa_images
    x_aa, y_aa = fixed_subset(data.x_test, data.y_test, n_aa)
    for name, (m, _) in models.items():
        m.eval()
        ev = evaluate(m, data.x_test[: 512 if quick else None], data.y_test[: 512 if quick else None],
                      [2 / 255, 4 / 255, 8 / 255], 10, batch_size=500)
        results[name]["pgd10"] = ev
        results[name]["stats"] = {k: v for k, v in weight_stats(m).items() if k != "layers"}
        dump(out, "study.json", results)
    for name in aa_models:
        m = models[name][0]
        suite = SUITES["autoattack"] if not quick else (AttackSpec("apgd-ce", 5), AttackSpec("apgd-t", 5,
                                                        options=(("targets", 2),)),
                                                        AttackSpec("fab-t", 5, options=(("targets", 2),)),
                                                        AttackSpec("square", 20))
        sync(device)
        t0 = time.perf_counter()
        aa = worst_case(m, x_aa, y_aa, eps, suite, batch_size=500, attacker=attack_model(m))
        sync(device)
        aa.pop("robust_mask"), aa.pop("clean_mask")
        aa["seconds"] = time.perf_counter() - t0
        aa["images_per_s"] = n_aa / aa["seconds"]
        results[name]["autoattack"] = aa
        dump(out, "study.json", results)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data")
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--dense-epochs", type=int, default=10)
    p.add_argument("--ft-epochs", type=int, default=5)
    p.add_argument("--arms", default="CP90,Ours90")
    p.add_argument("--aa-images", type=int, default=1000)
    p.add_argument("--aa-models", default="dense,CP90")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    dump(out, "smoke.json", smoke(device))
    if not args.skip_throughput:
        dump(out, "throughput.json", throughput(device, args.quick))
    if args.data:
        study(args.data, device, out, args.quick, args.dense_epochs, args.ft_epochs, tuple(args.arms.split(",")),
              args.aa_images, tuple(args.aa_models.split(",")))
    print(f"total {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
