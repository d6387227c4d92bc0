"""Planning (nnU-Net's stage between conversion and preprocessing): data-set fingerprints
(intensity statistics, spacings, shapes) and the plan derived from them (target spacing, patch
size, pooling strides and convolution kernels, as nnU-Net v2's planner makes them)."""

from __future__ import annotations

from medsegzoo.planning.fingerprint import (
    DatasetFingerprint,
    compute_fingerprint,
    load_fingerprint,
    nnunet_target_spacing,
    plan_patch_and_spacing,
    save_fingerprint,
)
from medsegzoo.planning.topology import (
    NetworkTopology,
    fit_conv_kernel_sizes,
    fit_pool_kernel_sizes,
    plain_unet_feature_map_size,
    plan_network_topology,
    plan_patch_size,
)

__all__ = [
    "DatasetFingerprint",
    "NetworkTopology",
    "compute_fingerprint",
    "fit_conv_kernel_sizes",
    "fit_pool_kernel_sizes",
    "load_fingerprint",
    "nnunet_target_spacing",
    "plain_unet_feature_map_size",
    "plan_network_topology",
    "plan_patch_and_spacing",
    "plan_patch_size",
    "save_fingerprint",
]
