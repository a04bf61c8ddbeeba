"""The GradientFlowPlot callback through the charlm command: a tiny fit records the gradient flow of both LSTM
layers on its recorded steps (backend auto: torch's implementation on the others, the stepwise kernels in the
interpreter on these), writes a PNG per recorded step and logs each layer's decay."""

import csv
import math

import pytest

pytest.importorskip("lightning")

from fusedrnn.lightning_modules.charlm import cli as charlm_cli  # noqa: E402

WORDS = "the king shall love my lord and night to of ROMEO: JULIET: sweet fair hath thee\n".split(" ")


def test_callback_in_a_cli_fit(tmp_path):
    text = tmp_path / "words.txt"
    text.write_text(" ".join(WORDS[(7 * i) % len(WORDS)] for i in range(1200)), encoding="utf-8")
    out = tmp_path / "run"
    args = (f"fit --data.path {text} --data.batch_size 4 --data.seq_len 12 --model.embedding_dim 8 "
            f"--model.hidden_size 16 --model.num_layers 2 --model.backend auto --trainer.accelerator cpu "
            f"--trainer.max_epochs 1 --trainer.limit_train_batches 3 --trainer.limit_val_batches 1 "
            f"--trainer.enable_progress_bar false --trainer.log_every_n_steps 1 --trainer.default_root_dir {out} "
            f"--trainer.logger CSVLogger --trainer.logger.save_dir {out} "
            f"--trainer.callbacks+=GradientFlowPlot --trainer.callbacks.every_n_steps 2").split()
    assert charlm_cli.main(args) == 0
    pngs = sorted(p.name for p in out.rglob("gradient_flow/*.png"))
    assert pngs == ["step0000000.png", "step0000002.png"]  # steps 0 and 2 of 0, 1, 2
    (metrics,) = out.rglob("metrics.csv")
    rows = list(csv.DictReader(open(metrics)))
    for layer in ("net.rnn.l0", "net.rnn.l1"):
        decays = {r["step"]: float(r[f"gradient_flow/{layer}/log10_decay"]) for r in rows
                  if r.get(f"gradient_flow/{layer}/log10_decay")}
        assert {"0", "2"} <= decays.keys() and all(math.isfinite(d) for d in decays.values()), layer
