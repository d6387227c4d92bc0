"""Training iterations: the universal model's labeled-classes step equals running every head."""

from __future__ import annotations

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from medsegzoo.engines.steps import LabeledClassesStep
from medsegzoo.losses.universal import UniversalLoss
from medsegzoo.networks.universal import UniversalModel


def _model() -> UniversalModel:
    torch.manual_seed(0)
    return UniversalModel(torch.randn(5, 8), backbone="unet", unet_base_channels=4)


def _batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    label = (torch.rand(2, 5, 16, 16, 16) > 0.7).float()
    label[0, [0, 3]] = -1.0  # sample 0 labels classes 1, 2, 4
    label[1, [0, 1, 3]] = -1.0  # sample 1 labels classes 2, 4: class 0 and 3 are labeled by nobody
    return {"image": torch.rand(2, 1, 16, 16, 16), "label": label}


def test_labeled_classes_step_has_the_loss_and_gradients_of_the_full_forward() -> None:
    batch = _batch()
    # reference: every head, masked loss, one backward
    reference = _model()
    loss = UniversalLoss()(reference(batch["image"]), batch["label"])
    loss.backward()
    ref_grads = {n: p.grad.clone() for n, p in reference.named_parameters() if p.grad is not None}

    model = _model()
    seen = {}

    def record(engine):
        seen["loss"] = float(engine.state.output["loss"])
        seen["channels"] = engine.state.output["pred"].shape[1]
        seen["grads"] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    trainer = SupervisedTrainer(
        device="cpu", max_epochs=1, train_data_loader=[batch], network=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0), loss_function=UniversalLoss(),
        iteration_update=LabeledClassesStep(), decollate=False,
    )
    from monai.engines.utils import IterationEvents

    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, record)
    trainer.run()
    assert seen["channels"] == 3  # classes 1, 2, 4 only
    assert abs(seen["loss"] - float(loss)) < 1e-5
    assert set(seen["grads"]) <= set(ref_grads)
    for name, grad in seen["grads"].items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_batch_that_labels_none_of_the_trained_channels_gives_a_zero_loss() -> None:
    batch = _batch()
    model = _model()
    losses = []
    trainer = SupervisedTrainer(
        device="cpu", max_epochs=1, train_data_loader=[batch], network=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1), loss_function=UniversalLoss(),
        iteration_update=LabeledClassesStep(channels=[3]), decollate=False,  # class 3: labeled by nobody
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["loss"])))
    trainer.run()
    assert losses == [0.0]
