"""TCSeg's dual-axis reliability engine: confidence and uncertainty per voxel, kept apart.

TCSeg (paper 004, section 3.2; REFERENCE.md section 4) scores every unlabeled voxel on two
axes computed from four views: the two student decoders and the two EMA-teacher decoders.

* Confidence ``C(v) = max_k mean_m p_m(k|v)`` (eq. 6). The per-class means ``C_k(v)`` are kept
  too, because the negative (complementary) labels are per class: with a softmax over K
  classes ``C(v) >= 1/K``, so the literal scalar test ``C(v) <= tau_min = 0.1`` could never
  fire for the paper's two-class tasks. "Class k is absent" where ``C_k(v) <= tau_min`` is
  the reading that does something, and for two classes it equals the released code's test
  (minimum class probability below ``tau_min``, complementary label = the other class).
* Uncertainty: disagreement between the two decoders of the student and of the teacher, in
  probability space (eq. 7) and in prototype space (eq. 8-10: cosine similarity of each
  voxel's decoder feature to class prototypes averaged over confident voxels). Disagreement
  is half the L1 distance over classes (the total variation distance), which for two classes
  is ``|p1(fg) - p2(fg)|``: the quantity the released code compares with ``tau = 0.05``.
  Prototype maps are cosine similarities (not a distribution); the released code compares
  them with ``2 * tau``, hence the separate ``tau_feature = 0.1``.

Positive pseudo-labels: ``U <= tau`` on every view pair and ``C >= tau_max`` (eq. 11-12).
Negative labels: ``U <= tau`` and ``C_k <= tau_min`` (eq. 13). Unreliable voxels (not
positive: low confidence, or confident but uncertain) feed the image-space perturbation mask
(eq. 16): binary dilation, then the largest connected component.

All functions take probabilities/features shaped ``(B, C, *spatial)`` and work in 2D or 3D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from medsegzoo.errors import MedSegZooError

__all__ = [
    "ReliabilityMasks",
    "check_thresholds",
    "class_prototypes",
    "decoder_disagreement",
    "ensemble_confidence",
    "largest_component",
    "perturbation_mask",
    "prototype_similarity",
    "reliability_masks",
]


def ensemble_confidence(probabilities: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean prediction of several views and its maximum over classes (TCSeg eq. 6).

    Args:
        probabilities: views, each ``(B, C, *spatial)`` softmax probabilities.

    Returns:
        ``(class_confidence, confidence)``: the per-class mean ``(B, C, *spatial)`` and
        ``C(v) = max_k`` of it, ``(B, *spatial)``.

    Raises:
        MedSegZooError: no views, or views of different shapes.
    """
    if not probabilities:
        raise MedSegZooError("ensemble_confidence: no prediction views given")
    shapes = {tuple(p.shape) for p in probabilities}
    if len(shapes) != 1:
        raise MedSegZooError(f"ensemble_confidence: views must have one shape, got {sorted(shapes)}")
    mean = torch.stack(list(probabilities), dim=0).mean(dim=0)
    return mean, mean.max(dim=1).values


def decoder_disagreement(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Half the L1 distance over classes between two decoders' maps (TCSeg eq. 7-8).

    Args:
        first: ``(B, C, *spatial)`` probabilities or prototype similarities.
        second: same shape.

    Returns:
        ``(B, *spatial)``; for two-class probabilities ``|p1(fg) - p2(fg)|``.
    """
    return 0.5 * (first - second).abs().sum(dim=1)


def class_prototypes(features: torch.Tensor, probabilities: torch.Tensor, confident: torch.Tensor) -> torch.Tensor:
    """Per-sample class prototypes: mean feature of the confident voxels predicted as each class (eq. 10).

    Args:
        features: ``(B, F, *spatial)`` decoder features.
        probabilities: ``(B, C, *spatial)`` the same decoder's probabilities (class = argmax).
        confident: ``(B, *spatial)`` bool, voxels allowed into the prototypes.

    Returns:
        ``(B, C, F)`` L2-normalised prototypes (a class with no confident voxel gets a zero
        prototype, so its similarity map is 0 everywhere).
    """
    num_classes = probabilities.shape[1]
    assign = F.one_hot(probabilities.argmax(dim=1), num_classes).movedim(-1, 1).to(features.dtype)
    assign = assign * confident.unsqueeze(1).to(features.dtype)  # (B, C, *spatial)
    flat_assign = assign.flatten(2)  # (B, C, N)
    flat_features = features.flatten(2)  # (B, F, N)
    sums = torch.einsum("bcn,bfn->bcf", flat_assign, flat_features)
    counts = flat_assign.sum(dim=2, keepdim=True)
    return F.normalize(sums / (counts + 1e-6), dim=2)


def prototype_similarity(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every voxel feature to every class prototype (eq. 9).

    Args:
        features: ``(B, F, *spatial)``.
        prototypes: ``(B, C, F)`` (normalised or not).

    Returns:
        ``(B, C, *spatial)`` similarities in [-1, 1].
    """
    unit_features = F.normalize(features, dim=1)
    unit_prototypes = F.normalize(prototypes, dim=2)
    return torch.einsum("bf...,bcf->bc...", unit_features, unit_prototypes)


def check_thresholds(tau: float, tau_feature: float, tau_min: float, tau_max: float, where: str) -> None:
    """Raise when the reliability thresholds cannot work together.

    Raises:
        MedSegZooError: a negative tolerance, or not ``0 <= tau_min < tau_max <= 1``; the
            message names ``where`` (a function or config entry).
    """
    if tau < 0 or tau_feature < 0:
        raise MedSegZooError(f"{where}: tolerances must be >= 0, got tau={tau}, tau_feature={tau_feature}")
    if not 0.0 <= tau_min < tau_max <= 1.0:
        raise MedSegZooError(f"{where}: need 0 <= tau_min < tau_max <= 1, got tau_min={tau_min}, tau_max={tau_max}")


@dataclass
class ReliabilityMasks:
    """Voxel-wise reliability of the unlabeled batch.

    Attributes:
        class_confidence: ``(B, C, *spatial)`` mean probability of the four views.
        confidence: ``(B, *spatial)`` ``C(v)``.
        low_uncertainty: ``(B, *spatial)`` bool, every decoder pair agrees within tolerance.
        positive: ``(B, *spatial)`` bool, positive pseudo-label voxels (C+U-).
        negative: ``(B, C, *spatial)`` bool, (voxel, class) pairs whose complementary label
            "not this class" is used.
        unreliable: ``(B, *spatial)`` bool, voxels that are not positive (C- or C+U+).
    """

    class_confidence: torch.Tensor
    confidence: torch.Tensor
    low_uncertainty: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    unreliable: torch.Tensor


def reliability_masks(
    student_probabilities: Sequence[torch.Tensor],
    teacher_probabilities: Sequence[torch.Tensor],
    student_similarities: Sequence[torch.Tensor] | None = None,
    teacher_similarities: Sequence[torch.Tensor] | None = None,
    tau: float = 0.05,
    tau_feature: float = 0.1,
    tau_min: float = 0.1,
    tau_max: float = 0.85,
    use_confidence: bool = True,
    use_uncertainty: bool = True,
) -> ReliabilityMasks:
    """Positive, negative and unreliable masks from the four views (TCSeg eq. 6-13, 16).

    Args:
        student_probabilities: the two student decoders' probabilities, each ``(B, C, *spatial)``.
        teacher_probabilities: the two EMA-teacher decoders' probabilities.
        student_similarities: the two student decoders' prototype similarity maps, or None to
            leave the feature-space uncertainty out (ablation "w/o feat.").
        teacher_similarities: the teacher's, None together with the student's.
        tau: probability-space consistency tolerance (0.05 in the paper's code).
        tau_feature: prototype-space tolerance (``2 * tau`` in the paper's code).
        tau_min: lower confidence bound: class k gets a negative label where ``C_k <= tau_min``.
        tau_max: upper confidence bound: positive pseudo-labels where ``C >= tau_max``.
        use_confidence: False for the "w/o C(v)" ablation: every low-uncertainty voxel is
            positive and no negative labels are used.
        use_uncertainty: False for the "w/o U(v)" ablation: the confidence band alone decides.

    Returns:
        :class:`ReliabilityMasks`.

    Raises:
        MedSegZooError: not two views per network, thresholds out of order, or only one of the
            similarity pairs given.
    """
    if len(student_probabilities) != 2 or len(teacher_probabilities) != 2:
        raise MedSegZooError(
            f"reliability_masks: need 2 student and 2 teacher views, got {len(student_probabilities)} and {len(teacher_probabilities)}"
        )
    check_thresholds(tau, tau_feature, tau_min, tau_max, "reliability_masks")
    if (student_similarities is None) != (teacher_similarities is None):
        raise MedSegZooError("reliability_masks: give both student and teacher prototype similarities, or neither")
    class_confidence, confidence = ensemble_confidence([*student_probabilities, *teacher_probabilities])
    low_uncertainty = torch.ones_like(confidence, dtype=torch.bool)
    if use_uncertainty:
        for pair in (student_probabilities, teacher_probabilities):
            low_uncertainty &= decoder_disagreement(pair[0], pair[1]) <= tau
        if student_similarities is not None and teacher_similarities is not None:
            for pair in (student_similarities, teacher_similarities):
                low_uncertainty &= decoder_disagreement(pair[0], pair[1]) <= tau_feature
    if use_confidence:
        positive = (confidence >= tau_max) & low_uncertainty
        negative = (class_confidence <= tau_min) & low_uncertainty.unsqueeze(1)
    else:
        positive = low_uncertainty.clone()
        negative = torch.zeros_like(class_confidence, dtype=torch.bool)
    return ReliabilityMasks(
        class_confidence=class_confidence,
        confidence=confidence,
        low_uncertainty=low_uncertainty,
        positive=positive,
        negative=negative,
        unreliable=~positive,
    )


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a boolean array (empty stays empty).

    scipy's labelling is used rather than MONAI's ``get_largest_connected_component_mask``,
    which needs scikit-image or cuCIM (not dependencies of this project).
    """
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def perturbation_mask(
    unreliable: torch.Tensor,
    dilation_iterations: int = 2,
    min_voxels: int = 1,
    closing: bool = False,
    random_element_size: int | None = None,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """Image-space perturbation target: dilated unreliable region, largest component (eq. 16).

    Two ways to dilate: the paper's plain binary dilation (``dilation_iterations`` steps of the
    face-connected element), or the released code's (``closing=True`` with a 3^3 cube first, then
    one dilation with a random element: a cube of side ``1..random_element_size`` whose voxels
    are each kept with probability 0.5).

    Args:
        unreliable: ``(B, *spatial)`` bool.
        dilation_iterations: binary dilation steps with the face-connected structuring element
            (used when ``random_element_size`` is None).
        min_voxels: a sample whose dilated mask has fewer voxels than this gets an empty mask
            (the caller then falls back to a random box; the released code uses 100).
        closing: binary closing with a 3^3 cube before the dilation (released code).
        random_element_size: largest side of the random structuring element (released code: 7);
            None for the face-connected element.
        rng: random source of the random element (default: one seeded from numpy's global
            state, which ``monai.utils.set_determinism`` seeds).

    Returns:
        ``(B, *spatial)`` bool on the input's device, one connected component (or empty) per sample.
    """
    if random_element_size is not None and random_element_size < 1:
        raise MedSegZooError(f"perturbation_mask: random_element_size must be >= 1, got {random_element_size}")
    if random_element_size is not None and rng is None:
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
    masks = []
    for sample in unreliable.detach().cpu().numpy().astype(bool):
        grown = sample
        if closing and grown.any():
            grown = ndimage.binary_closing(grown, structure=np.ones((3,) * grown.ndim, dtype=bool))
        if random_element_size is not None:
            side = int(rng.integers(1, random_element_size + 1))  # type: ignore[union-attr]
            element = rng.random((side,) * grown.ndim) < 0.5  # type: ignore[union-attr]
            # an element without a single voxel dilates to nothing (scipy), as in the released code
            grown = ndimage.binary_dilation(grown, structure=element)
        elif dilation_iterations > 0 and grown.any():
            grown = ndimage.binary_dilation(grown, iterations=dilation_iterations)
        if grown.sum() < max(min_voxels, 1):
            masks.append(np.zeros_like(sample))
            continue
        masks.append(largest_component(grown))
    return torch.from_numpy(np.stack(masks)).to(unreliable.device)
