"""Train the DDPM abundance prior on synthetic maps; resumable, reproducible from a seed.

    python -m urdm_plugin.core.diffusion.train --steps 40000 --out build/prior [--export urdm_plugin/weights]

Recipe: ε-prediction loss on single-channel maps from ``core.synthetic.training_batch``
(seeds from ``TRAIN_SEED_BASE``, never the benchmark's), mapped to [-1, 1]; timesteps
drawn uniformly from [0, t_max) (the sampler never starts above t = 600, so training the
pure-noise end would waste capacity); AdamW, constant learning rate after a warm-up; an
exponential moving average (EMA) of the weights is what gets shipped.

A checkpoint (model, EMA, optimiser, step, both random-generator states) is written
atomically every ``--ckpt-every`` steps; rerunning the same command resumes from it and
continues the exact same data stream. CUDA is used when present.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ..synthetic import TRAIN_SEED_BASE, training_batch
from . import schedule

VAL_SEED = TRAIN_SEED_BASE + 999_999  # validation maps: fixed, disjoint from the training stream


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def diffusion_loss(model, x0, t, noise, abar):
    """Mean squared error of ε prediction at timesteps t for clean maps x0 in [-1, 1]."""
    a = abar[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    return ((model(xt, t) - noise) ** 2).mean()


def make_validation(size: int, n: int = 64):
    import torch

    rng = np.random.default_rng(VAL_SEED)
    x0 = torch.from_numpy(training_batch(n, size, rng) * 2 - 1)[:, None]
    t = torch.from_numpy(np.tile([20, 100, 250, 450], n // 4)).long()
    g = torch.Generator().manual_seed(VAL_SEED)
    noise = torch.randn(x0.shape, generator=g)
    return x0, t, noise


DATA_KINDS = ("synthetic", "photo-mix")


def batch_source(kind: str, photo_share: float):
    """The training-map generator ``f(batch, size, rng)`` for ``--data``.

    ``synthetic``: core.synthetic only; ``photo-mix``: each batch takes ``photo_share`` of its
    maps from soft segmentations of photographs (core.diffusion.natural_maps) and the rest from
    core.synthetic.
    """
    if kind == "synthetic":
        return training_batch
    if kind != "photo-mix":
        raise ValueError(f"unknown training data {kind!r}; use one of {DATA_KINDS}")
    from . import natural_maps

    def mixed(batch, size, rng):
        n_photo = int(round(photo_share * batch))
        parts = [training_batch(batch - n_photo, size, rng)] if batch - n_photo else []
        if n_photo:
            parts.append(natural_maps.training_batch(n_photo, size, rng))
        return np.concatenate(parts)[rng.permutation(batch)]

    return mixed


def train(args) -> dict:
    """Train (or resume, or fine-tune from ``args.init``) the abundance prior with the
    command line's ``args``; checkpoints into ``args.out``, exports the EMA weights to
    ``args.export``. Returns steps, final train/validation loss, wall seconds, parameters."""
    import torch

    from .unet import AbundanceUNet, count_parameters
    from .weights import save_prior

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = _device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"

    torch.manual_seed(args.seed)  # weight init only; training is a standalone process
    model = AbundanceUNet(base_channels=args.channels).to(dev)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    abar = torch.tensor(schedule.alphas_cumprod(), dtype=torch.float32, device=dev)
    rng = np.random.default_rng(TRAIN_SEED_BASE + args.seed)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    source = batch_source(args.data, args.photo_share)
    step, wall, history = _starting_point(args, ckpt_path, dev, (model, ema, opt), rng, gen)

    val = [v.to(dev) for v in make_validation(args.size)]

    def val_loss() -> float:
        with torch.no_grad():
            return float(diffusion_loss(ema, val[0], val[1], val[2], abar))

    def save_checkpoint():
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "step": step, "wall": wall, "np_rng": json.dumps(rng.bit_generator.state),
                    "torch_rng": gen.get_state(), "history": json.dumps(history)}, tmp)
        os.replace(tmp, ckpt_path)

    try:
        from tqdm import tqdm

        bar = tqdm(total=args.steps, initial=step, unit="step", disable=args.quiet, dynamic_ncols=True)
    except ImportError:  # pragma: no cover
        bar = None
    running = None
    t_last = time.time()
    model.train()
    while step < args.steps:
        x0 = torch.from_numpy(source(args.batch, args.size, rng) * 2 - 1)[:, None].to(dev)
        lv = _training_step(args, (model, ema, opt), abar, x0, gen, step, dev)
        step += 1
        running = lv if running is None else 0.99 * running + 0.01 * lv
        now = time.time()
        wall += now - t_last
        t_last = now
        if bar is not None:
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{running:.4f}")
        if step % args.ckpt_every == 0 or step == args.steps:
            history.append({"step": step, "train_loss": round(running, 6), "val_loss": round(val_loss(), 6),
                            "wall_s": round(wall, 1)})
            save_checkpoint()
            if args.quiet:
                print(json.dumps(history[-1]), flush=True)
    if bar is not None:
        bar.close()

    result = {"steps": step, "train_loss": history[-1]["train_loss"] if history else None,
              "val_loss": history[-1]["val_loss"] if history else None, "wall_s": round(wall, 1),
              "parameters": count_parameters(model)}
    if args.export:
        save_prior(ema, Path(args.export), _model_card(args, result, history, dev))
        print(f"exported EMA weights to {args.export}", file=sys.stderr)
    return result


def _starting_point(args, ckpt_path: Path, dev, nets: tuple, rng, gen) -> tuple:
    """(step, wall seconds, history) to start from: the checkpoint's (its model, EMA,
    optimiser and both random generators restored into ``nets`` = (model, ema, opt), ``rng``
    and ``gen``) unless ``args.restart``; else the prior ``args.init`` when given (its
    weights into model and EMA, its last history entry kept); else from scratch."""
    import torch

    model, ema, opt = nets
    step, wall, history = 0, 0.0, []
    if args.init and not (ckpt_path.exists() and not args.restart):
        from .weights import load_prior

        init_model, init_card = load_prior(Path(args.init), device=dev)
        model.load_state_dict(init_model.state_dict())
        ema.load_state_dict(init_model.state_dict())
        history = [dict(h, phase="init") for h in init_card.get("history", [])[-1:]]
        print(f"fine-tuning from {args.init}", file=sys.stderr)

    if ckpt_path.exists() and not args.restart:
        ck = torch.load(ckpt_path, map_location=dev, weights_only=True)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, wall = int(ck["step"]), float(ck["wall"])
        rng.bit_generator.state = json.loads(ck["np_rng"])
        gen.set_state(ck["torch_rng"])
        history = json.loads(ck["history"])
        print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)
    return step, wall, history


def _training_step(args, nets: tuple, abar, x0, gen, step: int, dev) -> float:
    """One optimiser step on the batch ``x0`` (batch, 1, size, size) in [-1, 1] (warm-up
    learning rate, clipped gradients) and the EMA update; returns the batch's loss."""
    import torch

    model, ema, opt = nets
    t = torch.randint(0, args.t_max, (args.batch,), generator=gen).to(dev)
    noise = torch.randn(x0.shape, generator=gen).to(dev)
    for g in opt.param_groups:
        g["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
    loss = diffusion_loss(model, x0, t, noise, abar)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    decay = min(args.ema, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
    return loss.item()


def _model_card(args, result: dict, history: list, dev) -> dict:
    """The exported prior's card: recipe, data, final losses, history, machine, licence."""
    import torch

    step = result["steps"]
    return {
        "name": "URDM abundance prior",
        "description": "Single-channel DDPM (epsilon prediction) on synthetic abundance maps in [-1, 1].",
        "recipe": {"command": "make prior", "seed": args.seed, "steps": step, "batch": args.batch,
                   "map_size": args.size, "lr": args.lr, "warmup": args.warmup, "ema": args.ema,
                   "t_max": args.t_max, "T": schedule.T, "beta": [schedule.BETA_START, schedule.BETA_END],
                   "data": ("urdm_plugin.core.synthetic.training_batch (fields, regions, patches, lines, texture; P in [2, 10])"
                            if args.data == "synthetic" else
                            f"{1 - args.photo_share:.0%} core.synthetic.training_batch + {args.photo_share:.0%} "
                            "core.diffusion.natural_maps.training_batch (soft segmentations of scikit-image's sample photos)"),
                   "init": args.init or None,
                   "data_seed": TRAIN_SEED_BASE + args.seed},
        "final_train_loss": result["train_loss"], "final_val_loss": result["val_loss"],
        "history": history[-20:], "wall_seconds": result["wall_s"], "parameters": result["parameters"],
        "machine": f"{platform.machine()} {platform.processor() or ''} {dev.type}, torch threads {torch.get_num_threads()}".strip(),
        "licence": ("GPL-2.0-or-later (trained only on the project's own synthetic maps" + (
                    ")" if args.data == "synthetic" else " and scikit-image's public-domain/CC0 sample photos)")),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train the URDM abundance prior (resumable).")
    p.add_argument("--out", default="build/prior", help="checkpoint folder (resumes from it)")
    p.add_argument("--export", default="", help="write EMA weights + model card to this folder at the end")
    p.add_argument("--steps", type=int, default=40000)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--size", type=int, default=32, help="training map size (px, multiple of 4)")
    p.add_argument("--channels", type=int, default=16, help="UNet base width (the shipped prior: 16)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--t-max", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--data", default="synthetic", choices=DATA_KINDS, help="training maps")
    p.add_argument("--photo-share", type=float, default=0.5, help="share of photo maps with --data photo-mix")
    p.add_argument("--init", default="", help="start from these weights (a weights folder) instead of random")
    p.add_argument("--quiet", action="store_true", help="no progress bar; one JSON line per checkpoint")
    return p


def main(argv=None) -> int:
    result = train(build_parser().parse_args(argv))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
