"""The bundles' fast inference path: same label map as fp32 on a trained network, on by default."""

from __future__ import annotations

import json

import pytest
import torch
from bundle_utils import BUNDLES_DIR
from trained_models import PATCH, dice, padded_case
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNet

from medsegzoo.bundle_runs import BundleRun, parse_bundle
from medsegzoo.inference.autocast import AutocastInferer, cpu_supports_bf16, resolve_autocast
from medsegzoo.inference.sliding_window import BodySlidingWindowInferer

BUNDLES = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "inference.json").is_file())


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16 support")
@torch.no_grad()
def test_fast_path_equals_fp32_on_a_trained_network(trained_unet: UNet) -> None:
    image, label = padded_case(seed=99)
    batch = image[None]
    settings = {"roi_size": (PATCH,) * 3, "sw_batch_size": 2, "overlap": 0.5, "mode": "gaussian"}
    stock = SlidingWindowInferer(**settings)(batch, trained_unet)[0]
    body = BodySlidingWindowInferer(**settings, channels_last=True, body_margin=0)
    fast = AutocastInferer(body, resolve_autocast(True, "cpu"))(batch, trained_unet)[0]
    assert body.windows.skipped > 0 and fast.dtype == torch.float32
    stock_map, fast_map = stock.argmax(0), fast.argmax(0)
    for value in (1, 2):
        assert dice(stock_map == value, label == value) > 0.8  # the network is trained
        assert dice(fast_map == value, stock_map == value) >= 0.99  # and the fast path agrees with fp32
    inside = torch.as_tensor(body.last_masks[0].dense())
    assert torch.softmax(fast, 0)[:, inside].sub(torch.softmax(stock, 0)[:, inside]).abs().mean() < 0.01


def _config(bundle: str) -> dict:
    return json.loads((BUNDLES_DIR / bundle / "configs" / "inference.json").read_text())


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_bundle_infers_with_the_fast_path_by_default(bundle: str) -> None:
    config = _config(bundle)
    key = "sliding_window" if "sliding_window" in config else "inferer"
    inferer = config[key]
    assert inferer["_target_"] == "medsegzoo.inference.sliding_window.BodySlidingWindowInferer"
    assert config["amp"] is True and config["sw_skip_outside_body"] is True
    assert inferer["skip_outside_body"] == "@sw_skip_outside_body"
    assert inferer["cpu_batch_size"] == "@sw_batch_size_cpu" and inferer["channels_last"] == "@sw_channels_last"
    # channels-last only where it was measured to help (TCSeg's batch-norm V-Net)
    assert config["sw_channels_last"] is (bundle == "tcseg_semi_supervised_segmentation")
    # sigmoid outputs (one channel per class) have no background channel to fill
    assert inferer["background_channel"] == (None if bundle == "clip_universal_segmentation" else 0)
    if key == "sliding_window":  # STU-Net: mirroring kept around the sliding window, on by default
        assert config["inferer"]["inferer"] == "@sliding_window" and config["use_mirroring"] is True


def test_tct_inferer_resolves_with_its_settings() -> None:
    parser = parse_bundle(BundleRun(BUNDLES_DIR / "tct_partial_label_segmentation", ["inference.json"]))
    inferer = parser.get_parsed_content("inferer")
    assert isinstance(inferer, BodySlidingWindowInferer)
    assert inferer.skip_outside_body and not inferer.channels_last and inferer.background_channel == 0
    assert tuple(inferer.roi_size) == (192, 192, 64) and inferer.overlap == 0.25
    assert inferer.sw_batch_size == 4 and inferer.cpu_batch_size == 1  # one bf16 window at a time on a CPU
    parser = parse_bundle(BundleRun(BUNDLES_DIR / "tct_partial_label_segmentation", ["inference.json"],
                                    {"sw_skip_outside_body": "false", "sw_channels_last": "true"}))
    inferer = parser.get_parsed_content("inferer")
    assert not inferer.skip_outside_body and inferer.channels_last  # command-line strings accepted
