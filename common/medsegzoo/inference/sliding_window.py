"""MONAI's sliding-window inference that skips the windows outside the body.

:class:`BodySlidingWindowInferer` is MONAI's :class:`~monai.inferers.SlidingWindowInfererAdapt`
(same windows, overlap, blending and padding; on CUDA it stitches on the GPU and falls back
to buffered, then CPU stitching when the volume does not fit, so ``sw_device`` and ``device``
split by themselves) with three additions for speed:

* **windows outside the body are not computed.** A coarse body mask
  (:func:`medsegzoo.inference.body_mask.compute_body_mask`) is computed from each input; a
  window that touches no body cell is *filled* instead of predicted: its output is the
  constant "certain background" logit vector (``+fill_logit`` for the background channel,
  ``-fill_logit`` for every other channel; ``-fill_logit`` everywhere for sigmoid outputs,
  ``background_channel=None``), blended with the window's usual weight. Every window that
  covers a voxel of the mask is computed, so **inside the mask the output is exactly the
  full computation's**; outside it, voxels that only skipped windows cover are background,
  and voxels near the body mix computed windows with the background fill.
* **windows laid over the body only** (``crop_to_body``): the windows tile the body mask's
  bounding box instead of the whole image, and every voxel outside the box gets the same
  "certain background" logits. In the air around a patient this removes whole rows and
  columns of windows that touch the body only at their edge (2x fewer windows on an
  abdominal CT with a 410 mm field of view, docs/performance.md). The windows sit at other
  places than the full tiling's, so inside the box the output is *not* exactly the full
  computation's (it differs as two tilings of the same image differ, near window seams);
  the benchmark measures the agreement.
* **channels-last windows** (``channels_last``): the network's 5D weights are converted to
  ``torch.channels_last_3d`` once (in place; the values do not change) and each batch of
  windows is handed to it in that layout, which oneDNN's bf16 convolutions run faster for
  some networks (measured per bundle, see ``docs/performance.md``; the layout of the input
  alone is not enough: the weights' layout decides the kernels).
* **a batch size of its own on the CPU** (``cpu_batch_size``): windows per network call when
  they run on the CPU; one bf16 window at a time keeps its activations in the caches and is
  faster than MONAI's batches of 2-4 for most networks (measured per bundle).
* **counts**: :attr:`BodySlidingWindowInferer.windows` tells how many windows were computed
  and skipped (the benchmark and ``medsegzoo predict`` print them).

Mixed precision is not this module's business: the evaluator's
:class:`~medsegzoo.inference.autocast.AutocastInferer` wraps the network before it gets here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import SlidingWindowInfererAdapt
from monai.utils import convert_to_dst_type

from medsegzoo.errors import MedSegZooError
from medsegzoo.inference.body_mask import BodyMask, compute_body_mask

__all__ = ["BodySlidingWindowInferer", "WindowCounts"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class WindowCounts:
    """Windows an inferer computed and skipped since its counts were last reset."""

    computed: int = 0
    skipped: int = 0
    # share of the image's voxels the windows were laid over (below 1 with crop_to_body)
    tiled_fraction: float = 1.0

    @property
    def total(self) -> int:
        """Every window visited."""
        return self.computed + self.skipped

    def describe(self) -> str:
        """One line for a log or a summary."""
        share = 100.0 * self.skipped / self.total if self.total else 0.0
        line = f"{self.computed} windows computed, {self.skipped} skipped outside the body ({share:.0f} %)"
        if self.tiled_fraction < 1.0:
            line += f", laid over the body's box ({100.0 * self.tiled_fraction:.0f} % of the image)"
        return line


def _flag(value: bool | str, name: str) -> bool:
    """A boolean config value (command-line overrides may arrive as strings)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise MedSegZooError(f"{name} must be true or false, got {value!r}")
        return text in ("true", "1", "yes")
    return bool(value)


class _WindowPredictor:
    """The network seen by MONAI's loop (``with_coord``): skips windows outside the body."""

    def __init__(self, inferer: BodySlidingWindowInferer, network: Callable[..., Any], masks: list[BodyMask] | None,
                 offsets: Sequence[int]) -> None:
        self.inferer = inferer
        self.network = network
        self.masks = masks
        self.offsets = tuple(offsets)  # MONAI's padding before the first voxel, per spatial axis

    def _touches_body(self, coords: Sequence[slice]) -> bool:
        if self.masks is None:
            return True
        batch = coords[0].start or 0
        window = [slice(s.start - o, s.stop - o) for s, o in zip(coords[2:], self.offsets, strict=True)]
        return self.masks[batch].intersects(window)

    def _run(self, patch: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.inferer.channels_last and patch.ndim == 5:
            patch = patch.contiguous(memory_format=torch.channels_last_3d)
        return self.network(patch, *args, **kwargs)

    def __call__(self, patch: torch.Tensor, coords: Sequence[Sequence[slice]], *args: Any, **kwargs: Any) -> Any:
        keep = [self._touches_body(c) for c in coords]
        counts = self.inferer.windows
        chosen = [i for i, k in enumerate(keep) if k]
        counts.computed += len(chosen)
        counts.skipped += len(keep) - len(chosen)
        if len(chosen) == len(keep):
            return self._run(patch, *args, **kwargs)
        template = self.inferer.output_template
        if chosen:
            out = self._run(patch[chosen], *args, **kwargs)
            template = out
        elif template is None:
            # no window of this batch touches the body and no output was seen yet: one network
            # call tells the output's channels and dtype (its result is not used)
            template = self._run(patch[:1], *args, **kwargs)
        if not torch.is_tensor(template):
            raise MedSegZooError(
                "BodySlidingWindowInferer: skipping windows needs a network that returns one tensor, got "
                f"{type(template).__name__}; set skip_outside_body to false for this network"
            )
        self.inferer.output_template = template[:1].detach()
        full = self.inferer.background_logits(len(keep), template)
        if chosen:
            full[chosen] = out
        return full


class BodySlidingWindowInferer(SlidingWindowInfererAdapt):
    """Sliding-window inference that skips windows outside the body (see the module docstring).

    Args:
        roi_size: window size.
        sw_batch_size: windows per network call.
        overlap: overlap of neighbouring windows.
        mode: blending, ``"constant"`` or ``"gaussian"``.
        sigma_scale: Gaussian blending width.
        padding_mode: padding of inputs smaller than a window.
        cval: padding value.
        sw_device: device of the windows (None: the input's).
        device: device of the stitched output (None: adaptive, GPU first, CPU when the
            volume does not fit, MONAI's ``SlidingWindowInfererAdapt``).
        progress: a tqdm bar over the windows.
        cache_roi_weight_map: compute the blending weights once.
        cpu_thresh: stitch on the CPU above this many voxels (None: only after a GPU
            out-of-memory error).
        buffer_steps: MONAI's buffered stitching.
        buffer_dim: MONAI's buffered stitching axis.
        skip_outside_body: skip windows that touch no body cell.
        body_threshold: intensity threshold of the body (in the network input's units) or
            ``"auto"``.
        body_cell: cell size of the coarse body mask, voxels.
        body_margin: cells added around the body mask.
        background_channel: the output channel of the background (softmax outputs); None
            when every channel is a class of its own (sigmoid outputs).
        fill_logit: magnitude of the constant logits of a skipped window.
        channels_last: convert the network's weights (once) and the windows to channels-last.
        cpu_batch_size: windows per network call when the windows run on the CPU (None:
            ``sw_batch_size`` everywhere).
        crop_to_body: lay the windows over the body mask's bounding box only (needs
            ``skip_outside_body``; see the module docstring).

    Raises:
        MedSegZooError: a switch that is not true/false, a negative margin.
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 1,
        overlap: Sequence[float] | float = 0.25,
        mode: str = "constant",
        sigma_scale: Sequence[float] | float = 0.125,
        padding_mode: str = "constant",
        cval: float = 0.0,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        progress: bool | str = False,
        cache_roi_weight_map: bool = False,
        cpu_thresh: int | None = None,
        buffer_steps: int | None = None,
        buffer_dim: int = -1,
        skip_outside_body: bool | str = True,
        body_threshold: float | str = "auto",
        body_cell: Sequence[int] | int = 4,
        body_margin: int = 1,
        background_channel: int | None = 0,
        fill_logit: float = 20.0,
        channels_last: bool | str = False,
        cpu_batch_size: int | None = None,
        crop_to_body: bool | str = False,
    ) -> None:
        super().__init__(
            roi_size=roi_size,
            sw_batch_size=int(sw_batch_size),
            overlap=overlap,
            mode=mode,
            sigma_scale=sigma_scale,
            padding_mode=padding_mode,
            cval=cval,
            sw_device=sw_device,
            device=device,
            progress=_flag(progress, "progress"),
            cache_roi_weight_map=cache_roi_weight_map,
            cpu_thresh=cpu_thresh,
            buffer_steps=buffer_steps,
            buffer_dim=buffer_dim,
            with_coord=True,
        )
        if cpu_batch_size is not None and int(cpu_batch_size) < 1:
            raise MedSegZooError(f"cpu_batch_size must be a positive number of windows or null, got {cpu_batch_size}")
        if int(body_margin) < 0:
            raise MedSegZooError(f"body_margin must be >= 0 cells, got {body_margin}")
        self.skip_outside_body = _flag(skip_outside_body, "skip_outside_body")
        self.body_threshold = body_threshold
        self.body_cell = body_cell
        self.body_margin = int(body_margin)
        self.background_channel = background_channel
        self.fill_logit = float(fill_logit)
        self.channels_last = _flag(channels_last, "channels_last")
        self.cpu_batch_size = None if cpu_batch_size is None else int(cpu_batch_size)
        self.crop_to_body = _flag(crop_to_body, "crop_to_body")
        self.windows = WindowCounts()
        self.last_masks: list[BodyMask] | None = None
        # one window's output (channels, dtype, device) for the fill of skipped windows
        self.output_template: torch.Tensor | None = None

    def reset_counts(self) -> WindowCounts:
        """Start counting windows afresh; returns the counts so far."""
        counts, self.windows = self.windows, WindowCounts()
        return counts

    def background_logits(self, count: int, like: torch.Tensor) -> torch.Tensor:
        """``count`` windows of constant "certain background" logits shaped like one output window."""
        fill = torch.full((count, *like.shape[1:]), -self.fill_logit, dtype=like.dtype, device=like.device)
        if self.background_channel is not None:
            fill[:, self.background_channel] = self.fill_logit
        return fill

    def body_masks(self, inputs: torch.Tensor) -> list[BodyMask]:
        """The body mask of every image of a ``(B, C, *spatial)`` batch."""
        return [
            compute_body_mask(image, threshold=self.body_threshold, cell=self.body_cell, margin=self.body_margin)
            for image in inputs
        ]

    def _offsets(self, inputs: torch.Tensor) -> list[int]:
        """MONAI pads an input smaller than a window evenly; window coordinates include that padding."""
        spatial = inputs.shape[2:]
        roi = self.roi_size if isinstance(self.roi_size, Sequence) else [self.roi_size] * len(spatial)
        offsets = []
        for size, window in zip(spatial, roi, strict=True):
            window = int(size) if window is None or int(window) <= 0 else int(window)
            offsets.append(max(window - int(size), 0) // 2)
        return offsets

    @staticmethod
    def to_channels_last(network: Any) -> None:
        """Convert a network's 5D parameters to channels-last in place (a module, or a wrapper
        that forwards ``parameters`` and ``to`` to one, such as the autocast forward)."""
        parameters = getattr(network, "parameters", None)
        if not callable(parameters):
            return
        weights = [p for p in parameters() if p.ndim == 5]
        if weights and not all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in weights):
            network.to(memory_format=torch.channels_last_3d)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Predict a ``(B, C, *spatial)`` batch window by window, skipping windows outside the body."""
        if self.channels_last:
            self.to_channels_last(network)
        masks = self.body_masks(inputs) if self.skip_outside_body else None
        self.last_masks = masks
        box = self._body_box(masks, inputs.shape[2:]) if self.crop_to_body and masks is not None else None
        tiled = inputs if box is None else inputs[(slice(None), slice(None), *box)]
        # window coordinates are in the tiled (cropped, then padded) image; the masks in the full one
        offsets = [o - (0 if box is None else b.start) for o, b in
                   zip(self._offsets(tiled), box or [slice(0, None)] * (inputs.ndim - 2), strict=True)]
        predictor = _WindowPredictor(self, network, masks, offsets)
        batch_size = self.sw_batch_size
        windows_device = torch.device(self.sw_device) if self.sw_device is not None else inputs.device
        if self.cpu_batch_size is not None and windows_device.type == "cpu":
            self.sw_batch_size = self.cpu_batch_size
        try:
            out = super().__call__(tiled, predictor, *args, **kwargs)
        finally:
            self.sw_batch_size = batch_size
        if box is None:
            return out
        self.windows.tiled_fraction = float(tiled[0, 0].numel()) / float(inputs[0, 0].numel())
        return self._paste(out, box, inputs)

    @staticmethod
    def _body_box(masks: list[BodyMask], shape: Sequence[int]) -> tuple[slice, ...] | None:
        """The box holding every image's body mask, or None when it is the whole image (or empty)."""
        boxes = [b for b in (m.bounding_box() for m in masks) if b is not None]
        if not boxes:
            return None
        box = tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(len(shape)))
        if all(s.start == 0 and s.stop == int(n) for s, n in zip(box, shape, strict=True)):
            return None
        return box

    def _paste(self, out: Any, box: tuple[slice, ...], inputs: torch.Tensor) -> Any:
        """The output of the box's windows placed in a full-size output of background logits."""
        if not torch.is_tensor(out):
            raise MedSegZooError(
                "BodySlidingWindowInferer: crop_to_body needs a network that returns one tensor, got "
                f"{type(out).__name__}; set crop_to_body to false for this network"
            )
        full = self.background_logits(out.shape[0], out.new_empty((1, out.shape[1], *inputs.shape[2:])))
        full[(slice(None), slice(None), *box)] = out
        return convert_to_dst_type(full, out)[0]
