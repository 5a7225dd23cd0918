"""`t5edu bench train`: runs end to end on a tiny shape, checks that both models hold the same weights,
and reports the ratio and the ceiling that the shared matrix products put on it."""

import re

from t5edu.cli import main


def test_bench_train_reports_ratio_and_ceiling(capsys):
    code = main(["bench", "train", "--preset", "t5-tiny", "--batch-size", "2", "--src-len", "16", "--tgt-len", "8",
                 "--steps", "5", "--warmup", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    losses = re.search(r"same loss \(eval mode\): t5edu (\S+), transformers (\S+)", out)
    assert losses and abs(float(losses[1]) - float(losses[2])) < 1e-5, out
    assert re.search(r"ratio t5edu / transformers: \d+\.\d\dx", out), out
    ceiling = re.search(r"t5edu can be at most (\d+\.\d\d)x faster", out)
    assert ceiling and float(ceiling[1]) > 0, out


def test_bench_train_refuses_too_few_steps(capsys):
    assert main(["bench", "train", "--preset", "t5-tiny", "--steps", "3"]) == 2
    assert "at least 5" in capsys.readouterr().out
