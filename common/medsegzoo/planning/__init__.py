"""Planning (nnU-Net's stage between conversion and preprocessing): data-set fingerprints
(intensity statistics, spacings, shapes) and the patch size / spacing derived from them."""

from __future__ import annotations

from medsegzoo.planning.fingerprint import (
    DatasetFingerprint,
    compute_fingerprint,
    load_fingerprint,
    plan_patch_and_spacing,
    save_fingerprint,
)

__all__ = [
    "DatasetFingerprint",
    "compute_fingerprint",
    "load_fingerprint",
    "plan_patch_and_spacing",
    "save_fingerprint",
]
