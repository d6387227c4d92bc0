"""A small trained 3D U-Net and the synthetic cases it learns, shared by the inference tests.

:func:`train_small_unet` is built once per session by the ``trained_unet`` fixture
(tests/conftest.py): the fast-path test compares bf16 with float32 on it, and the skipped-window
test compares body-limited windows with every window on it.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.networks.nets import UNet


def organs_case(seed: int, shape: tuple[int, int, int] = (48, 48, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    """A windowed-CT-like case: air 0, a body 0.45, two organs (0.75 and 0.2) at random places."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij")
    body = ((x - 24) / 20) ** 2 + ((y - 24) / 15) ** 2 <= 1
    image = np.where(body, 0.45, 0.0).astype(np.float32)
    label = np.zeros(shape, np.int64)
    for value, intensity, radius in ((1, 0.75, 6.0), (2, 0.2, 5.0)):
        c = rng.uniform([14, 16, 8], [34, 32, 24])
        inside = ((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) <= radius**2
        image[inside] = intensity
        label[inside] = value
    image += (0.03 * rng.standard_normal(shape)).astype(np.float32) * body
    return torch.as_tensor(image)[None], torch.as_tensor(label)


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


AIR = 32  # voxels of air padded around the body in x and y: windows there are skipped
PATCH = 32


def padded_case(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`organs_case` with air around the body (a field of view larger than the patient)."""
    image, label = organs_case(seed)
    pad = (0, 0, AIR, AIR, AIR, AIR)
    return torch.nn.functional.pad(image, pad), torch.nn.functional.pad(label, pad)


def train_small_unet() -> UNet:
    """A small 3D U-Net (instance norm, as the bundles' networks) trained on 32^3 crops for ~15 s (250 iterations left one class at DSC 0.74 on some CPUs).

    Half of each batch is a crop around an organ voxel (foreground oversampling), half a crop
    anywhere, as the bundles' training does.
    """
    torch.manual_seed(0)
    net = UNet(3, 1, 3, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="instance")
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
    cases = [padded_case(seed) for seed in range(6)]
    generator = torch.Generator().manual_seed(0)

    def draw(high: int) -> int:
        return int(torch.randint(high, (1,), generator=generator))

    for _ in range(400):
        images, labels = [], []
        for foreground in (True, False):
            image, label = cases[draw(len(cases))]
            room = [s - PATCH for s in label.shape[:2]]
            if foreground:
                centre = torch.nonzero(label > 0)[draw(int((label > 0).sum()))]
                corner = [min(max(int(c) - PATCH // 2 + draw(17) - 8, 0), r) for c, r in zip(centre[:2], room)]
            else:
                corner = [draw(r + 1) for r in room]
            window = (slice(corner[0], corner[0] + PATCH), slice(corner[1], corner[1] + PATCH))
            images.append(image[(slice(None), *window)])
            labels.append(label[window])
        loss = torch.nn.functional.cross_entropy(net(torch.stack(images)), torch.stack(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()
