"""What every layout reader shares: the scanned-case record, the reader base class, and
helpers to list folders the way the public downloads are organised.

A reader knows one public layout as distributed: where its images and labels are, how a case
id is spelled, which files carry an official split or metadata. It returns
:class:`ScannedCase` records with absolute paths; :func:`medsegzoo.data.readers.build_datalist`
turns them into datalist entries (relative paths, splits, canonical classes).
"""

from __future__ import annotations

import csv
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from medsegzoo.errors import LayoutError
from medsegzoo.taxonomy import get_dataset

__all__ = [
    "NIFTI_RE",
    "LayoutReader",
    "ScannedCase",
    "apply_official_split",
    "choose_mask_dataset",
    "find_dirs",
    "find_files",
    "folder_listing",
    "mask_folder_case",
    "nifti_files",
    "normalise_sex",
    "numbered_pairs",
    "paired_folder_cases",
    "parse_age",
    "read_csv_rows",
    "strip_nifti",
]

NIFTI_RE = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)


@dataclass
class ScannedCase:
    """One case as found on disk.

    Attributes:
        case_id: unique id of the case within the data set.
        image: image file or DICOM series folder.
        dataset: native data set name (taxonomy key).
        label: label map (file, or PNG slice folder); None for unlabeled cases.
        masks: canonical class -> binary mask file (per-class-mask layouts).
        split: official split: "training", "validation", "test", "unlabeled" (unlabeled images
            meant for training) or "unlabeled_test" (test images whose labels are withheld);
            None when the layout has no official split for the case.
        labeled_classes: canonical classes the label covers; None = every class of the data set
            (label maps) or the mask names (per-class masks).
        metadata: optional entry fields (site, age, sex, manufacturer, ...).
        missing_label: where the layout keeps this case's label when the case has none although
            the layout labels every case of that part (an image in ``imagesTr/`` without its
            file in ``labelsTr/``): a deleted or misnamed label, not an unlabeled image.
            :func:`~medsegzoo.data.readers.build_datalist` reports it instead of treating the
            case as unlabeled.
    """

    case_id: str
    image: Path
    dataset: str
    label: Path | None = None
    masks: dict[str, Path] | None = None
    split: str | None = None
    labeled_classes: tuple[str, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    missing_label: Path | None = None

    @property
    def is_labeled(self) -> bool:
        """Whether the case has a label map or masks."""
        return self.label is not None or bool(self.masks)


class LayoutReader(ABC):
    """Reads one public data set layout.

    Class attributes document the layout; ``docs/data_preparation.md`` repeats them.

    Attributes:
        name: layout name used on the command line.
        title: the data set as users know it.
        datasets: native data set names its cases can have.
        expected: the folder tree it expects, in one line (used in error messages).
        official_split: how the official split is read, in one line.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    datasets: ClassVar[tuple[str, ...]]
    expected: ClassVar[str]
    official_split: ClassVar[str] = "none: every labeled case goes to training"

    def locate(self, root: Path) -> Path:
        """The folder the layout starts in: ``root`` itself or a known wrapper folder inside it.

        Args:
            root: folder the user pointed at.

        Returns:
            The layout's top folder.

        Raises:
            LayoutError: the layout is not found; names what was expected and what was seen.
        """
        for candidate in _candidates(root, depth=2):
            if self.looks_like(candidate):
                return candidate
        raise self.error(root)

    def looks_like(self, folder: Path) -> bool:
        """Whether ``folder`` is the top folder of this layout (used by :meth:`locate`)."""
        return False

    @abstractmethod
    def scan(self, root: Path) -> list[ScannedCase]:
        """Every case of the layout under its top folder ``root`` (from :meth:`locate`).

        Raises:
            LayoutError: files that contradict the layout (e.g. a label without its image).
        """

    def error(self, root: Path, problem: str | None = None) -> LayoutError:
        """A :class:`LayoutError` naming the folder, what was expected and what is there."""
        what = problem or f"does not look like a {self.title} download"
        return LayoutError(
            f"{root}: {what}; expected {self.expected}; found: {folder_listing(root)}"
        )


def apply_official_split(cases: list[ScannedCase], official: dict[str, str]) -> list[ScannedCase]:
    """Set the split of labeled cases named in ``official`` (case id -> split); returns ``cases``."""
    for case in cases:
        if case.is_labeled and case.case_id in official:
            case.split = official[case.case_id]
    return cases


def _candidates(root: Path, depth: int) -> Iterator[Path]:
    """``root``, then its sub-folders breadth first down to ``depth`` levels."""
    level = [root]
    for _ in range(depth + 1):
        nxt: list[Path] = []
        for folder in level:
            yield folder
            nxt.extend(
                sorted(
                    p for p in _safe_iterdir(folder) if p.is_dir() and not p.name.startswith(".")
                )
            )
        level = nxt


def _safe_iterdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def folder_listing(folder: Path, limit: int = 12) -> str:
    """A short listing of a folder for error messages ("a.nii.gz, imagesTr/, ... (40 more)")."""
    if not folder.exists():
        return "nothing (the folder does not exist)"
    if not folder.is_dir():
        return "a file, not a folder"
    items = sorted(_safe_iterdir(folder), key=lambda p: (not p.is_dir(), p.name))
    items = [p for p in items if not p.name.startswith("._")]
    if not items:
        return "nothing (the folder is empty)"
    names = [p.name + ("/" if p.is_dir() else "") for p in items[:limit]]
    more = f" ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(names) + more


def strip_nifti(name: str) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    return NIFTI_RE.sub("", name)


def nifti_files(folder: Path, pattern: str | re.Pattern[str] | None = None) -> list[Path]:
    """NIfTI files of a folder, sorted, without hidden files.

    macOS AppleDouble files (``._liver_14.nii.gz``, a few hundred bytes) ship inside the MSD
    tar files and match any ``*.nii.gz`` glob; names starting with a dot are skipped.

    Args:
        folder: folder to list (missing folder: empty list).
        pattern: optional regular expression the name without suffix must match fully.

    Returns:
        Sorted paths.
    """
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    out = []
    for path in _safe_iterdir(folder):
        if path.name.startswith(".") or not NIFTI_RE.search(path.name) or not path.is_file():
            continue
        if regex is not None and not regex.fullmatch(strip_nifti(path.name)):
            continue
        out.append(path)
    return sorted(out)


def _with_nifti_suffix(folder: Path, stem: str) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        if (folder / (stem + suffix)).is_file():
            return folder / (stem + suffix)
    return None


def paired_folder_cases(
    images_dir: Path,
    labels_dir: Path | None,
    *,
    dataset: str | Callable[[str], str],
    split: str | None,
    unlabeled_split: str = "unlabeled_test",
    case_id: Callable[[str], str] = lambda stem: stem,
    label_stem: Callable[[str], str] = lambda stem: stem,
    image_pattern: str | None = None,
    labels_required: bool = False,
) -> list[ScannedCase]:
    """Cases of an ``images<X>/`` + ``labels<X>/`` folder pair (MSD, AMOS, WORD, BTCV style).

    Args:
        images_dir: folder of images.
        labels_dir: folder of labels (None or missing: every image is unlabeled).
        dataset: data set name, or a function of the image stem returning it.
        split: official split of the labeled cases.
        unlabeled_split: split of images without a label.
        case_id: image stem -> case id.
        label_stem: image stem -> label file stem.
        image_pattern: regular expression an image stem must match (others are ignored).
        labels_required: the layout labels every image of this pair (``imagesTr/``): when
            ``labels_dir`` exists, an image without its label gets ``missing_label`` set.

    Returns:
        One case per image.

    Raises:
        LayoutError: a label file has no image (a misnamed or misplaced file).
    """
    cases = []
    used: set[Path] = set()
    # a missing labels folder is a release without labels (AMOS' first imagesVa), not a deletion
    require = labels_required and labels_dir is not None and labels_dir.is_dir()
    for image in nifti_files(images_dir, image_pattern):
        stem = strip_nifti(image.name)
        label = _with_nifti_suffix(labels_dir, label_stem(stem)) if labels_dir is not None else None
        if label is not None:
            used.add(label)
        name = dataset(stem) if callable(dataset) else dataset
        expected = labels_dir / f"{label_stem(stem)}.nii.gz" if require and label is None else None
        cases.append(
            ScannedCase(
                case_id=case_id(stem),
                image=image,
                dataset=name,
                label=label,
                split=split if label is not None else unlabeled_split,
                missing_label=expected,
            )
        )
    if labels_dir is not None:
        orphans = [p.name for p in nifti_files(labels_dir) if p not in used]
        if orphans:
            more = f" ... ({len(orphans) - 5} more)" if len(orphans) > 5 else ""
            raise LayoutError(
                f"{labels_dir}: label files without a matching image in {images_dir}: "
                f"{', '.join(orphans[:5])}{more}"
            )
    return cases


def choose_mask_dataset(stems: set[str], candidates: tuple[str, ...], where: Path) -> str:
    """The first data set of ``candidates`` whose mask file stems include all of ``stems``.

    Per-class-mask layouts differ in their file names between releases (TotalSegmentator v2
    and v1, AbdomenAtlas 1.0 and 1.1). Candidates are tried in order, so a download whose
    names fit several releases is read as the first one (TotalSegmentator v2; AbdomenAtlas
    1.0 when only its 9 classes are present).

    Raises:
        LayoutError: no candidate names every stem; the message lists the unknown ones.
    """

    unknown_per: dict[str, set[str]] = {}
    for name in candidates:
        unknown_per[name] = stems - set(get_dataset(name).mask_files.values())
        if not unknown_per[name]:
            return name
    fewest = min(candidates, key=lambda n: len(unknown_per[n]))
    unknown = sorted(unknown_per[fewest])
    raise LayoutError(
        f"{where}: mask files {unknown[:10]} are not classes of {' or '.join(candidates)} "
        f"(closest: {fewest}, {len(unknown)} unknown)"
    )


def mask_folder_case(
    case_dir: Path,
    image_name: str,
    dataset: str,
    masks_dir: str = "segmentations",
    masks_required: bool = False,
) -> ScannedCase:
    """A case stored as ``<case>/<image_name>`` + ``<case>/<masks_dir>/<stem>.nii.gz``.

    Args:
        case_dir: the case folder.
        image_name: image file name inside it (``ct.nii.gz``).
        dataset: data set whose ``mask_files`` map canonical classes to file stems.
        masks_dir: name of the mask folder.
        masks_required: the layout labels every case: a case without any mask file gets
            ``missing_label`` (its mask folder) instead of becoming unlabeled.

    Returns:
        The case, its masks keyed by canonical class; ``labeled_classes`` are the classes
        whose mask file exists (a partial download labels fewer classes).
    """

    spec = get_dataset(dataset)
    stem_to_class = {stem: cls for cls, stem in spec.mask_files.items()}
    found = {
        stem_to_class[strip_nifti(p.name)]: p
        for p in nifti_files(case_dir / masks_dir)
        if strip_nifti(p.name) in stem_to_class
    }
    masks = {cls: found[cls] for cls in spec.classes if cls in found}  # native label order
    image = case_dir / image_name
    return ScannedCase(
        case_dir.name,
        image,
        dataset,
        masks=masks or None,
        labeled_classes=tuple(masks),
        split=None if masks else "unlabeled",
        missing_label=case_dir / masks_dir if masks_required and not masks else None,
    )


def numbered_pairs(
    root: Path, image_prefix: str, label_prefix: str, max_depth: int = 4
) -> list[tuple[int, Path, Path | None]]:
    """Files named ``<image_prefix>N.nii[.gz]`` and ``<label_prefix>N.nii[.gz]`` anywhere under root.

    The LiTS and CT-ORG downloads number their cases this way (``volume-12.nii`` with
    ``segmentation-12.nii`` / ``labels-12.nii.gz``), spread over batch folders.

    Returns:
        ``(N, image, label or None)`` sorted by N.

    Raises:
        LayoutError: two images with the same number, or a label without its image.
    """
    pattern = re.compile(rf"({re.escape(image_prefix)}|{re.escape(label_prefix)})(\d+)")
    images: dict[int, Path] = {}
    labels: dict[int, Path] = {}
    for path in find_files(root, lambda p: bool(NIFTI_RE.search(p.name)), max_depth=max_depth):
        match = pattern.fullmatch(strip_nifti(path.name))
        if not match:
            continue
        table = images if match.group(1) == image_prefix else labels
        number = int(match.group(2))
        if number in table:
            raise LayoutError(f"{path}: case {number} appears twice (also {table[number]})")
        table[number] = path
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise LayoutError(
            f"{labels[orphans[0]]}: label without an image {image_prefix}{orphans[0]} "
            f"({len(orphans)} such label{'s' if len(orphans) > 1 else ''})"
        )
    return [(n, images[n], labels.get(n)) for n in sorted(images)]


def find_files(root: Path, predicate: Callable[[Path], bool], max_depth: int = 6) -> list[Path]:
    """Files under ``root`` (down to ``max_depth`` levels) for which ``predicate`` holds, sorted."""
    return sorted(p for p in _walk(root, max_depth, files=True) if predicate(p))


def find_dirs(root: Path, predicate: Callable[[Path], bool], max_depth: int = 6) -> list[Path]:
    """Folders under ``root`` (down to ``max_depth`` levels) for which ``predicate`` holds, sorted."""
    return sorted(p for p in _walk(root, max_depth, files=False) if predicate(p))


def _walk(root: Path, max_depth: int, files: bool) -> Iterator[Path]:
    base_depth = len(root.parts)
    for current, dirnames, filenames in os.walk(root):
        here = Path(current)
        depth = len(here.parts) - base_depth
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if depth >= max_depth:
            dirnames[:] = []
        names = filenames if files else dirnames
        for name in names:
            if not name.startswith("."):
                yield here / name


def read_csv_rows(path: Path, delimiter: str | None = None) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts; UTF-8 with or without BOM; delimiter sniffed (``,`` / ``;``).

    Raises:
        LayoutError: the file cannot be parsed.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise LayoutError(f"{path}: cannot read metadata table ({err})") from None
    if delimiter is None:
        header = text.splitlines()[0] if text else ""
        delimiter = ";" if header.count(";") > header.count(",") else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]


def normalise_sex(value: str | None) -> str | None:
    """ "M"/"F" from the spellings metadata tables use (m, male, F, female); None otherwise."""
    if not value:
        return None
    key = value.strip().lower()
    if key in {"m", "male", "man"}:
        return "M"
    if key in {"f", "female", "woman"}:
        return "F"
    return None


def parse_age(value: str | float | None) -> float | int | None:
    """Age in years from "46", "46.0" or DICOM's "046Y" (months/weeks/days converted)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([YMWD]?)\s*", str(value), re.IGNORECASE)
    if not match:
        return None
    number = float(match.group(1))
    unit = match.group(2).upper()
    number = {"M": number / 12, "W": number / 52, "D": number / 365}.get(unit, number)
    return int(number) if number.is_integer() else round(number, 2)
