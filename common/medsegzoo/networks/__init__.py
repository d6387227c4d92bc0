"""Networks of the four methods.

Names resolve lazily (see :mod:`medsegzoo.utils.lazy`), so a bundle config
(``"_target_": "medsegzoo.networks.STUNet"``) imports only the module it needs.
To add a network, add one line to ``_EXPORTS``: public name -> defining module.
"""

from __future__ import annotations

from medsegzoo.utils.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "DualDecoderVNet": "medsegzoo.networks.vnet_dual",
    "dual_vnet_parameter_count": "medsegzoo.networks.vnet_dual",
    "TCTUNet": "medsegzoo.networks.tct_unet",
    "TrilinearUpsample2x": "medsegzoo.networks.upsample",
    "trilinear_resize": "medsegzoo.networks.upsample",
    "tct_unet_parameter_count": "medsegzoo.networks.tct_unet",
    "UniversalModel": "medsegzoo.networks.universal",
    "build_text_encoder": "medsegzoo.networks.text_encoders",
    "load_text_embeddings": "medsegzoo.networks.text_encoders",
    "write_text_embeddings": "medsegzoo.networks.text_encoders",
    "STUNet": "medsegzoo.networks.stunet",
    "load_stunet_checkpoint": "medsegzoo.networks.stunet",
    "stunet_parameter_count": "medsegzoo.networks.stunet",
    "StateDictMismatchError": "medsegzoo.networks.weights",
    "load_weights": "medsegzoo.networks.weights",
    "read_state_dict": "medsegzoo.networks.weights",
    "with_weights": "medsegzoo.networks.weights",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
