"""Text embeddings of the Universal Model: encoders, prompt, cache round trip and checks."""

from __future__ import annotations

import os
import time

import pytest
import torch

from medsegzoo.errors import DataValidationError, MedSegZooError, UnknownNameError
from medsegzoo.networks.text_encoders import (
    OFFICIAL_PROMPT,
    PAPER_PROMPT,
    build_text_encoder,
    class_prompts,
    compute_text_embeddings,
    load_text_embeddings,
    save_text_embeddings,
    write_text_embeddings,
)
from medsegzoo.taxonomy import get_label_system

CLASSES = ["liver", "kidney_right", "liver_tumor"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# the class list of the official embedding script (pretrained_weights/clip_embedding.py), written
# out here by hand in the universal32 order, typos included
OFFICIAL_NAMES = [
    "Spleen", "Right Kidney", "Left Kidney", "Gall Bladder", "Esophagus", "Liver", "Stomach", "Arota",
    "Postcava", "Portal Vein and Splenic Vein", "Pancreas", "Right Adrenal Gland", "Left Adrenal Gland",
    "Duodenum", "Hepatic Vessel", "Right Lung", "Left Lung", "Colon", "Intestine", "Rectum", "Bladder",
    "Prostate", "Left Head of Femur", "Right Head of Femur", "Celiac Truck", "Kidney Tumor", "Liver Tumor",
    "Pancreas Tumor", "Hepatic Vessel Tumor", "Lung Tumor", "Colon Tumor", "Kidney Cyst",
]


def test_default_prompts_are_the_official_wording_without_full_stop() -> None:
    classes = get_label_system("universal32").classes
    prompts = class_prompts(classes)
    assert prompts == [f"A computerized tomography of a {name}" for name in OFFICIAL_NAMES]
    assert OFFICIAL_PROMPT == "A computerized tomography of a {}" and PAPER_PROMPT == OFFICIAL_PROMPT + "."
    # synonyms reach the same wording; a class outside the official 32 keeps its display name
    assert class_prompts(["IVC", "prostate_uterus", "trachea"]) == [
        "A computerized tomography of a Postcava",
        "A computerized tomography of a Prostate",
        "A computerized tomography of a trachea",
    ]


def test_taxonomy_names_and_other_templates() -> None:
    assert class_prompts(["kidney_right", "ivc", "prostate_uterus"], PAPER_PROMPT, names="taxonomy") == [
        "A computerized tomography of a right kidney.",
        "A computerized tomography of a inferior vena cava.",
        "A computerized tomography of a prostate or uterus.",
    ]
    assert class_prompts(["liver"], "There is [CLS] in this computerized tomography.") == [
        "There is Liver in this computerized tomography."
    ]
    with pytest.raises(DataValidationError, match="exactly one"):
        class_prompts(["liver"], "no placeholder")
    with pytest.raises(DataValidationError, match="prompt names"):
        class_prompts(["liver"], names="canonical")


def test_onehot_is_identity_and_pads() -> None:
    emb = compute_text_embeddings(CLASSES, "onehot")
    assert emb.width == 3 and torch.equal(emb.embeddings, torch.eye(3))
    wide = compute_text_embeddings(CLASSES, "one_hot", width=5)
    assert wide.embeddings.shape == (3, 5) and wide.embeddings[:, 3:].abs().sum() == 0
    with pytest.raises(MedSegZooError, match="smaller"):
        compute_text_embeddings(CLASSES, "onehot", width=2)


def test_minilm_gives_384_d_and_related_names_are_closer() -> None:
    emb = compute_text_embeddings(CLASSES, "minilm")
    assert emb.embeddings.shape == (3, 384)
    assert emb.encoder.startswith("minilm")
    e = torch.nn.functional.normalize(emb.embeddings, dim=1)
    # a real text model: "liver tumor" is closer to "liver" than to "right kidney"
    assert float(e[2] @ e[0]) > float(e[2] @ e[1])


def test_random_open_clip_is_deterministic_and_not_normalised() -> None:
    a = compute_text_embeddings(CLASSES, "open_clip", pretrained="none")
    b = compute_text_embeddings(CLASSES, "open_clip", pretrained="none")
    assert a.embeddings.shape == (3, 512)
    assert torch.equal(a.embeddings, b.embeddings)
    assert a.encoder == "open_clip:ViT-B-32:none"
    assert not torch.allclose(a.embeddings.norm(dim=1), torch.ones(3))


def test_missing_weights_fail_fast_with_instructions() -> None:
    start = time.monotonic()
    with pytest.raises(MedSegZooError) as info:
        compute_text_embeddings(CLASSES, "open_clip", model_name="ViT-B-32", pretrained="openai")
    assert time.monotonic() - start < 30  # no 46 s of hub retries
    message = str(info.value)
    for hint in ("pretrained='/path/to/", "encoder='minilm'", "encoder='onehot'", "pretrained='none'"):
        assert hint in message


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(UnknownNameError):
        compute_text_embeddings(["liver", "flux_capacitor"], "onehot")
    with pytest.raises(UnknownNameError, match="unknown text encoder"):
        build_text_encoder("word2vec")
    with pytest.raises(UnknownNameError, match="no model"):
        build_text_encoder("open_clip", model_name="ViT-Nope")
    with pytest.raises(UnknownNameError, match="neither a file nor a pretrained tag"):
        build_text_encoder("open_clip", pretrained="not_a_tag")


def test_local_checkpoint_file_is_used(tmp_path) -> None:
    import open_clip

    torch.manual_seed(3)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    ckpt = tmp_path / "my_clip.pt"
    torch.save(model.state_dict(), ckpt)
    emb = compute_text_embeddings(["liver"], "open_clip", pretrained=str(ckpt))
    assert emb.prompts == ("A computerized tomography of a Liver",)
    tok = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        expected = model.eval().encode_text(tok([OFFICIAL_PROMPT.format("Liver")]))
    assert emb.encoder == "open_clip:ViT-B-32:my_clip.pt"
    assert torch.allclose(emb.embeddings, expected, atol=1e-5)


def test_cache_round_trip_and_mismatches(tmp_path) -> None:
    path = tmp_path / "emb.pt"
    emb = compute_text_embeddings(["spleen", "postcava"], "onehot", width=4)
    save_text_embeddings(emb, path)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temp file
    back = load_text_embeddings(path, classes=["Spleen", "IVC"], width=4)
    assert back.classes == ("spleen", "postcava")
    assert torch.equal(back.embeddings, emb.embeddings) and back.encoder == "onehot"
    with pytest.raises(DataValidationError, match="class list does not match") as info:
        load_text_embeddings(path, classes=["spleen", "liver"])
    assert str(path) in str(info.value) and "liver" in str(info.value)
    with pytest.raises(DataValidationError, match="different order"):
        load_text_embeddings(path, classes=["postcava", "spleen"])
    with pytest.raises(DataValidationError, match="width 4 .* text_embedding_width 512"):
        load_text_embeddings(path, classes=["spleen", "postcava"], width=512)
    with pytest.raises(DataValidationError, match="not found"):
        load_text_embeddings(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(DataValidationError, match="not a readable"):
        load_text_embeddings(tmp_path / "junk.pt")


def test_write_keeps_matching_cache(tmp_path) -> None:
    path = tmp_path / "emb.pt"
    write_text_embeddings(path, ["liver"], "onehot")
    first = os.stat(path).st_mtime_ns
    write_text_embeddings(path, ["liver"], "one_hot", overwrite=False)
    assert os.stat(path).st_mtime_ns == first
    write_text_embeddings(path, ["liver", "spleen"], "onehot", overwrite=True)
    assert load_text_embeddings(path).classes == ("liver", "spleen")


def test_cache_keeps_the_prompts_and_is_redone_when_they_change(tmp_path) -> None:
    path = tmp_path / "emb.pt"
    write_text_embeddings(path, ["postcava", "liver"], "minilm")
    official = load_text_embeddings(path)
    assert official.prompts == ("A computerized tomography of a Postcava", "A computerized tomography of a Liver")
    first = os.stat(path).st_mtime_ns
    write_text_embeddings(path, ["postcava", "liver"], "minilm", overwrite=False)  # same prompts: kept
    assert os.stat(path).st_mtime_ns == first
    write_text_embeddings(path, ["postcava", "liver"], "minilm", overwrite=False, prompt_names="taxonomy")
    renamed = load_text_embeddings(path)
    assert renamed.prompts[0] == "A computerized tomography of a inferior vena cava"
    assert not torch.allclose(renamed.embeddings[0], official.embeddings[0])  # other text, other vector
    # "Liver" / "liver": MiniLM's tokenizer is uncased, so the same text and the same vector
    torch.testing.assert_close(renamed.embeddings[1], official.embeddings[1])
