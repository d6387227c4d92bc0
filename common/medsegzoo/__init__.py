"""medsegzoo: shared package of the medsegzoo MONAI bundles.

Layers (lower layers never import higher ones):

``taxonomy`` -> ``data`` -> ``transforms`` -> ``networks``/``losses`` -> ``engines``/``inference``;
``evaluation`` reads images and masks only and knows nothing of networks or training.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
