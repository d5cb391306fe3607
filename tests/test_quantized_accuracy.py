"""Issue 21's accuracy of trained models after quantization: a character-level model's held-out
loss rises by at most 1% (relative) in int8, and an adding-problem model keeps its test MSE below
0.02. Both train for real (the training kit, the demo's own training step) and first check that
the float model learnt (loss well below chance; MSE well below the constant predictor's), so that
the comparison means something; the int8 model is ``SequenceModel.quantize_dynamic()``'s, and
the int8 figures are checked to differ from the float ones (it is not the float model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastrnn.tools import cli
from fastrnn.training import SequenceModel, optim, tasks


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_char_model_held_out_loss_rises_at_most_1_percent(cell: str) -> None:
    """`fastrnn demo`'s training (its text split, model and step: Adam, truncated BPTT, clipping)
    for 500 steps of 32 x 64 characters of the built-in corpus's first 300,000 characters, 96
    units; the held-out loss (the last 5% of the text, ~12,000 characters) of the float and of
    the int8 model."""
    steps = 500
    args = cli.demo_args(["--cell", cell, "--hidden", "96", "--max-chars", "300000"])
    d = cli.DemoTraining.build(args)
    done, state = 0, None
    while done < steps:
        for x, y in d.batches():
            state = d.step(x, y, state).state
            done += 1
            if done == steps:
                break
        state = None
    float_loss = cli._held_out_loss(d.model, d.test_ids, d.batch)
    int8_loss = cli._held_out_loss(d.model.quantize_dynamic(), d.test_ids, d.batch)
    chance = math.log(d.vocab.size)
    assert float_loss < 0.6 * chance, (float_loss, chance)  # it learnt (~2.3-2.5 against 4.6)
    assert int8_loss != float_loss
    assert (int8_loss - float_loss) / float_loss <= 0.01, (cell, float_loss, int8_loss)


@pytest.mark.parametrize(("cell", "T"), [("rnn", 20), ("gru", 50), ("lstm", 50)])
def test_adding_model_keeps_test_mse_below_0_02(cell: str, T: int) -> None:
    """`fastrnn adding`'s training (32 units, Adam lr 1e-2, clip norm 1) for 2000 steps of 64
    sequences, at a lag each cell bridges (the vanilla RNN does not at 50); the test MSE on
    1000 held-out sequences of the float and of the int8 model."""
    x_test, y_test = tasks.adding_problem(1000, T, 12345)
    model = SequenceModel(cell, 2, 32, 1, many_to_one=True, seed=0)
    opt = optim.Adam(lr=1e-2)
    rng = np.random.default_rng(1)
    for _ in range(2000):
        x, y = tasks.adding_problem(64, T, rng)
        model.train_step(x, y, opt, clip_norm=1.0)
    float_mse = model.evaluate(x_test, y_test)
    int8_mse = model.quantize_dynamic().evaluate(x_test, y_test)
    assert float_mse < 0.1 * tasks.adding_baseline_mse(), float_mse  # it learnt (< 0.0167)
    assert int8_mse != float_mse
    assert int8_mse < 0.02, (cell, float_mse, int8_mse)
