"""The callback protocol of the training loop, on a dense linear model (no FM types)."""

import json

import pytest
import torch
from torch import nn

from fmadv.training.callbacks import Callback, EarlyStopping, History, TrainState
from fmadv.training.distributed import Distributed
from fmadv.training.loop import TrainConfig, fit_loop

N_ROWS, BATCH = 200, 50


def linear_problem(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(N_ROWS, 5, generator=generator)
    y = torch.sign(x @ torch.randn(5, generator=generator))
    return x, y


def batch_source(x, y):
    def batches(rng, device):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), BATCH):
            rows = order[start : start + BATCH]
            yield x[rows].to(device), y[rows].to(device)

    return batches


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 1), nn.Flatten(0))


def accuracy_on(x, y):
    def evaluate(model):
        return {"accuracy": float((torch.sign(model(x)) == y).float().mean())}

    return evaluate


CONFIG = {"batch_size": BATCH, "lr": 0.1, "device": "cpu", "monitor": "accuracy"}


class Recorder(Callback):
    """Writes down every moment it is called at; stops after ``stop_at`` if given."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.stop_at = stop_at

    def on_train_begin(self, state):
        self.calls.append(("begin", state.epoch))

    def on_batch_end(self, state, rows_done):
        self.calls.append(("batch", rows_done))

    def on_epoch_end(self, state, record):
        self.calls.append(("epoch", record["epoch"]))
        return record["epoch"] == self.stop_at

    def on_train_end(self, state):
        self.calls.append(("end", state.epoch))


def test_a_callback_sees_every_moment_of_a_run_in_order():
    x, y = linear_problem()
    recorder = Recorder()
    history = fit_loop(
        linear_model(), batch_source(x, y), N_ROWS, None, TrainConfig(epochs=2, **CONFIG),
        callbacks=[recorder],
    )  # fmt: skip
    batches = [("batch", rows) for rows in range(BATCH, N_ROWS + 1, BATCH)]
    expected = [("begin", 0), *batches, ("epoch", 1), *batches, ("epoch", 2), ("end", 2)]
    assert recorder.calls == expected
    assert [r["epoch"] for r in history.records] == [1, 2]


def test_a_callback_stops_the_run_and_later_callbacks_still_see_the_epoch():
    x, y = linear_problem()
    stopper, after = Recorder(stop_at=2), Recorder()
    history = fit_loop(
        linear_model(), batch_source(x, y), N_ROWS, None, TrainConfig(epochs=5, **CONFIG),
        callbacks=[stopper, after],
    )  # fmt: skip
    assert len(history.records) == 2
    assert ("epoch", 2) in after.calls and after.calls[-1] == ("end", 2)


class EpochCounter(Callback):
    """A callback with state that a checkpoint must carry across a resume."""

    def __init__(self) -> None:
        self.seen = 0

    def on_epoch_end(self, state, record):
        self.seen += 1
        return False

    def state_dict(self):
        return {"counter.seen": self.seen, "counter.marks": torch.full((2,), float(self.seen))}

    def load_state_dict(self, state):
        self.seen = state["counter.seen"]
        assert torch.equal(state["counter.marks"], torch.full((2,), float(self.seen)))


class Interrupt(Exception):
    pass


class InterruptAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_batch_end(self, state, rows_done):
        if state.epoch == self.epoch:
            raise Interrupt


def test_resume_restores_callbacks_and_continues_the_log(tmp_path):
    x, y = linear_problem()
    xv, yv = linear_problem(seed=1)
    config = TrainConfig(epochs=4, patience=0, **CONFIG)

    def train(*callbacks, **options):
        model = linear_model()
        options = {"log_path": tmp_path / "log.jsonl", **options}
        history = fit_loop(model, batch_source(x, y), N_ROWS, accuracy_on(xv, yv), config,
                           callbacks=callbacks, **options)  # fmt: skip
        return model, history

    whole_model, whole = train(EpochCounter(), log_path=tmp_path / "whole.jsonl")
    checkpoint = tmp_path / "checkpoint.safetensors"
    with pytest.raises(Interrupt):
        train(EpochCounter(), InterruptAfter(2), checkpoint=checkpoint)
    counter = EpochCounter()
    model, resumed = train(counter, checkpoint=checkpoint, resume=True)

    assert counter.seen == 4
    for a, b in zip(model.parameters(), whole_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert (resumed.best_epoch, resumed.best_value) == (whole.best_epoch, whole.best_value)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    assert [r["train_loss"] for r in lines] == [r["train_loss"] for r in whole.records]


def test_early_stopping_counts_epochs_without_gain_and_restores_the_best_weights():
    model = nn.Linear(1, 1)
    state = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1), None, Distributed(),
                       torch.device("cpu"), History())  # fmt: skip
    stopping = EarlyStopping("hinge", patience=2, larger_is_better=False)
    stops = []
    for epoch, value in enumerate([0.5, 0.4, 0.45, 0.41], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        stops.append(stopping.on_epoch_end(state, {"epoch": epoch, "valid_hinge": value}))
    assert stops == [False, False, False, True]
    assert (state.history.best_epoch, state.history.best_value) == (2, 0.4)
    stopping.on_train_end(state)
    assert model.weight.item() == pytest.approx(0.4)

    restored = EarlyStopping("hinge", patience=2, larger_is_better=False)
    restored.load_state_dict(stopping.state_dict())
    assert restored.epochs_without_gain == 2
    assert torch.equal(restored.best_weights["weight"], stopping.best_weights["weight"])
