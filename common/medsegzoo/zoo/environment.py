"""Package versions of the running environment, written into a packed bundle's metadata.

A bundle's ``configs/metadata.json`` names the packages it needs
(``required_packages_version``, ``optional_packages_version``) and the MONAI, PyTorch and
NumPy versions it was made with. Typed by hand, those drift from what was tested (a pinned
torch that is not the one installed). :func:`stamp_versions` replaces every version with the
one installed where the pack runs, which is where the bundle was tested; the MONAI model zoo's
CI then installs ``<name>==<version>`` for each of them.

Versions are the public part of the installed version (``2.14.1`` for ``2.14.1+cu130``): the
local label names a build of one index (the CUDA wheels of PyTorch), which a plain
``pip install torch==2.14.1+cu130`` from the registry cannot find, while ``torch==2.14.1`` is
satisfied by that build too (PEP 440 ignores local labels when a specifier has none).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from typing import Any

from packaging.version import InvalidVersion, Version

from medsegzoo.errors import DataValidationError

# metadata.json keys holding one version each, and the distribution that provides it
CORE_VERSION_KEYS: dict[str, str] = {
    "monai_version": "monai",
    "pytorch_version": "torch",
    "numpy_version": "numpy",
}
# metadata.json keys holding {distribution name: version}
PACKAGE_VERSION_KEYS: tuple[str, ...] = ("required_packages_version", "optional_packages_version")
PROJECT = "medsegzoo"


def installed_version(distribution: str) -> str:
    """The public version of an installed distribution (``2.14.1`` for ``2.14.1+cu130``).

    Args:
        distribution: the name pip installs it by (``pytorch-ignite``, ``open-clip-torch``).

    Raises:
        DataValidationError: the distribution is not installed here.
    """
    try:
        raw = importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError as err:
        raise DataValidationError(f"package {distribution!r} is not installed in this environment") from err
    try:
        return Version(raw).public
    except InvalidVersion:  # not PEP 440: keep it as pip reports it
        return raw


def stamp_versions(meta: Mapping[str, Any], overrides: Mapping[str, str] | None = None,
                   source: str = "configs/metadata.json") -> dict[str, Any]:
    """A copy of ``meta`` whose versions are those installed here.

    ``monai_version``, ``pytorch_version`` and ``numpy_version`` are set (added when missing);
    every package of ``required_packages_version`` and ``optional_packages_version`` gets its
    installed version. Key order is kept.

    Args:
        meta: the bundle's metadata.
        overrides: versions to use instead of the installed ones (distribution -> version),
            e.g. the version of the medsegzoo wheel served beside the bundles.
        source: the metadata file, for error messages.

    Returns:
        The stamped metadata (``meta`` is not changed).

    Raises:
        DataValidationError: a named package is not installed here (the message names the file,
            the key and the package: pack in the environment the bundle was tested in).
    """
    stamped = copy.deepcopy(dict(meta))
    overrides = dict(overrides or {})

    def version_of(distribution: str, key: str) -> str:
        if distribution in overrides:
            return overrides[distribution]
        try:
            return installed_version(distribution)
        except DataValidationError as err:
            raise DataValidationError(
                f"{source}: {key} names {distribution!r}, which is not installed where the bundle is packed; "
                "pack in the environment the bundle was tested in (or remove the entry)"
            ) from err

    for key, distribution in CORE_VERSION_KEYS.items():
        stamped[key] = version_of(distribution, key)
    for key in PACKAGE_VERSION_KEYS:
        packages = stamped.get(key)
        if packages is None:
            continue
        if not isinstance(packages, dict):
            raise DataValidationError(f"{source}: {key} must be an object of package name -> version")
        stamped[key] = {name: version_of(name, f"{key}.{name}") for name in packages}
    return stamped
