"""Overhead of the trainer per optimiser step, against a bare Adam loop over the same batches, and the cost of a
checkpoint (weights + optimiser + random state + loss plot). Prints medians in milliseconds.

    .venv/bin/python benchmarks/train.py [--quick]
"""
import argparse, statistics, tempfile, time
from pathlib import Path

import torch
from torch.utils.data import default_collate

from keypointdiffuser.core import TrainConfig, seed_everything
from keypointdiffuser.train import ToyClouds, ToyKeypointFit, Trainer, epoch_permutation


def bare_loop(method, data, steps, B):
    "Adam on the toy loss with the same batch order, no logging, clipping or checkpoints."
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    method.set_total_steps(steps)
    perm = epoch_permutation(len(data), 0, 0)
    t0 = time.perf_counter()
    for s in range(steps):
        idx = perm[(s * B) % len(data):(s * B) % len(data) + B].tolist()
        b = default_collate([data[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        out = method.loss(b, s); out["loss"].backward(); opt.step()
        _ = {k: float(v.detach()) for k, v in out.items()}
    return (time.perf_counter() - t0) / steps


def main(quick=False):
    steps, reps = (50, 3) if quick else (200, 5)
    data = ToyClouds(64, 128)
    bare, trained, ckpt = [], [], []
    for r in range(reps):
        seed_everything(r); bare.append(bare_loop(ToyKeypointFit(K=8), data, steps, 8))
        with tempfile.TemporaryDirectory() as d:
            seed_everything(r)
            cfg = TrainConfig(lr=1e-2, batch_size=8, accum_steps=1, max_steps=steps, ema=0.99, log_every=10, ckpt_every=10**9)
            tr = Trainer(ToyKeypointFit(K=8), data, Path(d), cfg, progress=False)
            t0 = time.perf_counter(); tr.fit(); t_fit = time.perf_counter() - t0
            t0 = time.perf_counter(); tr.save_checkpoint(); ckpt.append(time.perf_counter() - t0)
            trained.append((t_fit - ckpt[-1]) / steps)  # fit ends with one checkpoint: leave it out
    med = lambda x: 1e3 * statistics.median(x)
    print(f"toy method, batch 8 × 128 points, {steps} steps, median of {reps} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"bare Adam loop          {med(bare):7.2f} ms/step")
    print(f"Trainer.fit (EMA, log)  {med(trained):7.2f} ms/step  (its final checkpoint left out)")
    print(f"trainer overhead        {med(trained) - med(bare):7.2f} ms/step")
    print(f"save_checkpoint + plot  {med(ckpt):7.2f} ms")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    main(ap.parse_args().quick)
