"""The character language model: data stream, vocabulary, training on both backends, sampling from a
checkpoint, DDP, W&B offline logging, the committed config, and the errors for bad input."""

import csv
import io
import math
import os
import struct
import subprocess
import sys
import time
import urllib.error
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("lightning")
pytest.importorskip("torchmetrics")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

from fusedrnn.lightning_modules.charlm import CharLM, CharVocab, TextDataModule  # noqa: E402
from fusedrnn.lightning_modules.charlm import cli as charlm_cli  # noqa: E402
from fusedrnn.lightning_modules.charlm import data as text_data  # noqa: E402
from fusedrnn.lightning_modules.charlm.data import ContiguousBatches  # noqa: E402
from fusedrnn.lightning_modules.common.wandb_logger import MISSING_WANDB, WandbLogger  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "charlm.yaml"
TINY_SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
WORDS = "the king shall love my lord and night to of ROMEO: JULIET: sweet fair hath thee\n".split(" ")
PYTHON_ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
# A small fit through the CLI: {text} is the text file, {out} the output folder.
TINY_FIT = (
    "--data.path {text} --data.batch_size 4 --data.seq_len 32 --model.embedding_dim 16 --model.hidden_size 24 "
    "--model.num_layers 2 --model.backend torch --trainer.limit_val_batches 3 --trainer.accelerator cpu "
    "--trainer.enable_progress_bar false --trainer.default_root_dir {out}"
)


def command_line(line: str, **paths) -> list[str]:
    """`line` split into arguments, with {name} replaced by paths[name] (after the split: paths may hold spaces)."""
    return [word.format(**{name: str(path) for name, path in paths.items()}) for word in line.split()]


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny: a second intra-op thread gains nothing, and on a busy machine threads that
    spin waiting for each other cost seconds per step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    """About 12,000 characters of word salad, the same on every run."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(len(WORDS), (2400,), generator=gen).tolist()
    path = tmp_path_factory.mktemp("text") / "words.txt"
    path.write_text(" ".join(WORDS[i] for i in ids), encoding="utf-8")
    return path


def tiny_model(vocab: CharVocab, **kwargs) -> CharLM:
    settings = dict(embedding_dim=16, hidden_size=24, num_layers=2, dropout=0.0, backend="torch", lr=1e-2)
    return CharLM(vocab.chars, **{**settings, **kwargs})


def quiet_trainer(**kwargs) -> pl.Trainer:
    # Nothing written to the working directory: no logger, no checkpoints.
    settings = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    settings.update(enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**settings, **kwargs})


# ---- data ------------------------------------------------------------------------------------------


def test_vocab_round_trip(text_file):
    dm = TextDataModule(str(text_file))
    vocab = dm.vocab
    assert vocab.chars == "".join(sorted(set(dm.text)))
    assert vocab.decode(vocab.encode(dm.text)) == dm.text
    # The checkpoint keeps the characters; a model rebuilt from them maps ids the same way.
    assert tiny_model(CharVocab(vocab.chars)).vocab == vocab
    restored = TextDataModule(str(text_file))
    restored.load_state_dict(dm.state_dict())
    assert restored.vocab == vocab


def test_batches_continue_row_by_row():
    ids = torch.arange(103)
    rows, seq_len = 4, 7
    batches = list(ContiguousBatches(ids, rows, seq_len))
    assert len(batches) == len(ContiguousBatches(ids, rows, seq_len)) == math.ceil(25 / seq_len)
    inputs = torch.cat([x for x, _ in batches], dim=1)
    targets = torch.cat([y for _, y in batches], dim=1)
    # Row r reads one stretch of text from left to right, batch after batch, targets one character ahead.
    assert torch.equal(inputs, ids[:100].view(rows, 25))
    assert torch.equal(targets, inputs + 1)
    # Two processes split the same rows between them, each a contiguous block.
    ranks = [torch.cat([x for x, _ in ContiguousBatches(ids, 2, seq_len, rank, 2)], dim=1) for rank in (0, 1)]
    assert torch.equal(torch.cat(ranks), inputs)


def test_state_carried_across_batches(text_file):
    """Validation in chunks of 5 characters with the state carried gives the loss of one pass over
    whole rows: the state flows from batch to batch."""
    dm = TextDataModule(str(text_file), batch_size=3, seq_len=5)
    model = tiny_model(dm.vocab)
    trainer = quiet_trainer(limit_val_batches=8)
    chunked = trainer.validate(model, dm, verbose=False)[0]["val/loss"]
    x, y = (torch.cat(parts, dim=1) for parts in zip(*list(dm.val_dataloader())[:8]))
    model.eval()
    with torch.no_grad():
        logits, _ = model(x)
    whole = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert chunked == pytest.approx(whole, rel=1e-5)


# ---- training on both backends -----------------------------------------------------------------


class StepLosses(pl.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fast_dev_run_backends_agree(text_file, cell):
    """Same seed, same initial weights: the Triton kernels (interpreter) and torch train alike."""
    losses = {}
    for backend in ("torch", "triton", "triton-fusedstep"):
        dm = TextDataModule(str(text_file), batch_size=3, seq_len=7)
        pl.seed_everything(7, verbose=False)
        model = tiny_model(dm.vocab, cell=cell, hidden_size=19, backend=backend, lr=3e-2, lr_schedule="none")
        recorder = StepLosses()
        quiet_trainer(fast_dev_run=4, callbacks=[recorder]).fit(model, dm)
        losses[backend] = recorder.losses
    assert len(losses["torch"]) == 4
    assert losses["triton"] == pytest.approx(losses["torch"], rel=1e-4, abs=1e-5)
    assert losses["triton-fusedstep"] == pytest.approx(losses["torch"], rel=1e-4, abs=1e-5)
    assert losses["torch"][-1] < losses["torch"][0]  # it learns


def test_bf16_mixed_and_plateau_schedule(text_file):
    dm = TextDataModule(str(text_file), batch_size=4, seq_len=16)
    model = tiny_model(dm.vocab, lr_schedule="plateau", cell="gru")
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=2, precision="bf16-mixed")
    trainer.fit(model, dm)
    assert math.isfinite(trainer.callback_metrics["val/loss"].item())


# ---- sampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sampling_on_triton_steps_the_one_launch_cells(text_file, cell, monkeypatch):
    """With a Triton backend, sampling steps the cells' one-launch step op (once per layer and character
    after the prime) and draws what torch's cells draw."""
    import fusedrnn.nn.cell as cell_module

    steps = []
    real_step = cell_module.cell_step
    monkeypatch.setattr(cell_module, "cell_step", lambda *args, **kwargs: steps.append(1) or real_step(*args, **kwargs))
    dm = TextDataModule(str(text_file))
    fused = tiny_model(dm.vocab, cell=cell, backend="triton")
    reference = tiny_model(dm.vocab, cell=cell)
    reference.load_state_dict(fused.state_dict())
    greedy = fused.generate("the ", length=6, top_k=1)
    assert len(steps) == 2 * 5  # two layers, a step for each character after the first drawn
    assert greedy == reference.generate("the ", length=6, top_k=1)


def test_generate_steps_cells_that_share_the_layer_weights(text_file):
    dm = TextDataModule(str(text_file))
    model = tiny_model(dm.vocab, tie_weights=True, embedding_dim=24)
    for k, cell in enumerate(model.net.cells()):
        assert cell.weight_hh is getattr(model.net.rnn, f"weight_hh_l{k}")
    greedy = model.generate("the ", length=30, top_k=1)
    assert len(greedy) == 34 and greedy.startswith("the ")
    assert model.generate("the ", length=30, top_k=1, seed=5) == greedy  # top_k=1 leaves no choice
    # Each greedy character is the argmax of the full-sequence forward: the cells continue the layer.
    ids = model.vocab.encode(greedy)
    with torch.no_grad():
        logits, _ = model.eval()(ids[None, :-1])
    assert torch.equal(logits[0, 3:].argmax(-1), ids[4:])
    assert model.generate("ROMEO:", 50, temperature=0.7, seed=3) == model.generate(
        "ROMEO:", 50, temperature=0.7, seed=3
    )


@pytest.mark.parametrize("options", [dict(zoneout=0.3), dict(layer_norm=True), dict(cell="gru", zoneout=0.3)],
                         ids=["lstm-zoneout", "lstm-layer_norm", "gru-zoneout"])
def test_sampling_with_zoneout_or_layer_norm_steps_the_layer(text_file, options, monkeypatch):
    """The cells have neither option (a step through them gives other numbers than the layer's at evaluation):
    sampling steps the layer, so each greedy character is the argmax of the full-sequence forward at evaluation."""
    dm = TextDataModule(str(text_file))
    model = tiny_model(dm.vocab, **options).eval()
    net = model.net
    assert (net.rnn.zoneout, net.rnn.layer_norm) == (options.get("zoneout", 0.0), options.get("layer_norm", False))
    prime = model.vocab.encode("the ")
    with torch.no_grad():
        _, state = net.rnn(net.embedding(prime[None]))
        x = net.embedding(prime[-1:])
        layer_h, _ = net._layer_step(x, state)
        per_layer = [(state[0][k], state[1][k]) if net.lstm else state[k] for k in range(net.rnn.num_layers)]
        cells_h, _ = net._cells_step(net.cells())(x, per_layer)
    assert (layer_h - cells_h).abs().max() > 1e-3

    def refuse():
        raise AssertionError("sampling built the cells")

    monkeypatch.setattr(net, "cells", refuse)
    greedy = model.generate("the ", length=16, top_k=1)
    ids = model.vocab.encode(greedy)
    with torch.no_grad():
        logits, _ = model(ids[None, :-1])
    assert len(greedy) == 20 and torch.equal(logits[0, 3:].argmax(-1), ids[4:])


def test_sample_from_checkpoint_in_fresh_process(text_file, tmp_path):
    fit = f"fit {TINY_FIT} --trainer.logger false --trainer.max_epochs 1 --trainer.limit_train_batches 5"
    assert charlm_cli.main(command_line(fit, text=text_file, out=tmp_path)) == 0
    (ckpt,) = (tmp_path / "checkpoints").glob("*.ckpt")
    expected = CharLM.from_checkpoint(ckpt).generate("ROMEO:", 80, temperature=0.9, top_k=5, seed=11)
    sample = "sample --ckpt_path {ckpt} --prime ROMEO: --length 80 --temperature 0.9 --top_k 5 --seed 11 --device cpu"
    command = [sys.executable, "-m", "fusedrnn.cli", "charlm", *command_line(sample, ckpt=ckpt)]
    result = subprocess.run(command, env=PYTHON_ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n"


# ---- processes and loggers -----------------------------------------------------------------------


def read_csv_metrics(log_dir: Path) -> list[dict]:
    (path,) = log_dir.rglob("metrics.csv")
    with open(path) as f:
        return list(csv.DictReader(f))


def test_ddp_two_processes_match_one(text_file, tmp_path):
    """Two CPU processes (gloo) each read their own rows; the validation loss, reduced across them,
    equals that of one process reading all the rows of the same checkpoint."""
    csv_logger = "--trainer.logger lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir {out}"
    fit = f"fit {TINY_FIT} {csv_logger} --trainer.max_epochs 1 --trainer.limit_train_batches 4 --data.seq_len 16"
    fit += " --trainer.log_every_n_steps 2"
    ddp = f"{fit} --data.batch_size 2 --trainer.strategy ddp --trainer.devices 2"
    command = [sys.executable, "-m", "fusedrnn.cli", "charlm", *command_line(ddp, text=text_file, out=tmp_path / "ddp")]
    result = subprocess.run(command, env=PYTHON_ENV, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp_rows = read_csv_metrics(tmp_path / "ddp")

    single = f"{fit} --data.batch_size 4"
    assert charlm_cli.main(command_line(single, text=text_file, out=tmp_path / "single")) == 0
    assert set(ddp_rows[0]) == set(read_csv_metrics(tmp_path / "single")[0])
    expected = {"train/loss", "train/bpc", "train/tokens_per_sec", "train/grad_norm", "val/loss", "val/bpc"}
    assert expected <= set(ddp_rows[0])

    (ckpt,) = (tmp_path / "ddp").rglob("*.ckpt")
    validate = f"validate {TINY_FIT} {csv_logger} --data.seq_len 16 --data.batch_size 4 --ckpt_path {{ckpt}}"
    assert charlm_cli.main(command_line(validate, text=text_file, out=tmp_path / "check", ckpt=ckpt)) == 0
    ddp_val = [float(row["val/loss"]) for row in ddp_rows if row["val/loss"]][-1]
    (single_val,) = [float(row["val/loss"]) for row in read_csv_metrics(tmp_path / "check") if row["val/loss"]]
    assert ddp_val == pytest.approx(single_val, rel=1e-5)


def wandb_logged_keys(run_file: Path) -> tuple[set[str], set[str]]:
    """The metric (history) and config keys of an offline run, read from its .wandb file: a LevelDB-style
    log of protobuf records (a 7-byte file header, then 32 KiB blocks of records with 7-byte headers)."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    block, pos, pending, metrics, config = 32768, 7, b"", set(), set()
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's last few bytes are padding
            pos += block - pos % block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if (length == 0 and kind == 0) or pos + 7 + length > len(data):  # the end, or a record still being written
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            record_type = record.WhichOneof("record_type")
            if record_type == "history":
                metrics |= {item.key or "/".join(item.nested_key) for item in record.history.item}
            elif record_type == "config":
                config |= {item.key or "/".join(item.nested_key) for item in record.config.update}
    return metrics, config


def test_wandb_offline_run_with_committed_config(text_file, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    fit = f"fit --config {{config}} {TINY_FIT} --trainer.logger.init_args.save_dir {{out}} --trainer.max_epochs 2"
    fit += " --trainer.limit_train_batches 4 --trainer.log_every_n_steps 2 --data.seq_len 16"
    assert charlm_cli.main(command_line(fit, config=CONFIG, text=text_file, out=tmp_path)) == 0
    # Lightning leaves the run open (the command's process closes it at exit); until it is closed, wandb's
    # service may not have written the records yet: an empty history under load. Close it, as the exit does.
    import wandb

    wandb.finish()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    expected = {"train/loss", "train/bpc", "train/lr", "train/grad_norm", "val/loss", "val/bpc", "val/ppl"}
    # Under load wandb's writer (another process) may still be flushing after finish(): read until it has (30 s).
    deadline = time.monotonic() + 30
    while True:
        metrics, config = wandb_logged_keys(next(run_dir.glob("*.wandb")))
        if expected <= metrics or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert expected <= metrics
    assert any(key.startswith("samples/") for key in metrics)  # the table of generated text
    assert list((run_dir / "files" / "media" / "table").glob("samples_*.table.json"))
    assert {"model", "data", "trainer", "vocab", "hidden_size"} <= config  # the CLI config and the hyperparameters
    assert list((tmp_path / "fusedrnn-charlm").rglob("*.ckpt"))  # checkpoints beside the run, by run id


def test_wandb_mode_follows_environment(monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert WandbLogger(save_dir=str(tmp_path))._wandb_init.get("mode") == "offline"
    # A config that spells out `mode: null` (LightningCLI passes every init argument) is offline too.
    assert WandbLogger(save_dir=str(tmp_path), mode=None)._wandb_init.get("mode") == "offline"
    assert "WANDB_MODE" not in os.environ  # decided per logger, not for the whole process
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert WandbLogger(save_dir=str(tmp_path))._wandb_init.get("mode") is None
    monkeypatch.delenv("WANDB_API_KEY")
    for mode in ("online", "offline", "disabled"):  # the environment wins, and reaches wandb.init itself
        monkeypatch.setenv("WANDB_MODE", mode)
        assert WandbLogger(save_dir=str(tmp_path))._wandb_init.get("mode") == mode
    assert WandbLogger(save_dir=str(tmp_path), offline=True)._wandb_init.get("mode") == "offline"


def test_missing_wandb_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ModuleNotFoundError) as error:
        WandbLogger()
    assert "pip install wandb" in str(error.value) and "--trainer.logger false" in str(error.value)
    assert str(error.value) == MISSING_WANDB


def test_committed_config_parses(capsys):
    assert charlm_cli.main(["fit", "--config", str(CONFIG), "--print_config"]) == 0
    printed = capsys.readouterr().out
    assert "WandbLogger" in printed and "ModelCheckpoint" in printed and "gradient_clip_val: 1.0" in printed


def test_awd_config_reaches_the_fused_layer(capsys):
    awd = CONFIG.with_name("charlm_awd.yaml")
    assert charlm_cli.main(["fit", "--config", str(CONFIG), "--config", str(awd), "--print_config"]) == 0
    assert "weight_drop: 0.3" in capsys.readouterr().out
    model = CharLM(vocab="abc", hidden_size=8, embedding_dim=4, num_layers=2, weight_drop=0.3)
    assert model.net.rnn.weight_drop == 0.3 and CharLM(vocab="abc").net.rnn.weight_drop == 0.0


def test_layer_norm_config_reaches_the_fused_layer(capsys):
    configs = [CONFIG, CONFIG.with_name("charlm_cpu.yaml"), CONFIG.with_name("charlm_layer_norm_cpu.yaml")]
    args = ["fit", *(arg for config in configs for arg in ("--config", str(config))), "--print_config"]
    assert charlm_cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "layer_norm: true" in printed and "max_epochs: 6" in printed and "hidden_size: 256" in printed


def test_zoneout_and_layer_norm_reach_the_fused_layer_from_the_command_line(capsys):
    args = ["fit", "--config", str(CONFIG), "--model.zoneout", "0.1", "--model.layer_norm", "true", "--print_config"]
    assert charlm_cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "zoneout: 0.1" in printed and "layer_norm: true" in printed
    rnn = CharLM(vocab="abc", hidden_size=8, embedding_dim=4, num_layers=2, zoneout=0.1, layer_norm=True).net.rnn
    assert rnn.zoneout == 0.1 and rnn.layer_norm and "ln_hh_weight_l1" in dict(rnn.named_parameters())


# ---- real data -----------------------------------------------------------------------------------


@pytest.mark.skipif(not TINY_SHAKESPEARE.is_file(), reason="tiny-shakespeare is not in ../shared/data")
def test_tiny_shakespeare_beats_unigram_entropy():
    dm = TextDataModule(str(TINY_SHAKESPEARE), batch_size=32, seq_len=64)
    counts = Counter(dm.text)
    unigram = -sum(n / len(dm.text) * math.log(n / len(dm.text)) for n in counts.values())
    pl.seed_everything(0, verbose=False)
    model = tiny_model(dm.vocab, embedding_dim=32, hidden_size=64, num_layers=1, lr_schedule="none")
    limits = dict(max_epochs=1, limit_train_batches=100, limit_val_batches=20)
    trainer = quiet_trainer(**limits, gradient_clip_val=1.0)
    trainer.fit(model, dm)
    assert len(dm.vocab) == 65
    assert trainer.callback_metrics["val/loss"].item() < unigram - 0.5


# ---- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [(None, "does not exist"), (b"", "is empty"), (b"text\0\x01\x02", "NUL bytes"), (b"caf\xe9 au lait", "not UTF-8")],
)
def test_bad_text_files(tmp_path, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    error = FileNotFoundError if content is None else ValueError
    with pytest.raises(error, match=message) as info:
        _ = TextDataModule(str(path)).vocab
    assert str(path) in str(info.value)


def test_text_too_short_for_the_batch(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("to be or not to be")
    dm = TextDataModule(str(path), batch_size=8)
    with pytest.raises(ValueError, match="too few .*short.txt|short.txt.*too few"):
        dm.setup("fit")


def test_download_without_network_says_to_pass_a_path(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(text_data.urllib.request, "urlopen", no_network)
    path = tmp_path / "shakespeare" / "input.txt"
    with pytest.raises(FileNotFoundError, match="--data.path") as info:
        TextDataModule(str(path), download=True).prepare_data()
    assert str(path) in str(info.value) and "name resolution" in str(info.value)
    assert not path.exists() and not list(path.parent.iterdir())  # no partial file left behind
    with pytest.raises(FileNotFoundError, match="--data.download true"):
        _ = TextDataModule(str(path)).vocab


def test_download_writes_the_file(tmp_path, monkeypatch):
    class Response(io.BytesIO):
        headers = {"Content-Length": "14"}

    monkeypatch.setattr(text_data.urllib.request, "urlopen", lambda url, timeout: Response(b"First Citizen:"))
    path = tmp_path / "input.txt"
    assert TextDataModule(str(path), download=True).text == "First Citizen:"


def test_prime_outside_vocabulary(text_file):
    model = tiny_model(TextDataModule(str(text_file)).vocab)
    with pytest.raises(ValueError, match="'Z'"):
        model.generate("ZOUNDS", 10)
    with pytest.raises(ValueError, match="empty"):
        model.generate("", 10)


def test_bad_checkpoints(tmp_path, text_file):
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        CharLM.from_checkpoint(tmp_path / "missing.ckpt")
    not_torch = tmp_path / "notes.ckpt"
    not_torch.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.ckpt"):
        CharLM.from_checkpoint(not_torch)
    other = tmp_path / "tagger.ckpt"
    torch.save({"state_dict": {"crf.transitions": torch.zeros(3, 3)}, "hyper_parameters": {"num_tags": 3}}, other)
    with pytest.raises(ValueError, match="tagger.ckpt.*not a CharLM"):
        CharLM.from_checkpoint(other)
    # The sample command reports it in one line and a non-zero status.
    assert charlm_cli.main(["sample", "--ckpt_path", str(other)]) == 2


def test_bad_model_settings():
    with pytest.raises(ValueError, match="embedding_dim == hidden_size"):
        CharLM("abc", embedding_dim=8, hidden_size=16, tie_weights=True)
    with pytest.raises(ValueError, match="cell"):
        CharLM("abc", cell="rnn")


def test_sample_table_drops_unknown_prime_characters(text_file):
    from fusedrnn.lightning_modules.common.callbacks import TextSampleTable

    model = tiny_model(TextDataModule(str(text_file)).vocab)
    table = TextSampleTable(prime="ZORRO the")
    with pytest.warns(UserWarning, match="ZORRO"):
        table.setup(None, model, "fit")
    assert table._prime == "ORRO the"

