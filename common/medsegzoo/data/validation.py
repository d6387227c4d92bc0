"""Check a datalist before any work starts: files, geometry, voxels, label values.

Every problem is reported with the FILE and the PROBLEM. :func:`validate_datalist` checks
all cases and raises once with every problem found, so a user fixes a download in one pass
instead of one crash per training run.

Checks per case:

* structure of the entry (``case_id``, ``image``, ``label``/``masks``, ``dataset``,
  ``labeled_classes`` known to the data set);
* every named file exists;
* headers read: not truncated (a NIfTI holds the bytes its header describes; for ``.nii.gz``
  the gzip trailer's size is compared, and only a mismatch is decompressed to confirm);
* images are 3D volumes. A trailing singleton dimension (``x, y, z, 1``, as some writers
  store a scalar volume) is accepted as 3D; a 4th dimension with more than one channel is an
  error unless the data set is distributed multi-channel (MSD BrainTumour 4, Prostate 2). 2D
  images are an error;
* label map / masks have the image's spatial shape and affine (within ``affine_tol``);
* with ``check_voxels``: no NaN/inf voxels; label values within the data set's label map
  (:func:`medsegzoo.taxonomy.validate_label_values`); masks binary ({0, 1}, or {0, 255}).

Across cases: duplicate case ids, and one image used by two splits (train/test leakage).

:func:`check_training_datalist` is the check every bundle runs before training (its
``initialize`` list): the header checks above (voxels on request) plus what training needs
(the training split holds cases, labeled cases have labels that cover the trained label
system), all problems in one message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsegzoo.data.datalist import (
    LABELED_SPLITS,
    SPLIT_KEYS,
    format_problems,
    load_datalist,
    resolve_base_dir,
    schema_problems,
)
from medsegzoo.data.formats import Volume, is_nifti, read_volume
from medsegzoo.errors import DataValidationError, MedSegZooError
from medsegzoo.taxonomy import (
    canonical_name,
    get_dataset,
    get_label_system,
    labeled_classes,
    resolve_class,
    side_parts,
    validate_label_values,
)

__all__ = [
    "MULTI_CHANNEL_DATASETS",
    "Problem",
    "ValidationSummary",
    "case_problems",
    "check_training_datalist",
    "check_training_datalists",
    "covered_classes",
    "validate_case",
    "validate_datalist",
]

# Data sets whose images are distributed as one 4D file with this many channels.
MULTI_CHANNEL_DATASETS: dict[str, int] = {"msd_brain_tumour": 4, "msd_prostate": 2}
# Absolute tolerance on affine entries (mm): headers written by different tools for the same
# grid differ by float rounding (about 1e-5 mm); real misalignment is far larger.
DEFAULT_AFFINE_TOL = 1e-3


@dataclass(frozen=True)
class Problem:
    """One problem with one file.

    Attributes:
        file: the file (or datalist location) concerned.
        problem: what is wrong.
        case_id: the case, when known.
    """

    file: str
    problem: str
    case_id: str | None = None

    def __str__(self) -> str:
        case = f" [case {self.case_id}]" if self.case_id else ""
        return f"{self.file}: {self.problem}{case}"


@dataclass(frozen=True)
class ValidationSummary:
    """What :func:`validate_datalist` checked (returned when everything passed).

    Attributes:
        cases: number of entries checked.
        files: number of files checked.
        per_split: entries per split key.
    """

    cases: int
    files: int
    per_split: dict[str, int]


def _spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape with trailing singleton dimensions beyond the third removed."""
    shape = tuple(shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _dims_problem(volume: Volume, role: str, dataset: str | None) -> str | None:
    """Why a volume is not a usable 3D (or expected multi-channel) volume, or None."""
    shape = _spatial(volume.shape)
    if len(shape) == 3:
        return None
    channels = MULTI_CHANNEL_DATASETS.get(dataset or "")
    if role == "image" and len(shape) == 4 and channels is not None:
        if shape[3] == channels:
            return None
        return f"image has {shape[3]} channels (shape {volume.shape}); data set {dataset!r} has {channels}"
    if len(shape) < 3:
        return f"{role} is {len(shape)}D (shape {volume.shape}); a 3D volume is required"
    return (
        f"{role} is {len(shape)}D (shape {volume.shape}); a 3D volume is required "
        "(a trailing dimension of size 1 is accepted)"
    )


def _finite_problem(array: np.ndarray, role: str) -> str | None:
    if not np.issubdtype(array.dtype, np.floating):
        return None
    nan = int(np.isnan(array).sum())
    inf = int(np.isinf(array).sum())
    if nan or inf:
        return f"{role} has {nan} NaN and {inf} infinite voxels"
    return None


def _mask_values_problem(array: np.ndarray) -> str | None:
    values = np.unique(array)
    if values.size > 16:
        return f"mask has {values.size} distinct values; a binary mask holds 0 and 1"
    close = [v for v in values.tolist() if not (abs(v) < 1e-3 or abs(v - 1) < 1e-3 or v == 255)]
    if close:
        return f"mask values {close[:10]} are not binary (expected 0 and 1)"
    return None


def case_problems(
    entry: Mapping[str, Any],
    base_dir: str | os.PathLike,
    *,
    check_voxels: bool = True,
    affine_tol: float = DEFAULT_AFFINE_TOL,
    where: str = "datalist entry",
    read_headers: bool = True,
) -> list[Problem]:
    """Every problem of one datalist entry (nothing raised for data problems).

    Args:
        entry: datalist entry with paths relative to ``base_dir`` (or absolute).
        base_dir: data set folder.
        check_voxels: read the voxels (NaN/inf, label values); headers only otherwise.
        affine_tol: absolute tolerance on affine entries (mm).
        where: location of the entry, used when the entry itself is malformed.
        read_headers: read image headers at all; False checks structure and existence only.

    Returns:
        The problems found (empty if the case is usable).
    """
    structural = schema_problems(entry, where)
    if structural:
        return [Problem(where, p.split(": ", 1)[-1]) for p in structural]
    case_id = entry["case_id"]
    base = Path(base_dir)
    problems: list[Problem] = []

    def add(file: str | os.PathLike, problem: str) -> None:
        problems.append(Problem(str(file), problem, case_id))

    dataset = _dataset_problem(entry)
    if isinstance(dataset, str):
        add(where, dataset)
        dataset_name = None
    else:
        dataset_name = entry["dataset"]

    image_path = base / entry["image"]
    targets: list[tuple[str, Path]] = []
    if isinstance(entry.get("label"), str):
        targets.append(("label", base / entry["label"]))
    for name, rel in (entry.get("masks") or {}).items():
        targets.append((f"mask {name!r}", base / rel))
    missing = [(role, p) for role, p in [("image", image_path), *targets] if not p.exists()]
    for role, path in missing:
        add(path, f"{role} file does not exist")
    if any(role == "image" for role, _ in missing) or not (read_headers or check_voxels):
        return problems

    image = _read(image_path, "image", check_voxels, None, add)
    if image is None:
        return problems
    dims = _dims_problem(image, "image", dataset_name)
    if dims:
        add(image_path, dims)
        return problems
    if image.array is not None:
        finite = _finite_problem(image.array, "image")
        if finite:
            add(image_path, finite)
    for role, path in targets:
        if (role, path) in missing:
            continue
        field = "label" if role == "label" else "image"
        target = _read(path, field, check_voxels, image_path, add)
        if target is None:
            continue
        dims = _dims_problem(target, role, dataset_name)
        if dims:
            add(path, dims)
            continue
        grid_problem = _grid_problem(target, image, role, image_path, affine_tol)
        if grid_problem:
            add(path, grid_problem)  # the voxel checks below do not need the grids to agree
        if target.array is None:
            continue
        finite = _finite_problem(target.array, role)
        if finite:
            add(path, finite)
            continue
        if role == "label" and dataset_name is not None:
            value_problem = _label_values_problem(target.array, dataset_name, path)
            if value_problem:
                add(path, value_problem)
        elif role != "label":
            mask_problem = _mask_values_problem(target.array)
            if mask_problem:
                add(path, mask_problem)
    return problems


def _grid_problem(
    target: Volume, image: Volume, role: str, image_path: Path, tol: float
) -> str | None:
    """Why a label/mask is not on the image's voxel grid, or None.

    Files written by different tools sometimes store the same world grid with the axes in
    another order or direction (a label saved as (y, x, z), or flipped). That is reported
    too (voxel (i, j, k) of one is not voxel (i, j, k) of the other), with the hint that the
    two agree after reorientation.
    """
    shape, reference = _spatial(target.shape)[:3], _spatial(image.shape)[:3]
    deviation = (
        float(np.max(np.abs(target.affine - image.affine))) if shape == reference else np.inf
    )
    if deviation <= tol:
        return None
    if _same_world_grid(shape, target.affine, reference, image.affine, tol):
        return (
            f"{role} holds the image's world grid ({image_path}) with its axes in another order or "
            f"direction ({_axcodes(target.affine)} vs {_axcodes(image.affine)}); reorient one of them "
            "(e.g. MONAI Orientationd on both) so that voxels correspond"
        )
    if shape != reference:
        return f"{role} shape {shape} differs from image shape {reference} ({image_path})"
    return (
        f"{role} affine differs from the image's ({image_path}) by up to {deviation:.4g} mm "
        f"(tolerance {tol:g}); image and label are not on the same grid"
    )


def _axcodes(affine: np.ndarray) -> str:
    import nibabel as nib

    return "".join(nib.aff2axcodes(affine))


def _same_world_grid(
    shape: tuple[int, ...],
    affine: np.ndarray,
    reference_shape: tuple[int, ...],
    reference: np.ndarray,
    tol: float,
) -> bool:
    """Whether a grid equals the reference grid after permuting/flipping its axes."""
    from nibabel.orientations import inv_ornt_aff, io_orientation, ornt_transform

    ornt = ornt_transform(io_orientation(affine), io_orientation(reference))
    new_shape = [0, 0, 0]
    for axis, (target_axis, _) in enumerate(ornt):
        new_shape[int(target_axis)] = shape[axis]
    if tuple(new_shape) != tuple(reference_shape):
        return False
    reoriented = affine @ inv_ornt_aff(ornt, shape)
    return bool(np.max(np.abs(reoriented - reference)) <= tol)


def _read(path: Path, field: str, voxels: bool, image_path: Path | None, add: Any) -> Volume | None:
    try:
        volume = read_volume(path, field=field, voxels=voxels, reference=image_path)
    except DataValidationError as err:
        message = str(err)
        add(path, message.split(": ", 1)[1] if message.startswith(str(path)) else message)
        return None
    if not voxels and path.is_file() and is_nifti(path):
        # a header read does not reach the end of the file: check the size it implies
        truncated = _nifti_truncation_problem(path)
        if truncated:
            add(path, truncated)
            return None
    return volume


def _nifti_truncation_problem(path: Path) -> str | None:
    """Why a NIfTI file holds fewer bytes than its header describes, or None.

    ``.nii``: the file size. ``.nii.gz``: the gzip trailer records the uncompressed size
    (modulo 2**32); only when it disagrees is the file decompressed (streamed, nothing kept)
    to tell a truncated file from one written in several gzip members.
    """
    import gzip
    import zlib

    import nibabel as nib

    try:
        image = nib.load(str(path))
        # the array proxy knows where the voxels start (a header's vox_offset may read 0)
        offset = int(getattr(image.dataobj, "offset", image.header.get_data_offset()))
        expected = offset + int(np.prod(image.shape, dtype=np.int64)) * image.get_data_dtype().itemsize
        if not path.name.lower().endswith(".gz"):
            size = path.stat().st_size
            return None if size >= expected else f"file is truncated: {size} bytes, its header describes {expected}"
        with open(path, "rb") as handle:
            handle.seek(-4, os.SEEK_END)
            if int.from_bytes(handle.read(4), "little") == expected % 2**32:
                return None
        got = 0
        with gzip.open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                got += len(block)
    except (OSError, EOFError, zlib.error) as err:
        return f"file is truncated or corrupt ({type(err).__name__}: {err})"
    return None if got >= expected else f"file is truncated: {got} bytes after decompression, its header describes {expected}"


def _dataset_problem(entry: Mapping[str, Any]) -> str | None:
    """Unknown data set or labeled classes the data set does not have."""

    try:
        spec = get_dataset(entry["dataset"])
    except MedSegZooError as err:
        # a derived label map written in a method's label system (pseudo-labels of the A-Eval
        # driver: dataset "aeval8") names that system instead of a data set
        try:
            system = get_label_system(entry["dataset"])
        except MedSegZooError:
            return str(err)
        unknown = [c for c in entry.get("labeled_classes", []) if c not in system.classes]
        return f"labeled_classes {unknown} are not classes of label system {system.name!r}" if unknown else None
    unknown = [c for c in entry.get("labeled_classes", []) if c not in spec.labels.values()]
    if unknown:
        return (
            f"labeled_classes {unknown} are not classes of data set {spec.name!r} "
            f"(its classes: {', '.join(spec.classes)})"
        )
    if entry.get("masks"):
        extra = sorted(set(entry["masks"]) - set(spec.labels.values()))
        if extra:
            return f"masks {extra} are not classes of data set {spec.name!r}"
    return None


def _label_values_problem(array: np.ndarray, dataset: str, path: Path) -> str | None:

    try:
        validate_label_values(array, dataset, context=str(path))
    except DataValidationError as err:
        message = str(err)
        prefix = f"{path} (data set {dataset!r}): "
        return message.removeprefix(prefix)
    return None


def validate_case(
    entry: Mapping[str, Any],
    base_dir: str | os.PathLike = ".",
    *,
    check_voxels: bool = True,
    affine_tol: float = DEFAULT_AFFINE_TOL,
) -> None:
    """Check one datalist entry; raise if it cannot be used.

    Args:
        entry: datalist entry (paths relative to ``base_dir`` or absolute).
        base_dir: data set folder.
        check_voxels: read voxels too (NaN/inf, label values).
        affine_tol: absolute tolerance on affine entries (mm).

    Raises:
        DataValidationError: one message naming each bad file and its problem.
    """
    problems = case_problems(entry, base_dir, check_voxels=check_voxels, affine_tol=affine_tol)
    if len(problems) == 1:
        raise DataValidationError(str(problems[0]))
    if problems:
        raise DataValidationError(
            format_problems(
                f"case {entry.get('case_id')!r} cannot be used", [str(p) for p in problems]
            )
        )


def _cross_case_problems(datalist: Mapping[str, Any], source: str) -> list[Problem]:
    problems: list[Problem] = []
    seen_ids: dict[str, str] = {}
    seen_images: dict[str, str] = {}
    for key in SPLIT_KEYS:
        for i, entry in enumerate(datalist.get(key, [])):
            if not isinstance(entry, Mapping):
                continue
            where = f"{key}[{i}]"
            case_id = entry.get("case_id")
            if isinstance(case_id, str):
                if case_id in seen_ids:
                    problems.append(
                        Problem(
                            source,
                            f"case id {case_id!r} appears in {seen_ids[case_id]} and {where}",
                        )
                    )
                else:
                    seen_ids[case_id] = where
            image = entry.get("image")
            if isinstance(image, str):
                first = seen_images.get(image)
                if first is not None and first.split("[")[0] != key:
                    problems.append(
                        Problem(image, f"image is used by {first} and {where} (the splits overlap)")
                    )
                seen_images.setdefault(image, where)
    return problems


@dataclass
class _Checked:
    """What :func:`_check_cases` found: the loaded datalist, where it came from, the folder its
    paths start from, the entries checked and every problem."""

    datalist: Mapping[str, Any]
    source: str
    base: Path
    jobs: list[tuple[Any, str]]
    problems: list[Problem]


def _check_cases(
    datalist: str | os.PathLike | Mapping[str, Any],
    base_dir: str | os.PathLike | None,
    keys: Iterable[str] | None,
    *,
    check_voxels: bool,
    affine_tol: float,
    workers: int,
    read_headers: bool,
) -> _Checked:
    """Load a datalist and collect the problems of every case of ``keys`` (nothing raised for
    data problems; an unreadable datalist or an unknown split key raises)."""
    path = None
    if not isinstance(datalist, Mapping):
        path = datalist
        datalist = load_datalist(datalist)
    source = str(path) if path is not None else f"datalist {datalist.get('name')!r}"
    base = resolve_base_dir(datalist, path, base_dir)
    selected = list(keys) if keys is not None else list(SPLIT_KEYS)
    unknown = [k for k in selected if k not in SPLIT_KEYS]
    if unknown:
        raise DataValidationError(
            f"{source}: unknown split keys {unknown}; known: {', '.join(SPLIT_KEYS)}"
        )
    jobs = [
        (entry, f"{source}: {key}[{i}]")
        for key in selected
        for i, entry in enumerate(datalist.get(key, []))
    ]

    def check(job: tuple[Any, str]) -> list[Problem]:
        return case_problems(
            job[0],
            base,
            check_voxels=check_voxels,
            affine_tol=affine_tol,
            where=job[1],
            read_headers=read_headers,
        )

    if workers > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            per_case = list(pool.map(check, jobs))
    else:
        per_case = [check(job) for job in jobs]
    problems = [p for found in per_case for p in found] + _cross_case_problems(datalist, source)
    return _Checked(datalist, source, base, jobs, problems)


def _raise_problems(title: str, problems: list[Problem]) -> None:
    """Raise one :class:`DataValidationError` listing every problem (``problems`` attribute kept)."""
    err = DataValidationError(format_problems(title, [str(p) for p in problems]))
    err.problems = problems  # type: ignore[attr-defined]
    raise err


def _summary(checked: _Checked, keys: Iterable[str] | None) -> ValidationSummary:
    selected = list(keys) if keys is not None else list(SPLIT_KEYS)
    files = sum(1 + ("label" in e) + len(e.get("masks") or {}) for e, _ in checked.jobs)
    return ValidationSummary(
        cases=len(checked.jobs),
        files=files,
        per_split={k: len(checked.datalist.get(k, [])) for k in selected},
    )


def validate_datalist(
    datalist: str | os.PathLike | Mapping[str, Any],
    base_dir: str | os.PathLike | None = None,
    *,
    check_voxels: bool = True,
    keys: Iterable[str] | None = None,
    affine_tol: float = DEFAULT_AFFINE_TOL,
    workers: int = 1,
    read_headers: bool = True,
) -> ValidationSummary:
    """Check every case of a datalist and report all problems at once.

    Args:
        datalist: datalist file or dict.
        base_dir: data set folder (default: see :func:`medsegzoo.data.datalist.resolve_base_dir`).
        check_voxels: read voxels too (NaN/inf, label values); headers only otherwise.
        keys: split keys to check (default: all).
        affine_tol: absolute tolerance on affine entries (mm).
        workers: threads reading files in parallel (decompression releases the GIL).
        read_headers: with ``check_voxels=False``, whether to read headers (shapes, affines,
            dimensions, truncation) or only check that the files exist.

    Returns:
        A :class:`ValidationSummary` when every case passed.

    Raises:
        DataValidationError: every problem found, one line each (file: problem [case]); the
            exception's ``problems`` attribute holds them as :class:`Problem` objects.
    """
    checked = _check_cases(
        datalist, base_dir, keys, check_voxels=check_voxels, affine_tol=affine_tol, workers=workers,
        read_headers=read_headers,
    )
    if checked.problems:
        _raise_problems(f"{checked.source} (files under {checked.base})", checked.problems)
    return _summary(checked, keys)


def covered_classes(names: Iterable[str], system: str) -> list[str]:
    """The classes of a label system that a case labeling ``names`` labels.

    Names are resolved through the taxonomy as the label conversion does: a merged ``kidney``
    covers both kidneys of a system that splits them, a tumor covers its organ when the organ
    is listed too.

    Args:
        names: labeled class names (any spelling the taxonomy knows).
        system: label system name.

    Returns:
        The covered classes, in the system's order.

    Raises:
        UnknownNameError: an unknown class or label system name.
    """

    classes = get_label_system(system).classes
    targets = frozenset(classes)
    canonical = {canonical_name(n) for n in ([names] if isinstance(names, str) else names)}
    hit: set[str] = set()
    for name in canonical:
        resolution = resolve_class(name, targets, canonical)
        if resolution is not None:
            kind, cls = resolution
            hit.update([cls] if kind == "direct" else [p for p in side_parts(cls) or () if p in targets])
    return [c for c in classes if c in hit]


def _training_problems(
    checked: _Checked, keys: Sequence[str], label_system: str | None, require_labels: bool
) -> list[Problem]:
    """What makes a checked datalist unusable for training beyond its files: an empty first
    split, labeled-split cases without a label, cases that label none of the system's classes."""

    problems: list[Problem] = []
    if not checked.datalist.get(keys[0]):
        problems.append(Problem(checked.source, f"the split {keys[0]!r} is empty or missing; training needs its cases"))
    for key in keys:
        if key not in LABELED_SPLITS:
            continue  # unlabeled images need no label
        for i, entry in enumerate(checked.datalist.get(key, [])):
            if not isinstance(entry, Mapping) or schema_problems(entry, ""):
                continue  # a malformed entry is already reported
            where, case_id = f"{checked.source}: {key}[{i}]", entry["case_id"]
            has_label = isinstance(entry.get("label"), str) or bool(entry.get("masks"))
            if require_labels and not has_label:
                problems.append(Problem(where, "has no 'label' or 'masks'; a training case needs its label", case_id))
                continue
            if label_system is None or not has_label:
                continue
            try:
                names = entry.get("labeled_classes") or labeled_classes(entry["dataset"], label_system)
                covered = covered_classes(names, label_system)
            except MedSegZooError as err:
                problems.append(Problem(where, str(err), case_id))
                continue
            if not covered:
                problems.append(
                    Problem(where, f"labeled classes {list(names)} cover none of the {label_system!r} classes", case_id)
                )
    return problems


def check_training_datalist(
    datalist: str | os.PathLike | Mapping[str, Any],
    dataset_dir: str | os.PathLike | None = None,
    label_system: str | None = None,
    keys: Sequence[str] = ("training", "validation"),
    require_labels: bool = True,
    check_voxels: bool = False,
    workers: int = 4,
    affine_tol: float = DEFAULT_AFFINE_TOL,
) -> ValidationSummary:
    """Check a datalist before training; raise once with every problem (for a bundle's ``initialize``).

    Runs before any data loader, worker or process is started, so a wrong ``dataset_dir`` or a
    damaged file gives one message naming every bad file instead of a traceback from inside a
    cached data set. Checks, for the cases of ``keys``:

    * the datalist reads and is well formed; ``dataset_dir`` exists; ``keys[0]`` holds cases;
    * every file exists and its header reads: not truncated, 3D, label/masks on the image's
      grid (the header checks of :func:`validate_datalist`);
    * each case's data set is known and its ``labeled_classes`` are classes of that data set;
      with ``require_labels``, every case of a labeled split has a ``label`` or ``masks``;
    * with ``label_system``, every labeled case covers at least one class of the system;
    * with ``check_voxels``: no NaN/inf, label values within the case's data-set map, binary masks;
    * across cases: no case id twice, no image in two splits.

    Args:
        datalist: datalist file or dict.
        dataset_dir: folder the datalist's paths start from (None: the datalist's rule, see
            :func:`medsegzoo.data.datalist.resolve_base_dir`).
        label_system: label system trained (e.g. ``"aeval8"``); None skips the class check.
        keys: splits to check; the first must hold cases. Cases of ``unlabeled`` need no label.
        require_labels: cases of labeled splits (training/validation/test) need a label.
        check_voxels: read the voxels too (slower; headers only otherwise).
        workers: threads reading headers.
        affine_tol: absolute tolerance on affine entries (mm).

    Returns:
        A :class:`ValidationSummary` of what was checked.

    Raises:
        DataValidationError: every problem at once, one line each naming the file or entry;
            the ``problems`` attribute holds them as :class:`Problem` objects.
        UnknownNameError: an unknown label system (a config error).
    """
    if label_system is not None:

        get_label_system(label_system)
    keys = list(keys)
    if not keys:
        raise DataValidationError("check_training_datalist: keys is empty; name the training split first")
    if dataset_dir is not None and not Path(dataset_dir).is_dir():
        # every path would be reported missing: name the one cause instead
        raise DataValidationError(
            f"{dataset_dir}: dataset_dir does not exist{' (it is a file)' if Path(dataset_dir).exists() else ''}; "
            f"the paths of {datalist if not isinstance(datalist, Mapping) else 'the datalist'} start from it"
        )
    checked = _check_cases(
        datalist, dataset_dir, keys, check_voxels=check_voxels, affine_tol=affine_tol,
        workers=max(1, workers), read_headers=True,
    )
    problems = _training_problems(checked, keys, label_system, require_labels) + checked.problems
    if problems:
        _raise_problems(f"{checked.source} cannot be used for training (files under {checked.base})", problems)
    return _summary(checked, keys)


def check_training_datalists(
    datalists: str | os.PathLike | Mapping[str, Any] | Sequence[str | os.PathLike],
    dataset_dir: str | os.PathLike | None = None,
    label_system: str | None = None,
    keys: Sequence[str] = ("training", "validation"),
    min_training_cases: int = 1,
    **kwargs: Any,
) -> list[ValidationSummary]:
    """:func:`check_training_datalist` for one datalist or several (the universal model takes one
    per data set); every problem of every datalist is raised together.

    Args:
        datalists: a datalist (file or dict) or a list of datalist files.
        dataset_dir: folder the paths start from (None: each datalist's own rule).
        label_system: label system trained.
        keys: splits to check; a later datalist may lack ``keys[0]`` only if an earlier one has it.
        min_training_cases: cases ``keys[0]`` must hold over all datalists (a bundle passes its
            batch size: fewer cases than one batch would train on repeats of the same scans).
        **kwargs: more :func:`check_training_datalist` arguments.

    Returns:
        One summary per datalist.

    Raises:
        DataValidationError: the problems of all datalists in one message.
    """
    items = [datalists] if isinstance(datalists, (str, os.PathLike, Mapping)) else list(datalists)
    summaries, messages = [], []
    for item in items:
        try:
            summaries.append(check_training_datalist(item, dataset_dir, label_system, keys, **kwargs))
        except DataValidationError as err:
            messages.append(str(err))
    found = sum(summary.per_split.get(keys[0], 0) for summary in summaries)
    if not messages and found < min_training_cases:
        names = ", ".join(str(item) if not isinstance(item, Mapping) else "the datalist" for item in items)
        messages.append(f"{names}: split {keys[0]!r} holds {found} case(s), fewer than one batch of "
                        f"{min_training_cases} (batch_size); add cases or lower batch_size")
    if messages:
        raise DataValidationError("\n".join(messages))
    return summaries
