"""InvertArgmaxd: the label map of Invertd + AsDiscreted(argmax), computed a slice at a time."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import AsDiscreted, Compose, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd, Spacingd

from medsegzoo.transforms import InvertArgmaxd, ResampleToSpacingd, first_argmax
from medsegzoo.transforms.inverse_argmax import AxisWeights, resampled_argmax


def test_first_argmax_matches_torch_including_ties():
    torch.manual_seed(0)
    probs = torch.rand(5, 7, 6, 4)
    probs[:, 0, 0, 0] = 0.3  # five-way tie: channel 0
    probs[2, 1, 1, 1] = probs[4, 1, 1, 1] = 2.0  # tie of 2 and 4: channel 2
    expected = torch.argmax(probs, dim=0)
    got = first_argmax(probs)
    assert torch.equal(got, expected)
    assert got[0, 0, 0] == 0 and got[1, 1, 1] == 2


def test_resampled_argmax_hand_computed_case():
    # two channels along x only: channel 1 rises from 0 to 1, channel 0 falls; output at
    # coordinates 0, 0.4, 0.6, 1 -> the crossing lies at 0.5
    probs = torch.zeros(2, 2, 1, 1)
    probs[1, 1] = 1.0
    probs[0, 0] = 1.0
    axes = [AxisWeights.linear(np.array([0.0, 0.4, 0.6, 1.0]), 2), AxisWeights.nearest(np.array([0])),
            AxisWeights.nearest(np.array([0, 0, 0]))]
    labels = resampled_argmax(probs, axes)
    assert labels.shape == (4, 1, 3)
    assert labels[:, 0, 0].tolist() == [0, 0, 1, 1]
    assert labels.dtype == torch.uint8


def _dense_resampled_argmax(probs, axes):
    """Reference: every channel interpolated on the whole output grid (x, then y, then z), then the argmax."""
    def along(values, axis, dim):
        shape = [1] * values.ndim
        shape[dim] = len(axis)
        low, up = values.index_select(dim, axis.lower), values.index_select(dim, axis.upper)
        return torch.lerp(low, up, axis.weight.view(shape))

    ax, ay, az = axes
    mixed = along(probs, az, 3)  # z first: per output slice the z-mix of two input slices, as resampled_argmax
    return first_argmax(along(along(mixed, ax, 1), ay, 2)).to(torch.uint8)


@pytest.mark.parametrize("seed", [0, 1])
def test_resampled_argmax_equals_dense_interpolation_bit_for_bit(seed):
    # smooth random scores (boundaries of every shape) upsampled by uneven factors, z by
    # nearest neighbour in one case (weights 0: the shortcut through whole slices)
    gen = torch.Generator().manual_seed(seed)
    probs = torch.nn.functional.avg_pool3d(torch.rand(1, 5, 24, 20, 14, generator=gen), 3, 1, 1)[0]
    probs = probs.softmax(0)
    axes = [AxisWeights.linear((np.arange(61) + 0.5) * 22 / 61 - 0.5, 22),
            AxisWeights.linear((np.arange(47) + 0.5) * 18 / 47 - 0.5, 18)]
    z = (AxisWeights.linear((np.arange(29) + 0.5) * 12 / 29 - 0.5, 12) if seed == 0
         else AxisWeights.nearest(np.floor((np.arange(29) + 0.5) * 12 / 29)))
    probs = probs[:, :22, :18, :12]
    got = resampled_argmax(probs, [*axes, z])
    expected = _dense_resampled_argmax(probs, [*axes, z])
    assert got.shape == (61, 47, 29)
    assert torch.equal(got, expected)
    assert len(torch.unique(expected)) == 5  # every class present: many boundaries were interpolated


def test_axis_weights_clamp_at_the_border():
    w = AxisWeights.linear(np.array([-0.7, 0.25, 2.0, 2.6]), 3)
    assert w.lower.tolist() == [0, 0, 1, 1]
    assert w.upper.tolist() == [1, 1, 2, 2]
    assert np.allclose(w.weight.numpy(), [0.0, 0.25, 1.0, 1.0])


def _write_image(tmp_path, shape=(70, 64, 23), spacing=(-0.8, -0.9, 2.5)):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [10.0, -5.0, 3.0]
    path = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random(shape).astype(np.float32), affine), str(path))
    return path


@pytest.mark.parametrize("resample", [
    Spacingd("image", pixdim=(2.5, 2.0, 2.5), mode="bilinear"),
    ResampleToSpacingd("image", pixdim=(2.0, 2.0, 2.5)),
    ResampleToSpacingd("image", pixdim=(1.6, 1.6, 5.0)),  # anisotropic: z by nearest neighbour (nnU-Net)
], ids=["monai_spacingd", "nnunet", "nnunet_separate_z"])
def test_same_label_map_as_invertd_and_argmax(tmp_path, resample):
    path = _write_image(tmp_path)
    pre = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"),
                   Orientationd("image", axcodes="RAS"), resample])
    data = pre({"image": str(path)})
    image = data["image"]
    torch.manual_seed(1)
    logits = torch.nn.functional.avg_pool3d(torch.randn(1, 6, *image.shape[1:]), 5, 1, 2)[0] * 20
    data["pred"] = MetaTensor(torch.softmax(logits, 0), meta=image.meta, applied_operations=image.applied_operations)
    stock = AsDiscreted("pred", argmax=True)(Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False)(dict(data)))["pred"]
    fused = InvertArgmaxd("pred", transform=pre, orig_keys="image")
    ours = fused(dict(data))["pred"]
    assert fused.fused_paths == 1 and fused.stock_paths == 0
    assert ours.shape == stock.shape == (1, 70, 64, 23)
    assert ours.dtype == torch.uint8
    assert len(np.unique(ours.numpy())) >= 4  # a real label map, not a constant
    assert torch.equal(ours.as_tensor().float(), stock.as_tensor().float())
    np.testing.assert_allclose(np.asarray(ours.affine), np.asarray(stock.affine), atol=1e-6)
    np.testing.assert_allclose(np.asarray(ours.affine), nib.load(str(path)).affine, atol=1e-6)


def test_falls_back_to_the_stock_inversion_without_a_resampling(tmp_path):
    path = _write_image(tmp_path, shape=(12, 10, 8))
    pre = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), Orientationd("image", axcodes="RAS")])
    data = pre({"image": str(path)})
    image = data["image"]
    probs = torch.softmax(torch.randn(3, *image.shape[1:]), 0)
    data["pred"] = MetaTensor(probs, meta=image.meta, applied_operations=image.applied_operations)
    stock = AsDiscreted("pred", argmax=True)(Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False)(dict(data)))["pred"]
    fused = InvertArgmaxd("pred", transform=pre, orig_keys="image")
    ours = fused(dict(data))["pred"]
    assert fused.stock_paths == 1 and fused.fused_paths == 0
    assert torch.equal(ours.as_tensor().float(), stock.as_tensor().float())


def test_needs_the_preprocessed_image():
    with pytest.raises(Exception, match="'image' is not a MetaTensor"):
        InvertArgmaxd("pred", transform=Compose([]))({"pred": torch.zeros(2, 4, 4, 4), "image": np.zeros((1, 4, 4, 4))})
