"""`t5edu bench train`: runs end to end on a tiny shape, checks that both models hold the same weights,
and reports the ratio and the ceiling that the shared matrix products put on it."""

import re

import pytest

from t5edu.cli import main


def test_bench_train_reports_ratio_and_ceiling(capsys):
    code = main(["bench", "train", "--preset", "t5-tiny", "--batch-size", "2", "--src-len", "16",
                 "--tgt-len", "8",
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


@pytest.mark.parametrize("overrides", [{}, {"feed_forward_proj": "gated-gelu", "num_decoder_layers": 3,
                                            "d_kv": 24}])
def test_train_step_flops_counts_what_torch_counts(overrides):
    """The analytic FLOPs behind tokens/s -> TFLOP/s and MFU equal torch's own count of the products."""
    from torch.utils.flop_counter import FlopCounterMode

    from t5edu.authoring.bench import make_batch, train_step_flops
    from t5edu.config import T5Config
    from t5edu.model import T5

    config = T5Config.preset("t5-tiny", vocab_size=300, **overrides)
    model = T5(config).train()
    batch = make_batch(config.vocab_size, 3, 20, 7)
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    assert train_step_flops(config, 3, 20, 7) == counter.get_total_flops()


def test_bench_train_bf16_reports_mfu(capsys):
    code = main(["bench", "train", "--preset", "t5-tiny", "--batch-size", "2", "--src-len", "16",
                 "--tgt-len", "8",
                 "--steps", "5", "--warmup", "1", "--bf16", "--peak-tflops", "2", "--no-hf"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "bf16 autocast on cpu" in out and re.search(r"t5edu .* TFLOP/s, MFU \d+\.\d%", out), out
