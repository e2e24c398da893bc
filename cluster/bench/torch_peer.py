#!/usr/bin/env python3
"""PyTorch peer of the MNIST runs in configs/: the same models, optimiser (Adam 1e-3), batch (128)
and targets (pixel/255, Bernoulli reconstruction in nats per image).

  --model ae       configs/mnist-ae.yaml: 784-512-256-32-256-512-784, ReLU
  --model vae      configs/mnist-vae.yaml: 784-512-256-(mu, logvar 20)-256-512-784, ReLU
  --model convvae  configs/mnist-conv-vae.yaml: conv 1->32 and 32->64 (k4 s2 p1), dense 3136->256,
                   latent 20; decoder dense 20->256->3136, transposed conv 64->32 and 32->1

Two modes, one JSON line each:

  quality:     --epochs E   trains E epochs on one process, then the test loss (mean per image,
                            nats: the negative ELBO of a VAE with one latent draw, as `aedist eval`,
                            and its reconstruction and KL terms; the BCE of an AE and its mean squared
                            error per pixel), and the epochs' throughput;
  throughput:  --steps S    times S training steps after --warmup W, on one process or, with
                            --ddp N, N processes under DistributedDataParallel (gloo, one host);
                            --global-batch splits --batch across them (else --batch per process).

    python3 cluster/bench/torch_peer.py --data mnist.h5 --model convvae --epochs 10 --threads 2
    python3 cluster/bench/torch_peer.py --data mnist.h5 --model vae --steps 100 --threads 1 --ddp 2 --global-batch
"""
import argparse, json, os, time
import h5py
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def bernoulli_nats(logits, x):
    """Per-image reconstruction loss of a Bernoulli decoder, in nats."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


class VAE(nn.Module):
    """A VAE: features -> (mu, logvar) heads -> one reparameterised draw -> generator logits. The
    parts are built in that order (from functions), so that the seed gives the same initial weights."""

    def __init__(self, features, width, generator, z=20):
        super().__init__()
        self.features = features()
        self.heads = nn.Linear(width, 2 * z)
        self.generator = generator()

    def terms(self, x):
        """Per-image Bernoulli reconstruction (nats) and KL to N(0, I), one latent draw each."""
        mu, logvar = self.heads(self.features(x)).chunk(2, dim=1)
        code = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = bernoulli_nats(self.generator(code), x)
        kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(1)
        return recon, kl

    def forward(self, x):   # the training loss; DDP hooks its gradients through this call
        recon, kl = self.terms(x)
        return (recon + kl).mean()

    @torch.no_grad()
    def evaluate(self, x):
        parts = [self.terms(x[i:i + 1000]) for i in range(0, len(x), 1000)]
        recon = torch.cat([p[0] for p in parts]).mean().item()
        kl = torch.cat([p[1] for p in parts]).mean().item()
        return {"test_loss": recon + kl, "recon": recon, "kl": kl}


class AE(nn.Module):
    def __init__(self, d=784, z=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, z),
                                 nn.Linear(z, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, d))

    def forward(self, x):
        return bernoulli_nats(self.net(x), x).mean()

    @torch.no_grad()
    def evaluate(self, x):
        logits = torch.cat([self.net(x[i:i + 1000]) for i in range(0, len(x), 1000)])
        bce = bernoulli_nats(logits, x).mean().item()
        return {"test_loss": bce, "recon": bce, "mse_per_pixel": F.mse_loss(torch.sigmoid(logits), x).item()}


def make(model):
    if model == "ae":
        return AE()
    if model == "vae":
        return VAE(lambda: nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU()), 256,
                   lambda: nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                         nn.Linear(512, 784)))
    return VAE(lambda: nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                     nn.Flatten(), nn.Linear(3136, 256), nn.ReLU()), 256,
               lambda: nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 3136), nn.ReLU(),
                                     nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(32, 1, 4, 2, 1)))


def images(f, name, model):
    shape = (-1, 1, 28, 28) if model == "convvae" else (-1, 784)
    return torch.from_numpy(f[name][()].reshape(shape).astype(np.float32) / 255)


def quality(args, train, test):
    model = make(args.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = len(train) // args.batch          # the last partial batch of each epoch is dropped, as aedist does
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(len(train))
        for s in range(steps):
            loss = model(train[order[s * args.batch:(s + 1) * args.batch]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    return {"peer": f"torch {args.model}", "epochs": args.epochs, **model.evaluate(test),
            "samples_per_second": args.epochs * steps * args.batch / seconds}


def throughput(rank, world, args, train, results=None):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed + rank)
    model = make(args.model)
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank, world_size=world)
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = args.batch // world if args.global_batch else args.batch
    generator = torch.Generator().manual_seed(args.seed + rank)

    def step():
        x = train[torch.randint(len(train), (batch,), generator=generator)]
        loss = model(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    if world > 1:
        torch.distributed.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    if world > 1:
        torch.distributed.barrier()
    seconds = time.perf_counter() - start
    line = {"peer": f"torch {args.model}", "procs": world, "per_rank_batch": batch, "global_batch": batch * world,
            "steps": args.steps, "seconds": seconds, "last_loss": loss.item(),
            "samples_per_second": args.steps * batch * world / seconds}
    if world > 1:
        torch.distributed.destroy_process_group()
    if rank == 0:
        if results is not None:
            results.put(line)
        else:
            return line


def spawned(rank, world, args, results):
    with h5py.File(args.data, "r") as f:
        train = images(f, "train/images", args.model)
    throughput(rank, world, args, train, results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=0)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ddp", type=int, default=1)
    ap.add_argument("--global-batch", action="store_true")
    ap.add_argument("--port", type=int, default=29640)
    ap.add_argument("--model", default="vae", choices=["ae", "vae", "convvae"])
    args = ap.parse_args()
    if (args.epochs > 0) == (args.steps > 0):
        ap.error("give --epochs (quality) or --steps (throughput)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    common = {"torch": torch.__version__, "threads": args.threads}
    if args.steps > 0 and args.ddp > 1:
        import torch.multiprocessing as mp
        results = mp.get_context("spawn").SimpleQueue()
        mp.spawn(spawned, args=(args.ddp, args, results), nprocs=args.ddp, join=True)
        print(json.dumps({**results.get(), **common}))
        return
    with h5py.File(args.data, "r") as f:
        train = images(f, "train/images", args.model)
        test = images(f, "test/images", args.model) if args.epochs > 0 else None
    line = quality(args, train, test) if args.epochs > 0 else throughput(0, 1, args, train)
    print(json.dumps({**line, **common}))


if __name__ == "__main__":
    main()
