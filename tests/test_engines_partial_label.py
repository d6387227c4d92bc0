"""Partial-label training helpers: data checks, datalist mixing, the multi-head step, scoring."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.engines import SupervisedTrainer

from medsegzoo.data.predictions import prediction_path
from medsegzoo.engines.partial_label import check_partial_label_datalist
from medsegzoo.engines.steps import PartialLabelStep
from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation.scoring import score_predictions

AFFINE = np.diag([1.0, 1.0, 3.0, 1.0])


def _case(root, case_id, dataset, labeled, label):
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(label.shape, np.float32), AFFINE), str(folder / f"{case_id}_img.nii.gz"))
    nib.save(nib.Nifti1Image(label.astype(np.uint8), AFFINE), str(folder / f"{case_id}_lab.nii.gz"))
    return {
        "case_id": case_id, "image": f"{dataset}/{case_id}_img.nii.gz", "label": f"{dataset}/{case_id}_lab.nii.gz",
        "dataset": dataset, "labeled_classes": labeled,
    }


def _kidneys(value_tumor: int = 2) -> np.ndarray:
    lab = np.zeros((16, 12, 6), np.uint8)
    lab[1:5, 4:8, 1:4] = 1  # low x: the patient's left in RAS (+x points to the right)
    lab[11:15, 4:8, 1:4] = 1
    lab[2, 5, 2] = value_tumor
    return lab


def _spleen() -> np.ndarray:
    lab = np.zeros((16, 12, 6), np.uint8)
    lab[9:14, 1:4, 1:5] = 1
    return lab


def _datalist(tmp_path, training, validation=()):
    data = {"name": "t", "layout": "mixed", "label_system": None, "dataset_dir": str(tmp_path),
            "training": list(training), "validation": list(validation), "test": []}
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(data))
    return path


def test_check_accepts_a_good_mix(tmp_path):
    good = [_case(tmp_path, "k1", "kits19", ["kidney", "kidney_tumor"], _kidneys()),
            _case(tmp_path, "s1", "msd_spleen", ["spleen"], _spleen())]
    assert check_partial_label_datalist(_datalist(tmp_path, good), tmp_path, "tct5") == 2


@pytest.mark.parametrize(
    ("labeled", "dataset", "label", "message"),
    [
        ([], "kits19", _kidneys(), "'labeled_classes' is empty"),
        (["kidnee"], "kits19", _kidneys(), "kidnee"),
        (["colon_tumor"], "msd_colon", _spleen(), "cover none of the 'tct5' classes"),
        (["kidney", "kidney_tumor"], "kits19", _kidneys(value_tumor=3), "k1_lab.nii.gz"),
    ],
)
def test_check_rejects_bad_cases_with_clear_messages(tmp_path, labeled, dataset, label, message):
    cases = [_case(tmp_path, "k1", dataset, labeled, label), _case(tmp_path, "s1", "msd_spleen", ["spleen"], _spleen())]
    with pytest.raises(DataValidationError, match=message) as info:
        check_partial_label_datalist(_datalist(tmp_path, cases), tmp_path, "tct5")
    assert "k1" in str(info.value)


def test_check_rejects_empty_training_split(tmp_path):
    with pytest.raises(DataValidationError, match="'training' is empty"):
        check_partial_label_datalist(_datalist(tmp_path, []), tmp_path, "tct5")


class _TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, 1)

    def forward(self, x):
        y = self.conv(x)
        return {"main": y, "aux": y[:, :2].unsqueeze(2)}


def test_partial_label_step_passes_mask_and_progress(tmp_path):
    torch.manual_seed(0)
    net = _TwoHeads()
    calls = []

    def loss(outputs, label, labeled, epoch):
        calls.append((set(outputs), labeled.clone(), epoch))
        value = outputs["main"].mean() ** 2
        return {"loss": value, "main": value.detach()}

    batch = {"image": torch.rand(2, 1, 4, 4, 4), "label": torch.zeros(2, 1, 4, 4, 4),
             "labeled_classes": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    before = net.conv.weight.detach().clone()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch, batch], network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=loss,
        iteration_update=PartialLabelStep(),
    )
    trainer.run()
    assert [c[0] for c in calls] == [{"main", "aux"}] * 2
    assert torch.equal(calls[0][1], batch["labeled_classes"])
    assert [c[2] for c in calls] == [0.0, 0.5]  # fractional epoch of iterations 1 and 2
    assert not torch.equal(before, net.conv.weight)  # the optimizer stepped
    assert set(trainer.state.loss_parts) == {"loss", "main"}
    # MONAI decollated the output per sample; pred is the main head
    assert isinstance(trainer.state.output, list) and trainer.state.output[0]["pred"].shape == (3, 4, 4, 4)


def test_partial_label_step_needs_the_mask():
    net = _TwoHeads()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1,
        train_data_loader=[{"image": torch.rand(1, 1, 4, 4, 4), "label": torch.zeros(1, 1, 4, 4, 4)}],
        network=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=lambda *a, **k: 0, iteration_update=PartialLabelStep(),
    )
    with pytest.raises(Exception, match="LabeledClassesMaskd"):
        trainer.run()


def test_scoring_counts_only_labeled_classes_and_splits_kits_kidneys(tmp_path):
    cases = [_case(tmp_path, "k1", "kits19", ["kidney", "kidney_tumor"], _kidneys()),
             _case(tmp_path, "s1", "msd_spleen", ["spleen"], _spleen())]
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"name": "t", "dataset_dir": str(tmp_path), "test": cases}))
    pred_dir = tmp_path / "pred"
    # kits: perfect kidneys (tct5 1 = left at low x, 2 = right at high x) plus a false spleen
    kid = np.zeros((16, 12, 6), np.uint8)
    kid[1:5, 4:8, 1:4] = 1
    kid[11:15, 4:8, 1:4] = 2
    kid[9:14, 1:4, 5] = 5  # spleen is unlabeled in KiTS: must not be scored
    spl = np.zeros((16, 12, 6), np.uint8)
    spl[9:14, 1:4, 1:3] = 5  # half the spleen
    for entry, array in zip(cases, (kid, spl)):
        out = prediction_path(pred_dir, entry["case_id"])
        out.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(array, AFFINE), str(out))
    table = score_predictions(path, pred_dir, "tct5", tmp_path / "report", dataset_dir=tmp_path, metrics=("dsc", "hd95"))
    scored = {(r["case"], r["class"]): r["dsc"] for _, r in table.iterrows()}
    assert set(scored) == {("k1", "kidney_left"), ("k1", "kidney_right"), ("s1", "spleen")}
    assert scored[("k1", "kidney_left")] == pytest.approx(1.0)
    assert scored[("k1", "kidney_right")] == pytest.approx(1.0)
    assert scored[("s1", "spleen")] == pytest.approx(2 * 30 / (30 + 60))
    assert (tmp_path / "report" / "summary.md").is_file() and (tmp_path / "report" / "per_case.csv").is_file()
    prediction_path(pred_dir, "s1").unlink()
    with pytest.raises(DataValidationError, match="s1.nii.gz"):
        score_predictions(path, pred_dir, "tct5", tmp_path / "report2", dataset_dir=tmp_path)
    assert not (tmp_path / "report2").exists()
