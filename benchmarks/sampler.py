"""EDM decoder costs (keypointdiffuser.edm, keypointdiffuser.decoder): sampling time and denoiser training-step
time and peak memory.

1. Sampling: 16 clouds x 1,024 / 2,048 points with the `cpu` preset's denoiser (its `DecoderConfig`: width and
   FiLM layers), EDM's deterministic 18-step Heun (35 network evaluations) and the paper's 120-step Heun with
   churn (239).
2. Denoiser forward + backward at B = 16, 1,024 / 2,048 points, for the `cpu` and `paper` (width 512, 4 + 4
   FiLM layers) denoisers: the network alone, and the whole diffusion loss (network + Chamfer + repulsion).

    .venv/bin/python benchmarks/sampler.py                  # everything (several minutes on 2 idle CPU cores)
    .venv/bin/python benchmarks/sampler.py --quick          # 1,024 points only, 18 steps, 1 repeat
    .venv/bin/python benchmarks/sampler.py --parts sample   # only the sampling table (or: train)
    .venv/bin/python benchmarks/sampler.py --sample-preset paper --device cuda

Each case runs in a fresh process: one warm-up call, then the median of `--repeats` timed calls. Wall-clock and
CPU seconds are both printed: on a shared machine the wall clock also counts time spent waiting for a core.
"peak extra" is the growth of the process's peak resident memory over its size before the call (CPU), or the
peak CUDA allocation minus the memory held before the call (GPU). The denoiser has K = 10 keypoint tokens and a
35-number condition (K = 10, D = 5).
"""
from __future__ import annotations
import argparse, json, multiprocessing as mp, resource, statistics, time

import torch

from keypointdiffuser.core import preset, get_device
from keypointdiffuser.decoder import PointDenoiser
from keypointdiffuser.edm import EDMPrecond, SAMPLER_SETTINGS, diffusion_loss, edm_sample

K, D_z = 10, 5


def _rss_mib() -> float:
    "Current resident memory of this process (MiB)."
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _denoiser(preset_name: str, device) -> EDMPrecond:
    cfg = preset(preset_name)
    torch.manual_seed(0)
    net = PointDenoiser.from_config(cfg.decoder, 3 * K + D_z, K=K)
    torch.nn.init.normal_(net.out.weight, std=0.01)  # a trained-like, nonzero last layer
    return EDMPrecond(net, cfg.edm.sigma_data).to(device)


def _case(kind: str, preset_name: str, B: int, N: int, steps: int, repeats: int, device: str, threads: int, q):
    "Run one case in this (fresh) process and put a dict of results on q."
    if threads: torch.set_num_threads(threads)
    dev = torch.device(device)
    D = _denoiser(preset_name, dev)
    g = torch.Generator(device=dev).manual_seed(0)
    c = torch.randn(B, 3 * K + D_z, generator=g, device=dev)
    if kind == "sample":
        st = SAMPLER_SETTINGS["edm" if steps == 18 else "paper"] | dict(num_steps=steps)
        fn = lambda: edm_sample(D, c, N, generator=g, **st)
    else:
        X = torch.rand(B, N, 3, generator=g, device=dev) * 2 - 1
        sigma = torch.full((B,), 0.3, device=dev)
        def fn():
            if kind == "net":
                x = X + sigma[:, None, None] * torch.randn(X.shape, generator=g, device=dev)
                D(x, sigma, c).square().sum().backward()
            else: diffusion_loss(D, X, c, sigma, generator=g)["loss"].backward()
            D.zero_grad(set_to_none=True)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda": torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    else: base = _rss_mib()
    fn(); sync()  # warm-up, also the peak-memory measurement
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if dev.type == "cuda" else _peak_rss_mib() - base
    walls, cpus = [], []
    for _ in range(repeats):
        w, t = time.perf_counter(), time.process_time()
        fn(); sync()
        walls.append(time.perf_counter() - w); cpus.append(time.process_time() - t)
    q.put(dict(wall=statistics.median(walls), cpu=statistics.median(cpus), peak=peak,
               params=sum(p.numel() for p in D.parameters())))


def run(kind, preset_name, B, N, steps, repeats, device, threads) -> dict:
    ctx = mp.get_context("spawn"); q = ctx.Queue()
    p = ctx.Process(target=_case, args=(kind, preset_name, B, N, steps, repeats, device, threads, q)); p.start()
    out = q.get(); p.join()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,024 points, 18 steps, 1 repeat")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per case (default 3, sampling 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    ap.add_argument("--parts", default="sample,train", help="comma-separated: sample, train")
    ap.add_argument("--sample-preset", default="cpu", help="preset whose denoiser the sampling table uses")
    a = ap.parse_args(argv)
    device = str(get_device(a.device))
    Ns = (1024,) if a.quick else (1024, 2048)
    steps_list = (18,) if a.quick else (18, 120)
    rep_s = a.repeats or 1
    rep_t = 1 if a.quick else (a.repeats or 3)
    print(f"device {device}, torch {torch.__version__}, {a.threads or torch.get_num_threads()} threads")

    parts = set(a.parts.split(","))
    if "sample" in parts:
        dc = preset(a.sample_preset).decoder
        print(f"\nSampling 16 clouds, {a.sample_preset}-preset denoiser (width {dc.width}, {dc.n_layers} + {dc.n_layers} FiLM layers), Heun")
        print(f"{'points':>7s} {'steps':>6s} {'NFE':>5s} {'params':>8s} {'wall s':>8s} {'CPU s':>8s} {'wall ms/NFE':>12s}")
        for N in Ns:
            for steps in steps_list:
                r = run("sample", a.sample_preset, 16, N, steps, rep_s, device, a.threads)
                nfe = 2 * steps - 1
                print(f"{N:7d} {steps:6d} {nfe:5d} {r['params'] / 1e6:7.2f}M {r['wall']:8.2f} {r['cpu']:8.2f} {1e3 * r['wall'] / nfe:12.1f}", flush=True)
    if "train" in parts:
        print("\nDenoiser forward + backward, B = 16")
        print(f"{'preset':>7s} {'width':>6s} {'layers':>7s} {'params':>8s} {'points':>7s} {'what':>14s} {'wall s':>8s} {'CPU s':>8s} {'peak extra MiB':>15s}")
        for name in ("cpu", "paper"):
            dc = preset(name).decoder
            for N in Ns:
                for kind, label in (("net", "network"), ("loss", "diffusion loss")):
                    r = run(kind, name, 16, N, 0, rep_t, device, a.threads)
                    print(f"{name:>7s} {dc.width:6d} {dc.n_layers:3d}+{dc.n_layers:<3d} {r['params'] / 1e6:7.2f}M {N:7d} {label:>14s} "
                          f"{r['wall']:8.2f} {r['cpu']:8.2f} {r['peak']:15.0f}", flush=True)


if __name__ == "__main__":
    main()
