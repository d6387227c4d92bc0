"""Metrics against DeepMind surface-distance, medpy and MONAI; conventions by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import surface_distance as deepmind
from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.evaluation.conventions import (
    AEVAL,
    NSD_TOLERANCES_MM,
    TOUCHSTONE,
    EmptyMaskConvention,
    get_convention,
    get_tolerances,
)
from medsegzoo.evaluation.metrics import (
    compute_case_metrics,
    compute_class_metrics,
    dice_coefficient,
    label_bounding_boxes,
    volume_diagonal_mm,
)
from medsegzoo.evaluation.surface import (
    compute_surface_distances,
    neighbour_codes,
    surfel_area_table,
)
from scipy import ndimage


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 2.0) -> np.ndarray:
    return ndimage.gaussian_filter(rng.random(shape), sigma) > 0.5


def _deepmind_all(gt: np.ndarray, pred: np.ndarray, spacing, tolerance: float) -> dict[str, float]:
    dist = deepmind.compute_surface_distances(gt, pred, spacing)
    to_pred, to_gt = deepmind.compute_average_surface_distance(dist)
    area_gt, area_pred = dist["surfel_areas_gt"].sum(), dist["surfel_areas_pred"].sum()
    return {
        "dsc": deepmind.compute_dice_coefficient(gt, pred),
        "nsd": deepmind.compute_surface_dice_at_tolerance(dist, tolerance),
        "hd95": deepmind.compute_robust_hausdorff(dist, 95),
        "assd": (to_pred * area_gt + to_gt * area_pred) / (area_gt + area_pred),
    }


CASES = [
    # (seed, shape, spacing, how the prediction is made)
    (0, (18, 22, 16), (0.7, 0.9, 2.5), "random"),
    (1, (20, 16, 24), (1.0, 1.0, 1.0), "dilated"),
    (2, (14, 30, 12), (0.5, 1.7, 3.0), "eroded"),
    (3, (24, 24, 10), (0.8, 0.8, 5.0), "shifted"),
    (4, (16, 16, 16), (2.0, 0.6, 1.1), "random"),
]


@pytest.mark.parametrize("seed,shape,spacing,kind", CASES)
def test_surface_distances_equal_deepmind(seed, shape, spacing, kind):
    rng = np.random.default_rng(seed)
    gt = _blobs(rng, shape)
    pred = {
        "random": _blobs(rng, shape),
        "dilated": ndimage.binary_dilation(gt),
        "eroded": ndimage.binary_erosion(gt),
        "shifted": np.roll(gt, 2, axis=0),
    }[kind]
    ref = deepmind.compute_surface_distances(gt, pred, spacing)
    ours = compute_surface_distances(gt, pred, spacing)
    # the same surfels with the same areas and the very same distances (DeepMind sorts them)
    for ours_key, ref_key in (
        ("distances_gt_to_pred", "distances_gt_to_pred"),
        ("distances_pred_to_gt", "distances_pred_to_gt"),
        ("surfel_areas_gt", "surfel_areas_gt"),
        ("surfel_areas_pred", "surfel_areas_pred"),
    ):
        np.testing.assert_array_equal(np.sort(getattr(ours, ours_key)), np.sort(ref[ref_key]))
    for tolerance in (0.5, 1.0, 1.5, 2.0, 3.0, 5.0):
        assert abs(ours.surface_dice(tolerance) - deepmind.compute_surface_dice_at_tolerance(ref, tolerance)) < 1e-12
        np.testing.assert_allclose(ours.surface_overlap(tolerance), deepmind.compute_surface_overlap_at_tolerance(ref, tolerance), atol=1e-12)
    for percent in (50, 90, 95, 99, 100):
        assert ours.robust_hausdorff(percent) == deepmind.compute_robust_hausdorff(ref, percent)
    np.testing.assert_allclose(ours.average_surface_distance(), deepmind.compute_average_surface_distance(ref), rtol=1e-12)


@pytest.mark.parametrize("seed,shape,spacing,kind", CASES[:3])
def test_case_metrics_equal_deepmind(seed, shape, spacing, kind):
    rng = np.random.default_rng(seed)
    gt_label = np.zeros(shape, np.uint8)
    pred_label = np.zeros(shape, np.uint8)
    for value in (1, 2, 3):
        gt_label[_blobs(rng, shape, 1.5)] = value
        pred_label[_blobs(rng, shape, 1.5)] = value
    tolerances = {"liver": 5.0, "spleen": 2.0, "pancreas": 1.5}
    classes = {1: "liver", 2: "spleen", 3: "pancreas"}
    rows = compute_case_metrics(pred_label, gt_label, spacing, classes, tolerances)
    for row, (value, name) in zip(rows, classes.items()):
        ref = _deepmind_all(gt_label == value, pred_label == value, spacing, tolerances[name])
        assert row["class"] == name and row["gt_present"] and row["pred_present"]
        assert row["dsc"] == ref["dsc"]
        assert abs(row["nsd"] - ref["nsd"]) < 1e-6
        assert row["hd95"] == pytest.approx(ref["hd95"], rel=1e-6)
        assert row["assd"] == pytest.approx(ref["assd"], rel=1e-6)
        assert row["gt_voxels"] == np.count_nonzero(gt_label == value)
        assert row["pred_volume_mm3"] == pytest.approx(np.count_nonzero(pred_label == value) * np.prod(spacing))


def test_far_apart_surfaces_use_exact_nearest_neighbours():
    # distances far beyond the offset ball around each surfel go through the k-d tree
    gt = np.zeros((40, 12, 12), bool)
    pred = np.zeros_like(gt)
    gt[2:8, 3:9, 3:9] = True
    pred[30:37, 2:10, 4:8] = True
    pred[5:7, 5:7, 5:7] = True  # a small piece near the ground truth: mixed near and far
    spacing = (1.3, 0.7, 0.9)
    ref = deepmind.compute_surface_distances(gt, pred, spacing)
    ours = compute_surface_distances(gt, pred, spacing)
    np.testing.assert_array_equal(np.sort(ours.distances_pred_to_gt), ref["distances_pred_to_gt"])
    np.testing.assert_array_equal(np.sort(ours.distances_gt_to_pred), ref["distances_gt_to_pred"])
    assert ours.robust_hausdorff(95) == deepmind.compute_robust_hausdorff(ref, 95) > 25


def test_distance_equal_to_tolerance_counts_as_within():
    # isotropic 0.5 mm, prediction one voxel larger: many surfels are exactly 0.5 / 1.0 mm away
    gt = np.zeros((12, 12, 12), bool)
    gt[3:8, 3:8, 3:8] = True
    pred = ndimage.binary_dilation(gt)
    spacing = (0.5, 0.5, 0.5)
    ref = deepmind.compute_surface_distances(gt, pred, spacing)
    ours = compute_surface_distances(gt, pred, spacing)
    for tolerance in (0.5, 1.0 / 2 ** 0.5, 1.0):
        assert ours.surface_dice(tolerance) == pytest.approx(deepmind.compute_surface_dice_at_tolerance(ref, tolerance), abs=1e-12)
    assert ours.surface_dice(0.5) > ours.surface_dice(0.4999)


def test_hand_computed_cube_shift():
    # a 4x4x4 cube and the same cube shifted by one voxel along axis 0 (spacing 2 mm there)
    gt = np.zeros((10, 8, 8), bool)
    gt[2:6, 2:6, 2:6] = True
    pred = np.roll(gt, 1, axis=0)
    row = compute_class_metrics(pred, gt, (2.0, 1.0, 1.0), tolerance_mm=1.0, name="liver")
    # DSC = 2 * 48 / (64 + 64)
    assert row["dsc"] == 0.75
    # the shared side faces are 0 mm apart; the two end caps (4x4 voxels of 1 mm^2) are 2 mm
    # apart. With DeepMind's marching-cubes surfels the caps carry 2 * (4*4 - 4) flat surfels
    # and the rims; the exact value is whatever DeepMind says, checked here:
    ref = _deepmind_all(gt, pred, (2.0, 1.0, 1.0), 1.0)
    assert row["nsd"] == pytest.approx(ref["nsd"], abs=1e-12)
    assert row["hd95"] == ref["hd95"] == 2.0
    assert 0 < row["assd"] < 2.0


def test_dice_matches_medpy_and_monai():
    medpy_binary = pytest.importorskip("medpy.metric.binary")
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_dice

    rng = np.random.default_rng(7)
    for _ in range(3):
        gt, pred = _blobs(rng, (16, 18, 14)), _blobs(rng, (16, 18, 14))
        ours = dice_coefficient(pred, gt)
        assert ours == medpy_binary.dc(pred, gt)
        onehot = lambda m: torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))
        assert ours == pytest.approx(compute_dice(onehot(pred), onehot(gt), include_background=False).item(), abs=1e-6)


def test_nsd_matches_monai_subvoxel_surface_dice():
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_surface_dice

    rng = np.random.default_rng(11)
    spacing = (0.8, 1.3, 2.0)
    gt, pred = _blobs(rng, (18, 16, 14)), _blobs(rng, (18, 16, 14))
    onehot = lambda m: torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))
    for tolerance in (1.0, 2.5):
        monai_nsd = compute_surface_dice(
            onehot(pred), onehot(gt), [tolerance], include_background=False, spacing=list(spacing), use_subvoxels=True
        ).item()
        assert compute_surface_distances(gt, pred, spacing).surface_dice(tolerance) == pytest.approx(monai_nsd, abs=1e-6)


def test_neighbour_codes_equal_deepmind_kernel_correlation():
    rng = np.random.default_rng(3)
    mask = rng.random((6, 7, 5)) > 0.5
    padded = np.zeros((8, 9, 7), np.uint8)
    padded[:-2, :-2, :-2] = mask  # DeepMind: data at the start, one zero layer after; cval=0 before
    reference = ndimage.correlate(padded, deepmind.lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL, mode="constant", cval=0)
    np.testing.assert_array_equal(neighbour_codes(mask), reference[:-1, :-1, :-1])
    table = surfel_area_table((0.5, 1.0, 2.0))
    assert table[0] == table[255] == 0 and (table[1:255] > 0).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32])
@pytest.mark.parametrize("max_value", [1, 9, 15, 16, 33, 63, 64, 120])
def test_label_bounding_boxes_equal_find_objects(dtype, max_value):
    rng = np.random.default_rng(max_value)
    label = np.zeros((20, 25, 30), dtype)
    values = rng.choice(np.arange(1, max_value + 1), min(max_value, 6), replace=False)
    for value in values:
        lo = rng.integers(0, 15, 3)
        hi = lo + rng.integers(1, 6, 3)
        label[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = value
    if np.issubdtype(dtype, np.signedinteger):
        label[0, 0, 0] = -3  # negative values are background
    for array in (label, np.asfortranarray(label), label[:, ::-1]):
        expected = {v: b for v, b in enumerate(ndimage.find_objects(np.maximum(array, 0)), 1) if b is not None}
        assert label_bounding_boxes(array) == expected
    assert label_bounding_boxes(np.zeros((3, 3, 3), dtype)) == {}


def test_label_maps_and_mask_triples_agree():
    rng = np.random.default_rng(5)
    shape, spacing = (16, 14, 12), (1.0, 0.8, 2.0)
    gt = rng.integers(0, 3, shape).astype(np.uint8) * _blobs(rng, shape, 1.0)
    pred = rng.integers(0, 3, shape).astype(np.uint8) * _blobs(rng, shape, 1.0)
    classes = {1: "kidney_left", 2: "kidney_right"}
    from_maps = compute_case_metrics(pred, gt, spacing, classes, "flare22")
    from_masks = compute_case_metrics(None, None, spacing, [(n, pred == v, gt == v) for v, n in classes.items()], "flare22")
    assert from_maps == from_masks


# ---- empty-mask conventions, by hand -------------------------------------------------------


def _case(gt_on: bool, pred_on: bool):
    gt = np.zeros((6, 8, 10), np.uint8)
    pred = np.zeros_like(gt)
    if gt_on:
        gt[1:3, 1:3, 1:3] = 1
    if pred_on:
        pred[2:4, 2:4, 2:4] = 1
    return pred, gt


SPACING = (1.0, 2.0, 0.5)
DIAGONAL = math.sqrt(6.0**2 + 16.0**2 + 5.0**2)  # shape x spacing = 6 x 16 x 5 mm


def test_volume_diagonal():
    assert volume_diagonal_mm((6, 8, 10), SPACING) == pytest.approx(DIAGONAL)


@pytest.mark.parametrize(
    "gt_on,pred_on,expected",
    [
        (False, False, {"dsc": 1.0, "nsd": 1.0, "hd95": 0.0, "assd": 0.0}),
        (False, True, {"dsc": 0.0, "nsd": 0.0, "hd95": DIAGONAL, "assd": DIAGONAL}),
        (True, False, {"dsc": 0.0, "nsd": 0.0, "hd95": DIAGONAL, "assd": DIAGONAL}),
    ],
)
def test_aeval_convention(gt_on, pred_on, expected):
    pred, gt = _case(gt_on, pred_on)
    (row,) = compute_case_metrics(pred, gt, SPACING, {1: "liver"}, "aeval", convention="aeval")
    assert {m: row[m] for m in expected} == pytest.approx(expected)
    assert (row["gt_present"], row["pred_present"]) == (gt_on, pred_on)


@pytest.mark.parametrize(
    "gt_on,pred_on,expected",
    [
        (False, False, {"dsc": math.nan, "nsd": math.nan, "hd95": math.nan, "assd": math.nan}),
        (False, True, {"dsc": math.nan, "nsd": math.nan, "hd95": math.nan, "assd": math.nan}),
        (True, False, {"dsc": 0.0, "nsd": 0.0, "hd95": DIAGONAL, "assd": DIAGONAL}),
    ],
)
def test_touchstone_convention(gt_on, pred_on, expected):
    pred, gt = _case(gt_on, pred_on)
    (row,) = compute_case_metrics(pred, gt, SPACING, {1: "liver"}, "touchstone", convention="touchstone")
    for metric, value in expected.items():
        assert (math.isnan(row[metric]) and math.isnan(value)) or row[metric] == pytest.approx(value)


def test_both_present_is_the_same_under_every_convention():
    pred, gt = _case(True, True)
    rows = [compute_case_metrics(pred, gt, SPACING, {1: "liver"}, 2.0, convention=c)[0] for c in ("aeval", "touchstone")]
    assert rows[0] == rows[1]
    # two 2x2x2 cubes overlapping in one voxel: DSC = 2 * 1 / 16
    assert rows[0]["dsc"] == 0.125


def test_custom_convention_and_unknown_names():
    nan_distances = EmptyMaskConvention(
        "nan_distances", "missed organ: distances undefined",
        {c: {"dsc": 0.0, "nsd": 0.0, "hd95": math.nan, "assd": math.nan} for c in ("both_empty", "gt_empty", "pred_empty")},
    )
    pred, gt = _case(True, False)
    (row,) = compute_case_metrics(pred, gt, SPACING, {1: "liver"}, 2.0, convention=nan_distances)
    assert row["dsc"] == 0.0 and math.isnan(row["hd95"])
    assert get_convention("Touch-Stone") is TOUCHSTONE and get_convention(AEVAL) is AEVAL
    with pytest.raises(UnknownNameError, match="known"):
        get_convention("flare")
    with pytest.raises(UnknownNameError, match="hd99"):
        compute_case_metrics(pred, gt, SPACING, {1: "liver"}, 2.0, metrics=("dsc", "hd99"))


# ---- tolerances ---------------------------------------------------------------------------


def test_tolerance_presets_by_class_name():
    flare = NSD_TOLERANCES_MM["flare22"]
    assert flare["liver"] == 5.0 and flare["duodenum"] == 7.0 and flare["kidney_left"] == 3.0
    assert flare["ivc"] == flare["postcava"] == 2.0  # synonyms through the taxonomy
    assert flare["gall_bladder"] == 2.0
    assert dict(NSD_TOLERANCES_MM["aeval"]) == dict(flare)
    assert NSD_TOLERANCES_MM["touchstone"]["anything_at_all"] == 1.5
    with pytest.raises(UnknownNameError, match="colon"):
        flare["colon"]
    assert get_tolerances("2.5")["colon"] == 2.5 and get_tolerances(1)["liver"] == 1.0
    assert get_tolerances({"liver": 4})["liver"] == 4.0
    with pytest.raises(UnknownNameError, match="known"):
        get_tolerances("flair22")
    with pytest.raises(ValueError):
        get_tolerances(-1.0)


def test_nsd_uses_the_class_tolerance():
    rng = np.random.default_rng(2)
    gt, pred = _blobs(rng, (16, 16, 16)), _blobs(rng, (16, 16, 16))
    spacing = (1.0, 1.0, 1.0)
    ref = deepmind.compute_surface_distances(gt, pred, spacing)
    for name, tolerance in (("liver", 5.0), ("gallbladder", 2.0), ("esophagus", 3.0)):
        (row,) = compute_case_metrics(None, None, spacing, [(name, pred, gt)], "flare22", metrics=("nsd",))
        assert row["nsd"] == pytest.approx(deepmind.compute_surface_dice_at_tolerance(ref, tolerance), abs=1e-12)
        assert set(row) >= {"nsd"} and "dsc" not in row


# ---- bad input ----------------------------------------------------------------------------


def test_bad_input_is_rejected_with_a_reason():
    gt = np.zeros((5, 5, 5), np.uint8)
    with pytest.raises(DataValidationError, match="same shape"):
        compute_case_metrics(np.zeros((5, 5, 4), np.uint8), gt, (1, 1, 1), {1: "liver"}, 1.0)
    with pytest.raises(DataValidationError, match="not binary"):
        compute_case_metrics(None, None, (1, 1, 1), [("liver", gt + 2, gt)], 1.0)
    with pytest.raises(DataValidationError, match="spacing"):
        compute_case_metrics(gt, gt, (1, 0, 1), {1: "liver"}, 1.0)
    with pytest.raises(DataValidationError, match="tolerance"):
        compute_case_metrics(gt, gt, (1, 1, 1), {1: "liver"}, None)
    with pytest.raises(UnknownNameError, match="colon"):
        compute_case_metrics(gt, gt, (1, 1, 1), {1: "colon"}, "flare22")


# ---- MONAI metric and ignite handler ------------------------------------------------------


def _batch(rng: np.random.Generator, shape=(14, 12, 10)):
    gt = np.stack([rng.integers(0, 3, shape) * _blobs(rng, shape, 1.0) for _ in range(2)]).astype(np.uint8)
    pred = np.stack([rng.integers(0, 3, shape) * _blobs(rng, shape, 1.0) for _ in range(2)]).astype(np.uint8)
    return pred, gt


def test_monai_metric_equals_case_metrics_for_label_maps_and_one_hot():
    torch = pytest.importorskip("torch")
    from medsegzoo.evaluation.monai_metric import SegmentationMetrics
    from monai.data import MetaTensor

    rng = np.random.default_rng(21)
    pred, gt = _batch(rng)
    classes = ["spleen", "liver"]
    affine = torch.diag(torch.tensor([0.8, 1.2, 2.0, 1.0], dtype=torch.float64))
    metric = SegmentationMetrics(classes, metric="nsd", tolerances_mm="flare22", convention="touchstone")
    y_pred = MetaTensor(torch.from_numpy(pred[:, None]), affine=affine)
    y = MetaTensor(torch.from_numpy(gt[:, None]), affine=affine)
    metric(y_pred=y_pred, y=y)
    # the same cases as one-hot channel-first lists, spacing passed explicitly
    onehot = lambda a: torch.from_numpy(np.stack([a == 0, a == 1, a == 2]).astype(np.float32))
    metric([onehot(p) for p in pred], [onehot(g) for g in gt], spacing=(0.8, 1.2, 2.0))
    table = metric.table(["a", "b", "a1", "b1"])
    for i, case in enumerate(["a", "b"]):
        expected = compute_case_metrics(pred[i], gt[i], (0.8, 1.2, 2.0), {1: "spleen", 2: "liver"}, "flare22", convention="touchstone")
        for copy in (case, f"{case}1"):
            rows = table[table["case"] == copy].to_dict("records")
            for row, ref in zip(rows, expected):
                for m in ("dsc", "nsd", "hd95", "assd", "gt_present", "pred_present"):
                    assert row[m] == pytest.approx(ref[m]), (copy, m)
    values = metric.values("nsd").numpy()
    assert values.shape == (4, 2)
    # "mean": class mean per case (NaN left out), then the mean over cases
    per_case = np.nanmean(values, axis=1)
    assert metric.aggregate().item() == pytest.approx(per_case.mean())
    np.testing.assert_allclose(metric.aggregate("mean_batch", metric="dsc").numpy(), table.pivot(index="case", columns="class", values="dsc")[classes].mean().to_numpy())


def test_monai_metric_refuses_to_guess_spacing_and_probabilities():
    torch = pytest.importorskip("torch")
    from medsegzoo.evaluation.monai_metric import SegmentationMetrics

    pred, gt = _batch(np.random.default_rng(1))
    metric = SegmentationMetrics(["spleen", "liver"], tolerances_mm=2.0)
    with pytest.raises(DataValidationError, match="spacing"):
        metric(torch.from_numpy(pred[:, None]), torch.from_numpy(gt[:, None]))
    with pytest.raises(DataValidationError, match="probabilities"):
        metric(torch.rand(1, 1, 6, 6, 6), torch.from_numpy(gt[:1, None]), spacing=(1, 1, 1))
    with pytest.raises(UnknownNameError):
        SegmentationMetrics(["liver"], metric="hd95", metrics=("dsc",))


def test_ignite_handler_reports_the_mean_and_details():
    torch = pytest.importorskip("torch")
    from ignite.engine import Engine
    from medsegzoo.evaluation.monai_metric import SegmentationMetricsHandler
    from monai.handlers import from_engine

    rng = np.random.default_rng(4)
    pred, gt = _batch(rng)
    data = [{"pred": torch.from_numpy(pred[i : i + 1, None]), "label": torch.from_numpy(gt[i : i + 1, None])} for i in range(2)]
    engine = Engine(lambda engine, batch: batch)
    handler = SegmentationMetricsHandler(
        ["spleen", "liver"], metric="hd95", tolerances_mm="touchstone", spacing=(1.0, 1.0, 2.0),
        output_transform=from_engine(["pred", "label"]),
    )
    handler.attach(engine, "val_hd95")
    engine.run(data, max_epochs=1)
    expected = [
        np.nanmean([r["hd95"] for r in compute_case_metrics(pred[i], gt[i], (1.0, 1.0, 2.0), {1: "spleen", 2: "liver"}, 1.5)])
        for i in range(2)
    ]
    assert engine.state.metrics["val_hd95"] == pytest.approx(np.mean(expected))
    assert tuple(engine.state.metric_details["val_hd95"].shape) == (2, 2, 6)


def test_package_exports_resolve():
    from medsegzoo import evaluation

    missing = [name for name in evaluation.__all__ if getattr(evaluation, name, None) is None]
    assert missing == []
    assert evaluation.compute_case_metrics is compute_case_metrics
    with pytest.raises(AttributeError):
        evaluation.no_such_name  # noqa: B018


def test_default_tolerances_fall_back_to_the_conventions_general_tolerance():
    from medsegzoo.evaluation.conventions import (
        default_tolerances,
        defaulted_classes,
        tolerance_notes,
    )
    from medsegzoo.taxonomy import get_label_system

    classes = get_label_system("universal32").classes
    aeval = default_tolerances("aeval")
    assert aeval["liver"] == 5.0 and aeval["ivc"] == 2.0 and aeval["colon"] == 2.0
    assert aeval.default == 2.0 and default_tolerances("touchstone")["colon"] == 1.5
    defaulted = defaulted_classes(aeval, classes)
    assert "colon" in defaulted and "liver" not in defaulted and "postcava" not in defaulted
    assert defaulted_classes(default_tolerances("touchstone"), classes) == []  # uniform: nothing named
    assert tolerance_notes(aeval, ["liver", "colon"]) == [
        "NSD tolerance: colon not in the preset table, scored at the convention's general tolerance of 2 mm"
    ]
    with pytest.raises(UnknownNameError, match="has no tolerance for class 'colon'"):
        get_tolerances("aeval")["colon"]  # the preset itself, given explicitly, has no fallback
