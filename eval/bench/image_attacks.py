"""FGSM and PGD throughput (images/s): fmadv against torchattacks, same model and batch;
then what each box convention costs fmadv's L2 attacks.

torchattacks is not a dependency of fmadv; install it for this benchmark only with
``pip install --no-deps torchattacks`` (its FGSM and PGD need torch alone). Both sides
use the cross-entropy of the model's logits, the [0, 1] box and the same budget; PGD runs
10 steps with a random start. fmadv's PGD also keeps each row's best iterate, one extra
forward pass per step that torchattacks does not do.

Run:  python eval/bench/image_attacks.py
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from fmadv.attacks import FGSM, PGD, L2Step
from fmadv.losses import cross_entropy
from fmadv.models.image import MLP, LeNet


def images_per_second(run, batch: int, repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return batch / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--l2-eps", type=float, default=1.5, help="budget of the box table")
    args = parser.parse_args()
    try:
        import torchattacks
    except ImportError:
        torchattacks = None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"# Attack throughput, batch {args.batch}, eps {args.eps}, PGD {args.steps} steps, "
          f"{device}, {os.cpu_count()} cores, torch {torch.__version__}\n")  # fmt: skip
    print("| model | attack | torchattacks img/s | fmadv img/s | ratio |")
    print("|---|---|---:|---:|---:|")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28, generator=generator).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
    step = 2.5 * args.eps / args.steps
    nets = networks(generator, device, y)
    for name, model, loss in nets:
        ours = {
            "FGSM": lambda loss=loss: FGSM(args.eps).perturb(x, loss),
            "PGD": lambda loss=loss: PGD(args.eps, steps=args.steps, step_size=step).perturb(
                x, loss
            ),
        }
        theirs = {}
        if torchattacks is not None:
            theirs = {
                "FGSM": torchattacks.FGSM(model, eps=args.eps),
                "PGD": torchattacks.PGD(model, eps=args.eps, alpha=step, steps=args.steps),
            }
        for attack, run in ours.items():
            fmadv_rate = images_per_second(run, args.batch, args.repeats)
            if attack in theirs:
                ref = images_per_second(lambda a=theirs[attack]: a(x, y), args.batch, args.repeats)
                ratio = fmadv_rate / ref
                print(f"| {name} | {attack} | {ref:,.0f} | {fmadv_rate:,.0f} | {ratio:.2f}x |")
            else:
                print(f"| {name} | {attack} | (not installed) | {fmadv_rate:,.0f} | |")
    box_costs(args, x, nets)


def networks(generator, device, y) -> list:
    """(name, model in eval mode, its per-row cross-entropy on labels y) for MLP and LeNet."""
    nets = []
    for name, model in (("MLP", MLP(generator=generator)), ("LeNet", LeNet(generator=generator))):
        model = model.to(device).eval()

        def loss(z, net=model):
            return cross_entropy(net(z), y)

        nets.append((name, model, loss))
    return nets


def box_costs(args, x, nets) -> None:
    """img/s of the L2 step and L2 PGD under each box convention (the projected step
    solves for its length; the L-inf attacks project at the clipped step's cost)."""
    boxes = ("clip", "project", "none")
    print(f"\n# L2 attacks at eps {args.l2_eps} under each box convention (img/s)\n")
    print("| model | attack | " + " | ".join(boxes) + " |")
    print("|---|---|" + "---:|" * len(boxes))
    step = 2.5 * args.l2_eps / args.steps
    for name, _, loss in nets:
        attacks = {
            "L2 step": lambda box: L2Step(args.l2_eps, box=box),
            "L2 PGD": lambda box: PGD(
                args.l2_eps, norm="l2", steps=args.steps, step_size=step, box=box
            ),
        }
        for attack, make in attacks.items():
            made = [make(box) for box in boxes]
            rates = [
                images_per_second(lambda a=a, f=loss: a.perturb(x, f), args.batch, args.repeats)
                for a in made
            ]
            print(f"| {name} | {attack} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")


if __name__ == "__main__":
    main()
