"""What every phantom layout writer is given: the layout's spec and the writing context.

A :class:`LayoutSpec` names a layout, its native data set, its writer and the phantoms it
holds (anatomy, modality, lesion kinds); a writer receives a :class:`LayoutContext` (where to
write, how many cases, how to make each one), writes the tree, records every case for the
manifest with :meth:`LayoutContext.record` and returns the layout's top folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsegzoo.data.phantoms.generator import Phantom
from medsegzoo.data.phantoms.sites import Site

__all__ = ["LayoutContext", "LayoutSpec"]


@dataclass
class LayoutContext:
    """What a layout writer needs: where to write and how to make each case.

    Attributes:
        out: folder to write into (a temporary folder renamed to OUT on success).
        spec: the layout.
        labeled: number of labeled cases.
        unlabeled: number of images without labels.
        make: case index -> phantom.
        site: the acquisition site.
        records: per-case manifest entries, filled by :meth:`record`.
    """

    out: Path
    spec: LayoutSpec
    labeled: int
    unlabeled: int
    make: Callable[[int], Phantom]
    site: Site
    records: list[dict[str, Any]] = field(default_factory=list)

    def cases(self) -> list[tuple[int, bool]]:
        """``(index, labeled)`` of every case to write, labeled ones first."""
        return [(i, True) for i in range(self.labeled)] + [
            (self.labeled + j, False) for j in range(self.unlabeled)
        ]

    def record(
        self, case_id: str, phantom: Phantom, labeled: bool, split: str, **paths: Path | None
    ) -> None:
        """Add a case to the manifest (paths relative to OUT)."""
        entry: dict[str, Any] = {"case_id": case_id, "labeled": labeled, "split": split}
        for key, path in paths.items():
            entry[key] = None if path is None else path.relative_to(self.out).as_posix()
        entry.update(phantom.metadata)
        self.records.append(entry)


@dataclass(frozen=True)
class LayoutSpec:
    """One phantom layout.

    Attributes:
        name: layout name on the command line.
        dataset: native data set (taxonomy key) of the labels written.
        writer: function writing the tree; returns the layout's top folder.
        anatomy: phantom anatomy ("abdomen", "left_atrium", "brain").
        modality: default modality.
        lesions: lesion kinds drawn (None: the generator's default set).
        tumor_probability: probability of a tumour case (None: the caller's value).
        options: writer-specific settings.
        holds_unlabeled: whether the layout has a place for images without labels.
    """

    name: str
    dataset: str
    writer: Callable[[LayoutContext], Path]
    anatomy: str = "abdomen"
    modality: str = "CT"
    lesions: tuple[str, ...] | None = None
    tumor_probability: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    holds_unlabeled: bool = True
