"""Mixed precision on the CPU: the policy, the autocast inferer and the MONAI engines built on it."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer

from medsegzoo.engines.precision import MixedPrecisionEvaluator, MixedPrecisionTrainer, keep_shallow_conv3d_in_float32
from medsegzoo.errors import MedSegZooError
from medsegzoo.inference import autocast as autocast_module
from medsegzoo.inference.autocast import Autocast, AutocastInferer, cpu_supports_bf16, resolve_autocast, to_float32

needs_bf16 = pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16 support")


class DtypeProbe(torch.nn.Module):
    """A conv whose forward records the dtype it computed in."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 3, 3, padding=1)
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        self.seen.append(y.dtype)
        return y


def test_amp_off_is_float32_everywhere() -> None:
    policy = resolve_autocast(False, "cpu", "auto")
    assert not policy.enabled and policy.dtype is None
    net = DtypeProbe()
    assert policy.wrap(net) is net  # nothing in the way when off


@needs_bf16
def test_cpu_auto_is_bf16_and_needs_no_scaler() -> None:
    policy = resolve_autocast(True, torch.device("cpu"), "auto")
    assert policy == Autocast("cpu", torch.bfloat16)
    assert not policy.needs_grad_scaler
    assert resolve_autocast("true", "cpu", "bf16").dtype == torch.bfloat16  # string switches from a CLI


def test_float16_on_cpu_names_the_setting() -> None:
    with pytest.raises(MedSegZooError, match="amp_dtype 'float16' is a CUDA setting"):
        resolve_autocast(True, "cpu", "float16")
    with pytest.raises(MedSegZooError, match="amp_dtype 'int8' is not one of"):
        resolve_autocast(True, "cpu", "int8")


def test_cpu_without_bf16_falls_back_to_float32_and_says_so(monkeypatch, caplog) -> None:
    monkeypatch.setattr(autocast_module, "cpu_supports_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="medsegzoo.inference.autocast"):
        policy = resolve_autocast(True, "cpu", "auto")
    assert not policy.enabled
    assert "no bf16 support" in caplog.text and "float32" in caplog.text


def test_cuda_fp16_policy_needs_a_scaler() -> None:
    # resolving for CUDA needs no GPU when the dtype is explicit float16
    policy = resolve_autocast(True, "cuda", "float16")
    assert policy == Autocast("cuda", torch.float16) and policy.needs_grad_scaler


@dataclasses.dataclass
class _Heads:
    logits: list
    features: torch.Tensor
    name: str = "x"


def test_to_float32_casts_nested_outputs_and_keeps_the_rest() -> None:
    bf = torch.ones(2, dtype=torch.bfloat16)
    ints = torch.ones(2, dtype=torch.int64)
    out = to_float32({"main": bf, "aux": [bf, (bf, ints)], "heads": _Heads([bf], bf)})
    assert out["main"].dtype == torch.float32
    assert out["aux"][0].dtype == torch.float32 and out["aux"][1][0].dtype == torch.float32
    assert out["aux"][1][1].dtype == torch.int64  # integers untouched
    assert isinstance(out["heads"], _Heads) and out["heads"].logits[0].dtype == torch.float32
    assert out["heads"].name == "x"


@needs_bf16
def test_sliding_window_autocast_runs_bf16_windows_and_returns_float32() -> None:
    net = DtypeProbe().eval()
    image = torch.rand(1, 1, 24, 24, 24)
    base = SlidingWindowInferer(roi_size=(16, 16, 16), sw_batch_size=2, overlap=0.5, mode="gaussian")
    with torch.no_grad():
        reference = base(image, net)
        net.seen.clear()
        fast = AutocastInferer(base, Autocast("cpu", torch.bfloat16))(image, net)
    assert set(net.seen) == {torch.bfloat16}  # every window computed in bf16
    assert fast.dtype == torch.float32  # blending and everything after in float32
    assert fast.shape == reference.shape
    # bf16 keeps 8 bits of mantissa: relative error of one conv ~ 2**-8
    torch.testing.assert_close(fast, reference, rtol=0.02, atol=0.02)
    assert AutocastInferer(base, Autocast()).roi_size == base.roi_size  # settings stay readable


@needs_bf16
def test_trainer_autocasts_the_forward_and_computes_the_loss_in_float32() -> None:
    net = DtypeProbe()
    seen_by_loss: list[torch.dtype] = []

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen_by_loss.append(pred.dtype)
        return torch.nn.functional.mse_loss(pred, target)

    data = [{"image": torch.rand(1, 1, 8, 8, 8), "label": torch.rand(1, 3, 8, 8, 8)}] * 2
    trainer = MixedPrecisionTrainer(
        device="cpu", max_epochs=1, train_data_loader=data, network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=loss, amp=True, amp_dtype="auto",
    )
    assert trainer.autocast.dtype == torch.bfloat16
    assert not trainer.amp and trainer.scaler is None  # no GradScaler for bf16, no CUDA autocast
    before = net.conv.weight.detach().clone()
    trainer.run()
    assert net.seen == [torch.bfloat16, torch.bfloat16]
    assert seen_by_loss == [torch.float32, torch.float32]
    assert net.conv.weight.dtype == torch.float32  # master weights stay float32
    assert not torch.equal(before, net.conv.weight)


def _weight_grad(conv: torch.nn.Conv3d, x: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.dtype]:
    conv.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = conv(x)
    out.float().sum().backward()
    return conv.weight.grad.clone(), out.dtype


@pytest.mark.parametrize("depth", [1, 2])
def test_shallow_conv3d_weight_gradient_under_bf16_matches_float32(depth: int) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(8, 8, 3, padding=1)
    assert keep_shallow_conv3d_in_float32(torch.nn.Sequential(conv)) == 1
    assert keep_shallow_conv3d_in_float32(conv) == 0  # guarded once
    x = torch.randn(2, 8, depth, 6, 6)  # a bottleneck two slices deep: oneDNN's bf16 weight grad is garbage here
    reference, _ = _weight_grad(conv, x, bf16=False)
    guarded, dtype = _weight_grad(conv, x, bf16=True)
    assert dtype == torch.bfloat16  # the layer's output keeps autocast's dtype for what follows
    torch.testing.assert_close(guarded, reference, rtol=1e-5, atol=1e-5)  # computed in float32


@needs_bf16
def test_deep_conv3d_stays_bf16_and_trainer_guards_the_network() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(4, 4, 3, padding=1)
    keep_shallow_conv3d_in_float32(conv)
    x = torch.randn(1, 4, 6, 6, 6)
    reference, _ = _weight_grad(conv, x, bf16=False)
    fast, dtype = _weight_grad(conv, x, bf16=True)
    assert dtype == torch.bfloat16
    assert not torch.equal(fast, reference)  # really bf16, yet close
    torch.testing.assert_close(fast, reference, rtol=0.03, atol=0.03 * reference.abs().max().item())
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.Conv3d(2, 2, 1))
    MixedPrecisionTrainer(device="cpu", max_epochs=1, train_data_loader=[], network=net,
                          optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=torch.nn.MSELoss(),
                          amp=True)
    assert "forward" in vars(net[0]) and "forward" not in vars(net[1])  # 1x1x1 kernels are never shallow


def test_evaluator_with_amp_off_keeps_monai_behaviour() -> None:
    net = DtypeProbe()
    evaluator = MixedPrecisionEvaluator(device="cpu", val_data_loader=[{"image": torch.rand(1, 1, 4, 4, 4)}],
                                        network=net, amp=False, inferer=SimpleInferer())
    evaluator.run()
    assert net.seen == [torch.float32]
    assert isinstance(evaluator.inferer, SimpleInferer)


def test_evaluator_rejects_float16_on_cpu_before_running() -> None:
    with pytest.raises(MedSegZooError, match="amp_dtype"):
        MixedPrecisionEvaluator(device="cpu", val_data_loader=[], network=DtypeProbe(), amp=True, amp_dtype="float16")
