"""Tests of the semi-supervised split, the two-stream loader and the EMA-teacher trainer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader

from medsegzoo.engines.semi_supervised import (
    SemiSupervisedTrainer,
    TwoStreamLoader,
    overlap_for_stride,
    require_checkpoint,
    semi_supervised_split,
)
from medsegzoo.errors import DataValidationError, MedSegZooError
from medsegzoo.losses.tcseg import TCSegLoss
from medsegzoo.networks.vnet_dual import DualDecoderVNet


def datalist(n_train: int = 5, n_unlabeled: int = 1, classes: list[list[str]] | None = None) -> dict:
    train = [
        {"case_id": f"c{i}", "image": f"img{i}.nii.gz", "label": f"lab{i}.nii.gz", "dataset": "la",
         "labeled_classes": (classes[i] if classes else ["left_atrium"])}
        for i in range(n_train)
    ]
    unl = [{"case_id": f"u{i}", "image": f"u{i}.nii.gz", "dataset": "la"} for i in range(n_unlabeled)]
    return {"name": "toy", "training": train, "validation": [], "test": [], "unlabeled": unl}


def test_split_takes_first_cases_and_strips_labels(tmp_path) -> None:
    split = semi_supervised_split(datalist(), tmp_path, labeled_ratio=0.4)
    assert [c["case_id"] for c in split["labeled"]] == ["c0", "c1"]
    assert [c["case_id"] for c in split["unlabeled"]] == ["c2", "c3", "c4", "u0"]
    assert all("label" not in c for c in split["unlabeled"])
    assert split["labeled"][0]["image"] == str(tmp_path / "img0.nii.gz")
    assert len(semi_supervised_split(datalist(), tmp_path, labeled_count=3)["labeled"]) == 3


def test_split_errors(tmp_path) -> None:
    with pytest.raises(DataValidationError, match="leaves no labeled case"):
        semi_supervised_split(datalist(), tmp_path, labeled_ratio=0.05)
    with pytest.raises(DataValidationError, match="no unlabeled case"):
        semi_supervised_split(datalist(n_unlabeled=0), tmp_path, labeled_ratio=1.0)
    assert len(semi_supervised_split(datalist(n_unlabeled=0), tmp_path, labeled_ratio=1.0, require_unlabeled=False)["labeled"]) == 5
    mixed = datalist(classes=[["left_atrium"], ["pancreas"], ["left_atrium"], ["left_atrium"], ["left_atrium"]])
    with pytest.raises(DataValidationError, match="disagree on their label classes.*pancreas"):
        semi_supervised_split(mixed, tmp_path, labeled_ratio=0.4)
    # the disagreeing case is unlabeled at 20 %: allowed
    assert len(semi_supervised_split(mixed, tmp_path, labeled_ratio=0.2)["labeled"]) == 1
    with pytest.raises(DataValidationError, match="exactly one"):
        semi_supervised_split(datalist(), tmp_path)


def test_two_stream_loader_cycles_and_rejects_empty() -> None:
    loader = TwoStreamLoader(DataLoader(list(range(4)), batch_size=2), DataLoader([10, 11], batch_size=2), iterations_per_epoch=5)
    batches = list(loader)
    assert len(loader) == 5 and len(batches) == 5
    assert [b["labeled"].tolist() for b in batches] == [[0, 1], [2, 3], [0, 1], [2, 3], [0, 1]]
    assert all(b["unlabeled"].tolist() == [10, 11] for b in batches)
    with pytest.raises(MedSegZooError, match="unlabeled loader is empty"):
        TwoStreamLoader(DataLoader([1, 2]), DataLoader([], batch_size=2))
    assert [b["unlabeled"] for b in TwoStreamLoader(DataLoader([1, 2]))] == [None, None]


def _loader(n: int = 2) -> TwoStreamLoader:
    g = torch.Generator().manual_seed(0)
    lab = [{"image": torch.rand(1, 16, 16, 16, generator=g), "label": (torch.rand(1, 16, 16, 16, generator=g) > 0.5).long()} for _ in range(2)]
    unl = [{"image": torch.rand(1, 16, 16, 16, generator=g)} for _ in range(2)]
    return TwoStreamLoader(DataLoader(lab, batch_size=2), DataLoader(unl, batch_size=2), iterations_per_epoch=n)


def test_trainer_updates_student_and_ema_teacher() -> None:
    torch.manual_seed(0)
    net = DualDecoderVNet(base_filters=4)
    initial = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    trainer = SemiSupervisedTrainer("cpu", 1, _loader(1), net, opt, TCSegLoss(mix_start_iteration=0), ema_momentum=0.01)
    trainer.run()
    assert trainer.state.iteration == 1
    assert set(trainer.state.output["terms"]) >= {"sup", "pse", "cal", "mix"}
    assert trainer.state.output["terms"]["mix"] > 0
    w0 = dict(initial.named_parameters())
    for name, student_w in net.named_parameters():
        teacher_w = dict(trainer.teacher.named_parameters())[name]
        # one EMA step: teacher = 0.99 * initial + 0.01 * student
        assert torch.allclose(teacher_w, 0.99 * w0[name] + 0.01 * student_w.detach(), atol=1e-6), name
    assert any(not torch.equal(p, w0[n]) for n, p in net.named_parameters())


class _RecordTeacher(TCSegLoss):
    """TCSegLoss that records the teacher's mode and whether two teacher passes differ (dropout)."""

    def forward(
        self,
        network: torch.nn.Module,
        teacher: torch.nn.Module,
        labeled_image: torch.Tensor,
        label: torch.Tensor,
        unlabeled_image: torch.Tensor,
        iteration: int,
    ) -> dict[str, torch.Tensor]:
        self.teacher_training = teacher.training
        with torch.no_grad():
            first, second = teacher(unlabeled_image), teacher(unlabeled_image)
        self.teacher_stochastic = not torch.equal(first, second)
        return super().forward(network, teacher, labeled_image, label, unlabeled_image, iteration)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_teacher_mode_during_the_step(mode: str) -> None:
    torch.manual_seed(0)
    net = DualDecoderVNet(base_filters=4, dropout=0.5)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    objective = _RecordTeacher(mix_start_iteration=10**6)
    trainer = SemiSupervisedTrainer("cpu", 1, _loader(1), net, opt, objective, teacher_mode=mode)
    trainer.teacher.train(mode != "train")  # the trainer must set the mode itself before every step
    trainer.run()
    assert objective.teacher_training is (mode == "train")
    # train mode: dropout is on, so two teacher passes differ; eval mode: deterministic
    assert objective.teacher_stochastic is (mode == "train")
    student_bn = {n: b for n, b in net.named_buffers() if n.endswith("running_mean")}
    teacher_bn = {n: b for n, b in trainer.teacher.named_buffers() if n.endswith("running_mean")}
    assert student_bn, "the V-Net has BatchNorm layers"
    same = all(torch.equal(student_bn[n], teacher_bn[n]) for n in student_bn)
    # eval: the student's statistics are copied after the update; train: the teacher keeps its own
    assert same is (mode == "eval")
    with pytest.raises(MedSegZooError, match="teacher_mode"):
        SemiSupervisedTrainer("cpu", 1, _loader(1), net, opt, TCSegLoss(), teacher_mode="frozen")


def test_supervised_only_has_no_teacher_and_needs_no_unlabeled() -> None:
    net = DualDecoderVNet(base_filters=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    labeled_only = TwoStreamLoader(_loader().labeled, None, iterations_per_epoch=1)
    trainer = SemiSupervisedTrainer("cpu", 1, labeled_only, net, opt, TCSegLoss(supervised_only=True))
    trainer.run()
    assert trainer.teacher is None and trainer.state.iteration == 1
    with pytest.raises(MedSegZooError, match="no unlabeled stream"):
        SemiSupervisedTrainer("cpu", 1, labeled_only, net, opt, TCSegLoss())


def test_order_file_puts_the_literatures_labeled_cases_first(tmp_path) -> None:
    order = tmp_path / "train.list"
    order.write_text("c3\nc1\nc4/mri_norm2.h5\n")
    split = semi_supervised_split(datalist(), tmp_path, labeled_count=2, order_file=order)
    assert [c["case_id"] for c in split["labeled"]] == ["c3", "c1"]
    assert [c["case_id"] for c in split["unlabeled"]][:3] == ["c4", "c0", "c2"]
    with pytest.raises(DataValidationError, match="does not exist"):
        semi_supervised_split(datalist(), tmp_path, labeled_count=2, order_file=tmp_path / "missing.list")


def test_overlap_for_stride_gives_the_papers_strides() -> None:
    from monai.inferers.utils import _get_scan_interval

    for patch, stride in (((112, 112, 80), (18, 18, 4)), ((96, 96, 96), (16, 16, 16))):
        overlap = overlap_for_stride(patch, stride)
        assert tuple(_get_scan_interval(tuple(3 * p for p in patch), patch, 3, overlap)) == stride
    with pytest.raises(MedSegZooError):
        overlap_for_stride((32, 32), (0, 16))


def test_require_checkpoint_explains_missing_best(tmp_path) -> None:
    with pytest.raises(MedSegZooError, match="validation split"):
        require_checkpoint(tmp_path / "model_best.pt")
    (tmp_path / "model_last.pt").write_bytes(b"x")
    assert require_checkpoint(tmp_path / "model_last.pt") == str(tmp_path / "model_last.pt")
