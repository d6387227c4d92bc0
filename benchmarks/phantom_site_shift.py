"""Does a model trained on phantoms of one acquisition site lose accuracy on the others?

The phantom sites (``medsegzoo.data.phantoms.sites``) differ in spacing, field of view,
contrast phase, blur, noise and intensity calibration, so that the cross-site experiments of
the bundles (A-Eval, Touchstone out-of-distribution) have something to measure. This script
checks that claim directly, at CPU scale: a small 3D U-Net (MONAI ``BasicUNet``) is trained on
site 0 only, with the preprocessing a CT pipeline would use (resampled to 1 mm, CT
soft-tissue window scaled to [0, 1]), and scored (mean DSC over five organs) on held-out
patients of every site. The same patients (seeds) are drawn at each site, so the differences
between rows come from the sites alone.

    .venv/bin/python benchmarks/phantom_site_shift.py            # 2-4 minutes on 2 CPU cores

Output seen on the shared 2-core development machine (8 training cases, 800 iterations,
4 held-out patients per site, size 32):

    trained on site 0 in 199 s (800 iterations, final loss 0.011)
    site 0 (training site): mean DSC 0.891 +- 0.006
    site 1: mean DSC 0.679 +- 0.026
    site 2: mean DSC 0.432 +- 0.040
    site 3: mean DSC 0.425 +- 0.015
    site 4: mean DSC 0.683 +- 0.010
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet
from scipy import ndimage

from medsegzoo.data.phantoms import make_phantom
from medsegzoo.inference.overlay import CT_SOFT_TISSUE_WINDOW_HU

ORGANS = ("liver", "spleen", "kidney_right", "kidney_left", "stomach")
TRAINING_GRID_MM = 1.0


def sample(seed: int, site: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One phantom resampled to the 1 mm training grid: ``(image (1, S, S, S), label (S, S, S))``."""
    phantom = make_phantom(size, seed=seed, site=site, tumors=False)
    zoom = [s / TRAINING_GRID_MM for s in phantom.spacing]
    label = np.zeros(phantom.image.shape, np.int64)
    for value, organ in enumerate(ORGANS, start=1):
        label[phantom.mask(organ)] = value
    image = ndimage.zoom(phantom.image.astype(np.float32), zoom, order=1)
    label = ndimage.zoom(label, zoom, order=0)
    low, high = CT_SOFT_TISSUE_WINDOW_HU
    image = np.clip((image - low) / (high - low), 0.0, 1.0)
    # a cropped field of view gives fewer slices: pad, then cut every case to the same grid
    pad = [(0, max(0, size - n)) for n in image.shape]
    image = np.pad(image, pad)[:size, :size, :size]
    label = np.pad(label, pad)[:size, :size, :size]
    return torch.from_numpy(np.ascontiguousarray(image))[None], torch.from_numpy(
        np.ascontiguousarray(label)
    )


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus soft Dice over the organ channels (per volume, then averaged)."""
    prob = logits.softmax(1)
    onehot = F.one_hot(target, prob.shape[1]).permute(0, 4, 1, 2, 3).float()
    dims = (2, 3, 4)
    dice = (2 * (prob * onehot).sum(dims) + 1) / (prob.sum(dims) + onehot.sum(dims) + 1)
    return F.cross_entropy(logits, target) + (1 - dice[:, 1:]).mean()


def mean_dsc(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean DSC over the organs (an organ absent from both counts as 1)."""
    scores = []
    for value in range(1, len(ORGANS) + 1):
        p, t = pred == value, target == value
        total = int(p.sum() + t.sum())
        scores.append(1.0 if total == 0 else 2 * int((p & t).sum()) / total)
    return float(np.mean(scores))


def main() -> None:
    """Train on site 0, print the mean DSC per site."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="phantom size in 1 mm voxels")
    parser.add_argument("--train-cases", type=int, default=8)
    parser.add_argument("--test-cases", type=int, default=4, help="held-out patients per site")
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--sites", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    start = time.perf_counter()
    train = [sample(seed, 0, args.size) for seed in range(args.train_cases)]
    net = BasicUNet(
        spatial_dims=3, in_channels=1, out_channels=len(ORGANS) + 1, features=(8, 8, 16, 16, 32, 8)
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(args.iterations):
        batch = rng.choice(len(train), 2, replace=False)
        image = torch.stack([train[i][0] for i in batch])
        label = torch.stack([train[i][1] for i in batch])
        loss = dice_ce_loss(net(image), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(
        f"trained on site 0 in {time.perf_counter() - start:.0f} s ({args.iterations} iterations, final loss {loss.item():.3f})"
    )

    net.eval()
    with torch.no_grad():
        for site in range(args.sites):
            # the same held-out patients at every site: only the acquisition differs
            scores = []
            for seed in range(1000, 1000 + args.test_cases):
                image, label = sample(seed, site, args.size)
                scores.append(mean_dsc(net(image[None]).argmax(1)[0], label))
            note = " (training site)" if site == 0 else ""
            print(f"site {site}{note}: mean DSC {np.mean(scores):.3f} +- {np.std(scores):.3f}")


if __name__ == "__main__":
    main()
