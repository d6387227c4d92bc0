"""Partial labels: datalist splits and balance (data), label masking (transforms), model extension (networks)."""

from __future__ import annotations

import json

import pytest
import torch
from monai.data import MetaTensor

from medsegzoo.data.partial_labels import dataset_balanced_weights, load_cases, load_partial_split
from medsegzoo.errors import DataValidationError, MedSegZooError, UnknownNameError
from medsegzoo.networks.text_encoders import compute_text_embeddings, save_text_embeddings
from medsegzoo.networks.universal import UniversalModel, extend_universal_model
from medsegzoo.networks.weights import StateDictMismatchError
from medsegzoo.transforms.partial import MaskUnlabeledChannelsd, SelectChannelsd


def _datalist(tmp_path, name: str, cases: list[dict]) -> str:
    for c in cases:
        for field in ("image", "label"):
            (tmp_path / c[field]).write_bytes(b"")
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "training": cases}))
    return str(path)


def _case(cid: str, dataset: str, labeled: list[str]) -> dict:
    return {"case_id": cid, "image": f"{cid}_img.nii.gz", "label": f"{cid}_lab.nii.gz", "dataset": dataset, "labeled_classes": labeled}


def test_balanced_weights_give_each_dataset_equal_mass() -> None:
    cases = [{"dataset": "a"}] * 6 + [{"dataset": "b"}] * 2 + [{"dataset": "c"}]
    w = torch.tensor(dataset_balanced_weights(cases))
    assert torch.allclose(w[:6].sum(), w[6:8].sum()) and torch.allclose(w[6:8].sum(), w[8:].sum())
    assert float(w.sum()) == pytest.approx(3.0)


def test_partial_split_accepts_several_datalists_and_rejects_bad_ones(tmp_path) -> None:
    kits = _datalist(tmp_path, "kits", [_case("k1", "kits19", ["kidney", "kidney_tumor"])])
    spleen = _datalist(tmp_path, "spleen", [_case("s1", "msd_spleen", ["spleen"])])
    cases = load_partial_split([kits, spleen], "training")
    assert [c["case_id"] for c in cases] == ["k1", "s1"]
    assert cases[0]["image"].startswith(str(tmp_path))
    # the model predicts only liver: the spleen data set labels none of its classes
    with pytest.raises(DataValidationError, match="'msd_spleen'.*labels none of the model's classes"):
        load_partial_split([kits, spleen], "training", classes=["liver", "kidney_left"])
    brain = _datalist(tmp_path, "brain", [_case("b1", "brats2019", ["brain_tumor"])])
    with pytest.raises(DataValidationError, match="labels none of the universal32 classes"):
        load_partial_split(brain, "training")
    with pytest.raises(UnknownNameError):
        load_partial_split(kits, "training", classes=["liver", "warp_core"])
    twice = _datalist(tmp_path, "twice", [_case("k1", "kits19", ["kidney"])])
    with pytest.raises(DataValidationError, match="more than once"):
        load_cases([kits, twice], "training")
    with pytest.raises(DataValidationError, match="no cases"):
        load_partial_split(kits, "validation")


def test_mask_unlabeled_channels_and_select() -> None:
    label = MetaTensor(torch.ones(3, 2, 2, 2), affine=torch.eye(4) * 2)
    d = MaskUnlabeledChannelsd("label")({"label": label, "labeled_classes": torch.tensor([1.0, 0.0, 1.0])})
    assert isinstance(d["label"], MetaTensor) and torch.equal(d["label"].affine, label.affine)
    assert torch.all(d["label"][1] == -1) and torch.all(d["label"][[0, 2]] == 1)
    with pytest.raises(DataValidationError, match="flags"):
        MaskUnlabeledChannelsd("label")({"label": label, "labeled_classes": torch.ones(2)})
    sel = SelectChannelsd(["label", "m"], "universal32", ["liver", "spleen"])
    out = sel({"label": torch.arange(32).view(32, 1), "m": torch.arange(32)})
    assert out["label"].flatten().tolist() == [5, 0] and out["m"].tolist() == [5, 0]
    with pytest.raises(DataValidationError, match="not in label system"):
        SelectChannelsd("label", "universal32", ["brain_tumor"])


def test_extend_model_loads_base_and_freezes(tmp_path) -> None:
    torch.manual_seed(0)
    base_emb = compute_text_embeddings(["liver", "spleen"], "onehot", width=4)
    base = UniversalModel(base_emb.embeddings, backbone="unet", unet_base_channels=4, class_names=base_emb.classes)
    torch.save({"network": base.state_dict()}, tmp_path / "model.pt")
    new_file = tmp_path / "new.pt"
    save_text_embeddings(compute_text_embeddings(["kidney_left"], "onehot", width=4), new_file)
    fresh = UniversalModel(base_emb.embeddings, backbone="unet", unet_base_channels=4, class_names=base_emb.classes)
    extended = extend_universal_model(fresh, ["left kidney"], new_file, tmp_path / "model.pt", width=4)
    x = torch.randn(1, 1, 16, 16, 16)
    base.eval(), extended.eval()
    with torch.no_grad():
        assert torch.equal(extended(x)[:, :2], base(x))
    assert extended.class_names == ("liver", "spleen", "kidney_left")
    assert all(p.requires_grad == (n.startswith("groups.1.")) for n, p in extended.named_parameters())
    with pytest.raises(DataValidationError, match="class list does not match"):
        extend_universal_model(UniversalModel(base_emb.embeddings, backbone="unet", unet_base_channels=4), ["kidney_right"], new_file)
    with pytest.raises(StateDictMismatchError, match="missing.pt: checkpoint file does not exist"):
        extend_universal_model(fresh, ["kidney_left"], new_file, tmp_path / "missing.pt")
    with pytest.raises(MedSegZooError):
        save_text_embeddings(compute_text_embeddings(["liver"], "onehot", width=4), tmp_path / "liver.pt")
        extend_universal_model(extended, ["liver"], tmp_path / "liver.pt")
