"""Mirror test-time augmentation: average a network's logits over axis flips (nnU-Net style).

MONAI offers :class:`monai.data.TestTimeAugmentation`, but it draws *random* transforms and
inverts them per sample for uncertainty estimation; it does not enumerate the deterministic
2**k flips nnU-Net averages, and it cannot wrap a sliding-window inferer. This wrapper does
exactly that: it is itself a MONAI :class:`~monai.inferers.Inferer`, so a bundle config swaps
``SlidingWindowInferer`` for ``MirrorInferer(inferer=SlidingWindowInferer(...))`` with a switch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["MirrorInferer", "mirror_axes_combinations"]


def mirror_axes_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``axes`` (the empty subset, i.e. no flip, first).

    Args:
        axes: spatial axes (0-based, without batch and channel) that may be flipped.

    Returns:
        ``2 ** len(axes)`` tuples of spatial axes.
    """
    unique = sorted({int(a) for a in axes})
    return [combo for r in range(len(unique) + 1) for combo in itertools.combinations(unique, r)]


class MirrorInferer(Inferer):
    """Run ``inferer`` on every mirrored copy of the input and average the un-mirrored outputs.

    With the three spatial axes of a 3D volume this is nnU-Net's (and STU-Net's) mirror
    test-time augmentation: 8 predictions whose *logits* are averaged, as nnU-Net v2 does
    before its softmax/argmax.

    Args:
        inferer: the inferer run on each copy (e.g. ``SlidingWindowInferer``); None calls the
            network directly.
        axes: spatial axes to mirror (0, 1, 2 for 3D); empty disables mirroring.
        enabled: False makes this a plain pass-through to ``inferer`` (a config switch;
            the strings "true"/"false" from a command-line override are accepted).

    Raises:
        ValueError: ``enabled`` is a string other than true/false; an axis outside the
            input's spatial dimensions (at call time).
    """

    def __init__(
        self,
        inferer: Inferer | None = None,
        axes: Sequence[int] = (0, 1, 2),
        enabled: bool | str = True,
    ) -> None:
        super().__init__()
        self.inferer = inferer
        self.axes = tuple(int(a) for a in axes)
        # a command-line override (`--use_mirroring false`) may arrive as a string
        if isinstance(enabled, str):
            if enabled.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"MirrorInferer: enabled must be true or false, got {enabled!r}")
            enabled = enabled.strip().lower() in ("true", "1", "yes")
        self.enabled = bool(enabled)

    def _run(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.inferer is None:
            return network(inputs, *args, **kwargs)
        return self.inferer(inputs, network, *args, **kwargs)

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Predict ``inputs`` (``(B, C, *spatial)``) with mirroring.

        Returns:
            The mean of the un-mirrored outputs, same shape as one plain prediction.
        """
        if not self.enabled or not self.axes:
            return self._run(inputs, network, *args, **kwargs)
        spatial = inputs.ndim - 2
        bad = [a for a in self.axes if not 0 <= a < spatial]
        if bad:
            raise ValueError(f"MirrorInferer: axes {bad} outside the {spatial} spatial dimensions of the input")
        combos = mirror_axes_combinations(self.axes)
        total: torch.Tensor | None = None
        for combo in combos:
            dims = [a + 2 for a in combo]  # skip batch and channel
            flipped = torch.flip(inputs, dims) if dims else inputs
            out = self._run(flipped, network, *args, **kwargs)
            out = torch.flip(out, dims) if dims else out
            # accumulate in place: one extra output-sized buffer, whatever the number of flips
            total = out.clone() if total is None else total.add_(out)
        assert total is not None
        return total / len(combos)
