"""Training glue of the CLIP-Driven Universal Model bundle (partial labels, balance, extension).

* :func:`load_cases` / :func:`load_partial_split`: one split of one datalist or of several
  (one per data set), every case checked to label at least one class of the model (a data
  set that labels none of them would only add zero-loss samples: an error naming it);
* :func:`dataset_balanced_weights`: per-case sampling weights so every data set is drawn
  equally often (the paper assembles 14 data sets of very different sizes);
* :class:`MaskUnlabeledChannelsd`: writes the per-sample labeled-class mask into the label
  (unlabeled channels := -1, the encoding :class:`~medsegzoo.losses.universal.UniversalLoss`
  reads; 0 for validation Dice with ``ignore_empty``), so MONAI's ``SupervisedTrainer`` can
  call ``loss(pred, label)`` with two arguments;
* :class:`SelectChannelsd`: keeps the model's classes of a multi-hot label;
* :class:`CaseFilenamed`: names written predictions after the case id;
* :func:`extend_model`: the paper's extension to new classes (section 5.4): load the trained
  model, append the new classes' embeddings with a new text projection and controller, and
  freeze everything else;
* :func:`evaluate_predictions`: the bundle's evaluation through the case engine, with
  patient-level tumor detection.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from medsegzoo.errors import DataValidationError
from medsegzoo.networks.text_encoders import load_text_embeddings
from medsegzoo.networks.universal import UniversalModel
from medsegzoo.taxonomy import canonical_name, get_label_system, labeled_classes
from medsegzoo.transforms import LabeledClassesMask

__all__ = [
    "MaskUnlabeledChannelsd",
    "SelectChannelsd",
    "dataset_balanced_weights",
    "extend_model",
    "load_cases",
    "load_network_weights",
    "load_partial_split",
    "require_file",
]


def load_cases(
    datalist: str | os.PathLike | Sequence[str | os.PathLike],
    key: str = "test",
    dataset_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Entries of one split of one datalist, or of several concatenated (one per data set).

    Args:
        datalist: datalist JSON file, or a list of them (a partially labeled assembly is
            naturally one datalist per data set, as ``medsegzoo datalist`` writes them).
        key: split.
        dataset_dir: base folder of the relative paths (None: each datalist's own rule,
            :func:`medsegzoo.data.datalist.resolve_base_dir`).

    Returns:
        Entries with absolute paths and a ``case_id`` (the image's name when absent).

    Raises:
        DataValidationError: no datalist, or a case id that appears twice.
    """
    from medsegzoo.data import load_split

    files = [datalist] if isinstance(datalist, (str, os.PathLike)) else list(datalist)
    if not files:
        raise DataValidationError("no datalist given (set 'datalist' to a file or a list of files)")
    cases = []
    for f in files:
        for case in load_split(f, key, dataset_dir):
            case.setdefault("case_id", Path(case["image"]).name.split(".")[0])
            cases.append(case)
    repeated = sorted(k for k, n in Counter(c["case_id"] for c in cases).items() if n > 1)
    if repeated:
        raise DataValidationError(
            f"case ids {repeated[:5]} appear more than once in split {key!r} of {[str(f) for f in files]}; "
            "outputs are named after the case id, so ids must be unique"
        )
    return cases


def load_partial_split(
    datalist: str | os.PathLike | Sequence[str | os.PathLike],
    key: str = "training",
    dataset_dir: str | os.PathLike | None = None,
    system: str = "universal32",
    classes: Sequence[str] | None = None,
    require_labels: bool = True,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """Entries of one split, each checked to label at least one class of the model.

    Args:
        datalist: medsegzoo datalist JSON, or a list of them (see :func:`load_cases`).
        key: split ("training", "validation", "test").
        dataset_dir: folder the relative paths start from (None: the datalist's rule).
        system: label system of the label maps after conversion.
        classes: the model's output classes (a subset of ``system``; None: all of them).
        require_labels: every entry must have a ``label`` map or per-class ``masks``.
        allow_empty: an empty or missing split gives ``[]`` (an optional validation split).

    Returns:
        Entries with absolute paths; ``labeled_classes`` filled from the data set when absent.

    Raises:
        DataValidationError: an empty split, a case without label, a case/data set that labels
            none of the system's classes (naming it and what it labels).
        UnknownNameError: a class or data set name unknown to the taxonomy.
    """
    cases = load_cases(datalist, key, dataset_dir)
    if not cases:
        if allow_empty:
            return []
        raise DataValidationError(f"{datalist}: split {key!r} has no cases")
    mask = LabeledClassesMask(system)
    names = get_label_system(system).classes
    wanted = torch.tensor([n in {canonical_name(c) for c in classes} for n in names]) if classes is not None else None
    target = "model's classes" if classes is not None else f"{system} classes"
    for case in cases:
        where = f"{datalist}: case {case.get('case_id', '?')!r} (data set {case.get('dataset', '?')!r})"
        if require_labels and "label" not in case and "masks" not in case:
            raise DataValidationError(f"{where} has neither a 'label' label map nor per-class 'masks'")
        if "labeled_classes" not in case:
            if "dataset" not in case:
                raise DataValidationError(f"{where} has neither 'labeled_classes' nor 'dataset'")
            case["labeled_classes"] = labeled_classes(str(case["dataset"]), system)
        hits = mask(case["labeled_classes"]).bool()
        if not bool((hits & wanted).any() if wanted is not None else hits.any()):
            raise DataValidationError(
                f"{where} labels none of the {target} (its labeled_classes: "
                f"{list(case['labeled_classes'])}); remove the data set from the training "
                "datalist or add its classes to the model"
            )
    return cases


def dataset_balanced_weights(cases: Sequence[Mapping[str, Any]], key: str = "dataset") -> list[float]:
    """Sampling weight per case: ``1 / (number of cases of its data set)``.

    With ``torch.utils.data.WeightedRandomSampler(weights, num_samples, replacement=True)``
    each data set is drawn with the same probability regardless of its size.

    Args:
        cases: datalist entries.
        key: entry field naming the data set (cases without it form one group).

    Returns:
        One weight per case (they sum to the number of data sets).
    """
    groups = [str(c.get(key, "")) for c in cases]
    counts = Counter(groups)
    return [1.0 / counts[g] for g in groups]


class MaskUnlabeledChannelsd(MapTransform):
    """Fill the label channels of classes the case does not label with ``ignore_value``.

    Args:
        keys: multi-hot label key(s) ``(K, *spatial)``.
        mask_key: key of the ``(K,)`` multi-hot labeled-class tensor
            (:class:`~medsegzoo.transforms.LabeledClassesMaskd` output).
        ignore_value: -1 for the training loss; 0 for validation Dice with ``ignore_empty``.
    """

    def __init__(
        self, keys: KeysCollection, mask_key: str = "labeled_classes", ignore_value: float = -1.0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.ignore_value = ignore_value

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        labeled = torch.as_tensor(d[self.mask_key]).bool()
        for key in self.key_iterator(d):
            label = d[key]
            if labeled.shape[0] != label.shape[0]:
                raise DataValidationError(
                    f"case {d.get('case_id', '?')!r}: {labeled.shape[0]} labeled-class flags for a "
                    f"{label.shape[0]}-channel label"
                )
            out = torch.as_tensor(label).float().clone()  # a MetaTensor keeps its meta data
            out[~labeled] = self.ignore_value
            d[key] = out
        return d


class SelectChannelsd(MapTransform):
    """Keep the channels of named classes from a multi-hot label or labeled-class vector.

    Args:
        keys: keys of ``(C, ...)`` tensors whose channels follow ``system``'s classes.
        system: label system of the channels.
        classes: class names to keep, in output order.
    """

    def __init__(self, keys: KeysCollection, system: str, classes: Sequence[str], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        names = get_label_system(system).classes
        wanted = [canonical_name(c) for c in classes]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise DataValidationError(f"classes {missing} are not in label system {system!r}")
        self.index = [names.index(c) for c in wanted]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = d[key][self.index]
        return d


def load_network_weights(network: torch.nn.Module, checkpoint: str | os.PathLike, key: str = "network") -> torch.nn.Module:
    """Load weights saved by the bundle's CheckpointSaver (``{"network": state_dict, ...}``).

    Raises:
        DataValidationError: missing file, or weights that do not fit the network.
    """
    if not os.path.isfile(checkpoint):
        raise DataValidationError(f"{checkpoint}: checkpoint not found (train the base model first)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = state.get(key, state) if isinstance(state, Mapping) else state
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        raise DataValidationError(f"{checkpoint}: weights do not fit the network ({str(err)[:300]})") from err
    return network


def extend_model(
    network: UniversalModel,
    new_classes: Sequence[str],
    embedding_file: str | os.PathLike,
    base_checkpoint: str | os.PathLike | None = None,
    width: int | None = None,
) -> UniversalModel:
    """Load a trained Universal Model and extend it to new classes, freezing the rest.

    Args:
        network: the base model (same config as it was trained with).
        new_classes: the classes to add (canonical or synonym names).
        embedding_file: text embedding cache of exactly the new classes.
        base_checkpoint: weights of the base model (None: keep ``network`` as it is).
        width: expected embedding width (None: any).

    Returns:
        The same object, with one more class group whose parameters alone require grad.

    Raises:
        DataValidationError: the embedding file's classes/width differ from ``new_classes``.
        MedSegZooError: a new class the model already predicts.
    """
    if base_checkpoint is not None:
        load_network_weights(network, base_checkpoint)
    names = [canonical_name(c) for c in new_classes]
    emb = load_text_embeddings(embedding_file, classes=names, width=width)
    network.add_classes(emb.embeddings, names, freeze=True)
    return network


def require_file(path: str | os.PathLike, what: str) -> str:
    """Fail early, naming the file, when an input a run needs is missing.

    Args:
        path: the file.
        what: what it is and how to get it (for the message).

    Returns:
        The path as a string.

    Raises:
        DataValidationError: the file does not exist.
    """
    if not os.path.isfile(path):
        raise DataValidationError(f"{path}: not found; it should hold the {what}")
    return str(path)
