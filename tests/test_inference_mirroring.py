"""Mirror test-time augmentation: the average of the un-flipped predictions of all 2**k flips."""

from __future__ import annotations

import itertools

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from medsegzoo.inference.mirroring import MirrorInferer, mirror_axes_combinations


class _PositionNet(torch.nn.Module):
    """Not flip-equivariant: output = input + a fixed ramp, so each flip gives another answer."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("ramp", torch.arange(torch.Size(shape).numel(), dtype=torch.float32).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x + self.ramp, 2 * x - self.ramp], dim=1)


def test_combinations_enumerate_every_subset_once() -> None:
    combos = mirror_axes_combinations([2, 0, 1, 0])
    assert combos[0] == ()
    assert len(combos) == 8 and len(set(combos)) == 8
    assert set(combos) == {c for r in range(4) for c in itertools.combinations((0, 1, 2), r)}


def test_average_over_eight_flips_matches_hand_computation() -> None:
    x = torch.randn(2, 1, 4, 5, 6)
    net = _PositionNet((4, 5, 6))
    expected = torch.zeros(2, 2, 4, 5, 6)
    for combo in mirror_axes_combinations((0, 1, 2)):
        dims = [a + 2 for a in combo]
        flipped = torch.flip(x, dims) if dims else x
        out = net(flipped)
        expected += torch.flip(out, dims) if dims else out
    expected /= 8
    got = MirrorInferer(axes=(0, 1, 2))(x, net)
    torch.testing.assert_close(got, expected)
    # and it differs from the plain prediction, so the test can fail
    assert not torch.allclose(got, net(x))


def test_equivariant_network_is_unchanged_and_wraps_sliding_window() -> None:
    x = torch.randn(1, 1, 16, 16, 16)
    conv = torch.nn.Conv3d(1, 3, 1)  # a 1x1x1 conv commutes with flips
    window = SlidingWindowInferer(roi_size=(8, 8, 8), overlap=0.5, mode="gaussian")
    with torch.no_grad():
        plain = window(x, conv)
        mirrored = MirrorInferer(window, axes=(0, 1, 2))(x, conv)
    torch.testing.assert_close(mirrored, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("enabled", [False, "false", "False", "0"])
def test_disabled_is_a_plain_pass_through(enabled: bool | str) -> None:
    x = torch.randn(1, 1, 4, 4, 4)
    net = _PositionNet((4, 4, 4))
    torch.testing.assert_close(MirrorInferer(enabled=enabled)(x, net), net(x))


def test_bad_switch_and_axes_raise() -> None:
    with pytest.raises(ValueError, match="true or false"):
        MirrorInferer(enabled="maybe")
    with pytest.raises(ValueError, match="axes \\[3\\]"):
        MirrorInferer(axes=(0, 3))(torch.zeros(1, 1, 2, 2, 2), torch.nn.Identity())
