"""Label taxonomy: canonical class names, data set label maps, method label systems, conversions.

Public API (contract in INTERFACES.md):

* :func:`canonical_name`, :func:`display_name`, :func:`all_class_names`
* :class:`DatasetSpec`, :func:`get_dataset`, :func:`list_datasets`
* :class:`LabelSystem`, :func:`get_label_system`, :func:`list_label_systems`
* :func:`convert_label_map`, :func:`convert_to_multi_hot`, :func:`split_left_right`,
  :func:`labeled_classes`, :func:`validate_label_values`
"""

from __future__ import annotations

from medsegzoo.taxonomy.convert import (
    ConversionPlan,
    conversion_plan,
    convert_label_map,
    convert_to_multi_hot,
    is_lesion,
    labeled_classes,
    resolve_class,
    split_left_right,
    validate_label_values,
)
from medsegzoo.taxonomy.datasets import DatasetSpec, get_dataset, list_datasets
from medsegzoo.taxonomy.names import (
    ClassInfo,
    all_class_names,
    canonical_name,
    class_info,
    display_name,
    normalize_name,
    side_parts,
)
from medsegzoo.taxonomy.systems import LabelSystem, get_label_system, list_label_systems

__all__ = [
    "ClassInfo",
    "ConversionPlan",
    "DatasetSpec",
    "LabelSystem",
    "all_class_names",
    "canonical_name",
    "class_info",
    "conversion_plan",
    "convert_label_map",
    "convert_to_multi_hot",
    "display_name",
    "get_dataset",
    "get_label_system",
    "is_lesion",
    "labeled_classes",
    "list_datasets",
    "list_label_systems",
    "normalize_name",
    "resolve_class",
    "side_parts",
    "split_left_right",
    "validate_label_values",
]
