"""Text embeddings of the Universal Model: encoders, prompt, cache round trip and checks."""

from __future__ import annotations

import os
import time

import pytest
import torch

from medsegzoo.errors import DataValidationError, MedSegZooError, UnknownNameError
from medsegzoo.networks.text_encoders import (
    PAPER_PROMPT,
    build_text_encoder,
    class_prompts,
    compute_text_embeddings,
    load_text_embeddings,
    save_text_embeddings,
    write_text_embeddings,
)

CLASSES = ["liver", "kidney_right", "liver_tumor"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_paper_prompt_uses_display_names() -> None:
    assert class_prompts(["kidney_right", "ivc"]) == [
        "A computerized tomography of a right kidney.",
        "A computerized tomography of a inferior vena cava.",
    ]
    assert class_prompts(["liver"], "There is [CLS] in this computerized tomography.") == [
        "There is liver in this computerized tomography."
    ]
    with pytest.raises(DataValidationError, match="exactly one"):
        class_prompts(["liver"], "no placeholder")


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
    tok = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        expected = model.eval().encode_text(tok([PAPER_PROMPT.format("liver")]))
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
