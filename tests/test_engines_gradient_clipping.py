"""GradientNormClipping: the SGD step of a MONAI trainer uses gradients clipped to max_norm."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents

from medsegzoo.engines.gradient_clipping import GradientNormClipping


def _trainer(handlers: list) -> tuple[SupervisedTrainer, torch.nn.Module]:
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    data = [{"image": torch.randn(2, 4) * 100, "label": torch.zeros(2, 1)}]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=data, network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=1.0), loss_function=torch.nn.MSELoss(),
        train_handlers=handlers,
    )
    return trainer, net


def test_step_uses_clipped_gradients() -> None:
    norms: list[float] = []

    class Probe:
        def attach(self, engine) -> None:
            engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, lambda e: norms.append(
                float(torch.linalg.vector_norm(torch.cat([p.grad.ravel() for p in e.network.parameters()])))))

    clip = GradientNormClipping(max_norm=0.5)
    trainer, net = _trainer([clip, Probe()])  # the probe runs after the clipping
    before = torch.cat([p.detach().ravel().clone() for p in net.parameters()])
    trainer.run()
    after = torch.cat([p.detach().ravel() for p in net.parameters()])
    assert clip.last_norm is not None and clip.last_norm > 100  # the raw gradient is large
    assert norms[0] == pytest.approx(0.5, rel=1e-5)
    # SGD with lr 1 moves the weights by exactly the clipped gradient
    assert float(torch.linalg.vector_norm(after - before)) == pytest.approx(0.5, rel=1e-5)

    unclipped, net2 = _trainer([])
    before = torch.cat([p.detach().ravel().clone() for p in net2.parameters()])
    unclipped.run()
    moved = float(torch.linalg.vector_norm(torch.cat([p.detach().ravel() for p in net2.parameters()]) - before))
    assert moved == pytest.approx(clip.last_norm, rel=1e-4)  # same data and seed: the raw norm


def test_rejects_non_positive_threshold() -> None:
    with pytest.raises(ValueError, match="max_norm"):
        GradientNormClipping(max_norm=0)
