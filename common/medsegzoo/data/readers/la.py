"""Left Atrium (2018 Atrial Segmentation Challenge), two distributed forms.

* The release semi-supervised methods use (UA-MT and successors):
  ``2018LA_Seg_Training Set/<case>/mri_norm2.h5`` with datasets ``image`` and ``label``, and
  ``train.list`` / ``test.list`` (one case folder name per line, 80 / 20) beside the folder.
  The h5 files carry no geometry; the challenge volumes are 0.625 mm isotropic, recorded as
  the entries' ``spacing``.
* The challenge release: ``<case>/lgemri.nrrd`` (image) + ``<case>/laendo.nrrd`` (atrium as 255).

For an h5 case the datalist's ``image`` and ``label`` name the same file; the field name
selects the dataset inside it.
"""

from __future__ import annotations

from pathlib import Path

from medsegzoo.data.readers.base import LayoutReader, ScannedCase, apply_official_split, find_files

H5_NAME = "mri_norm2.h5"
NRRD_IMAGE, NRRD_LABEL = "lgemri.nrrd", "laendo.nrrd"
LA_SPACING_MM = [0.625, 0.625, 0.625]
_LISTS = {"train.list": "training", "test.list": "test"}


class LAReader(LayoutReader):
    """Left atrium MR (h5 or nrrd release)."""

    name = "la"
    title = "Left Atrium (LA 2018)"
    datasets = ("la",)
    expected = "2018LA_Seg_Training Set/<case>/mri_norm2.h5 (+ train.list, test.list) or <case>/lgemri.nrrd + laendo.nrrd"
    official_split = (
        "train.list -> training, test.list -> test (the 80/20 split of UA-MT and its successors)"
    )

    @staticmethod
    def _volumes(root: Path) -> list[Path]:
        return find_files(root, lambda p: p.name in (H5_NAME, NRRD_IMAGE), max_depth=4)

    def locate(self, root: Path) -> Path:
        if not self._volumes(root):
            raise self.error(root)
        return root

    def scan(self, root: Path) -> list[ScannedCase]:
        cases = []
        for volume in self._volumes(root):
            if volume.name == H5_NAME:
                case = ScannedCase(
                    volume.parent.name,
                    volume,
                    "la",
                    label=volume,
                    metadata={"spacing": LA_SPACING_MM},
                )
            else:
                label = volume.parent / NRRD_LABEL
                case = ScannedCase(
                    volume.parent.name, volume, "la", label=label if label.is_file() else None
                )
                case.split = None if case.is_labeled else "unlabeled"
            cases.append(case)
        return apply_official_split(cases, self._official_split(root))

    @staticmethod
    def _official_split(root: Path) -> dict[str, str]:
        out: dict[str, str] = {}
        # the lists sit beside the case folder's parent ("data/train.list"), so the parent of
        # the folder the user pointed at is looked at too (not searched)
        paths = find_files(root, lambda p: p.name in _LISTS, max_depth=2)
        paths += [
            root.parent / n
            for n in _LISTS
            if (root.parent / n).is_file() and root.parent / n not in paths
        ]
        for path in paths:
            for line in path.read_text(encoding="utf-8").splitlines():
                # UA-MT's lists hold "<case>" or "<case>/mri_norm2.h5"-like lines
                name = line.strip().split("/")[0]
                if name:
                    out[name] = _LISTS[path.name]
        return out
