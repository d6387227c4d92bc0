"""Model zoo: reproducible bundle zips, a model-zoo index, loopback serving and verified download.

* :mod:`medsegzoo.zoo.pack` - ``<name>_v<version>.zip`` per bundle, ``model_info.json``, sha256 files,
  ``large_files.yml`` for files above the model zoo's 25 MB limit (served beside the zip).
* :mod:`medsegzoo.zoo.environment` - the installed package versions a packed metadata.json states.
* :mod:`medsegzoo.zoo.wheel` - the medsegzoo wheel served in ``packages/`` and named in metadata.json.
* :mod:`medsegzoo.zoo.index` - read an index (path or URL) and resolve a name/version.
* :mod:`medsegzoo.zoo.download` - checksum-verified download (large files too) and safe extraction.
* :mod:`medsegzoo.zoo.serve` - an HTTP server on 127.0.0.1 for a zoo folder.
* :mod:`medsegzoo.zoo.export` - TorchScript/ONNX export of a bundle's inference network.

Import the defining module directly (``from medsegzoo.zoo.pack import pack_zoo``): the package
marker stays free of imports so that ``medsegzoo zoo serve`` does not load torch.
"""

from __future__ import annotations
