"""The attention encoder-decoder: tokenizer, vocabularies, parallel data, decoding, training and the CLI.

The data is a synthetic "translation" the tests write themselves: a source sentence of words w0..w11
translates to the same words as v0..v11 in reverse order, followed by a full stop.
"""

import gzip
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")
pytest.importorskip("torchmetrics")

from fusedrnn.lightning_modules.seq2seq import Seq2Seq  # noqa: E402
from fusedrnn.lightning_modules.seq2seq.cli import main  # noqa: E402
from fusedrnn.lightning_modules.seq2seq.data import (  # noqa: E402
    Examples,
    LengthBatches,
    ParallelDataModule,
    Seq2SeqVocab,  # noqa: E402
    detokenize,
    read_lines,
    read_parallel,
    tokenize,
)

REPO = Path(__file__).resolve().parents[1]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
TINY = {"embedding_dim": 16, "hidden_size": 32, "attention_size": 16}


def synthetic_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        words = [f"w{rng.randrange(12)}" for _ in range(rng.randint(2, 7))]
        src.append(" ".join(words))
        tgt.append(" ".join(w.replace("w", "v") for w in reversed(words)) + ".")
    return src, tgt


def write_lines(path: Path, lines: list[str], gz: bool = False) -> str:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    paths = {}
    for split, n, seed in (("train", 480, 0), ("val", 32, 1), ("test", 24, 2)):
        src, tgt = synthetic_pairs(n, seed)
        paths[f"{split}_src"] = write_lines(root / f"{split}.src", src)
        # One gzip side, named without .gz: recognised by its magic bytes.
        paths[f"{split}_tgt"] = write_lines(root / (f"{split}.tgt.gz" if split == "train" else f"{split}.tgt"), tgt, gz=split != "test")
    return SimpleNamespace(root=root, paths=paths)


def cli_data_args(paths: dict) -> list[str]:
    return [arg for key, path in paths.items() for arg in (f"--data.{key}", path)]


class RecordingWandbLogger(pl.loggers.WandbLogger):
    """A W&B logger that runs nothing (mode disabled) and remembers its tables."""

    def __init__(self, **kwargs):
        super().__init__(mode="disabled", **kwargs)
        self.tables = {}

    def log_table(self, key, columns=None, data=None, **kwargs):
        self.tables[key] = (columns, [list(row) for row in data])
        super().log_table(key, columns=columns, data=data, **kwargs)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A small GRU model trained for a few epochs on the synthetic task, and its checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    pl.seed_everything(0)
    data = ParallelDataModule(**corpus.paths, min_freq=1, batch_size=32)
    model = Seq2Seq(data.src_vocab.to_text(), data.tgt_vocab.to_text(), **TINY, dropout=0.0, lr=0.02, backend="torch", num_samples=4)
    logger = RecordingWandbLogger(save_dir=str(root))
    trainer = pl.Trainer(
        max_epochs=5,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(model, data)
    ckpt = root / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    metrics = dict(trainer.callback_metrics)
    trainer.test(model, data, verbose=False)
    metrics.update(trainer.callback_metrics)
    data.setup("validate")
    return SimpleNamespace(model=model.eval(), data=data, ckpt=ckpt, logger=logger, metrics=metrics)


def val_batch(data: ParallelDataModule) -> dict:
    return next(iter(data.val_dataloader()))


# ---- tokenizer and vocabulary ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "A man in a blue shirt, standing on a ladder.",
        "Two dogs (one brown) play in the snow!",
        'He says "hello" to 3.5 people?',
        "Ein Mädchen mit Hut läuft über die Straße.",
        "A man's t-shirt: red; 100% cotton...",
    ],
)
def test_tokenize_detokenize_round_trip(text):
    tokens = tokenize(text)
    assert all(t == t.lower() and t.strip() == t and t for t in tokens)
    assert detokenize(tokens) == text.lower()


def test_tokenize_splits_punctuation():
    assert tokenize("Hello, World!  (It's 3.5 m.)") == ["hello", ",", "world", "!", "(", "it's", "3.5", "m", ".", ")"]
    assert tokenize("   ") == []


def test_vocab_min_freq_unk_and_specials():
    vocab = Seq2SeqVocab.build([["a", "b", "a"], ["c", "a", "b"], ["d"]], min_freq=2)
    assert vocab.tokens == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"]
    assert vocab.encode(["a", "c", "zzz", "b"]) == [4, vocab.unk, vocab.unk, 5]
    assert vocab.decode([vocab.bos, 4, 5, vocab.eos, 4]) == ["a", "b"]
    assert Seq2SeqVocab.build([["a", "b", "a"]], min_freq=1, max_size=1).tokens[4:] == ["a"]
    assert Seq2SeqVocab(vocab.tokens) == vocab == Seq2SeqVocab.from_text(vocab.to_text())
    with pytest.raises(ValueError, match="special tokens"):
        Seq2SeqVocab(["a", "b"])
    with pytest.raises(ValueError, match="min_freq"):
        Seq2SeqVocab.build([["a"]], min_freq=0)


# ---- data ------------------------------------------------------------------------------------------


def test_length_filter_and_vocab_from_training_data(tmp_path):
    src = ["a b", "a b c d e f", "", "b a"]
    tgt = ["x y", "x y z", "x", "y x"]
    paths = {
        "train_src": write_lines(tmp_path / "tr.src", src),
        "train_tgt": write_lines(tmp_path / "tr.tgt", tgt),
        "val_src": write_lines(tmp_path / "va.src", src),
        "val_tgt": write_lines(tmp_path / "va.tgt", tgt),
    }
    data = ParallelDataModule(**paths, test_src=None, test_tgt=None, min_freq=2, max_len=4, batch_size=2)
    assert data.src_vocab.tokens[4:] == ["a", "b"]
    assert data.tgt_vocab.tokens[4:] == ["x", "y"]
    data.setup("fit")
    train = data._splits["train"].examples
    assert train.src_text == ["a b", "b a"]  # too long and empty pairs dropped
    assert train.src[0].tolist() == [4, 5, data.src_vocab.eos]
    assert train.tgt[0].tolist() == [data.tgt_vocab.bos, 4, 5, data.tgt_vocab.eos]
    assert len(data._splits["val"].examples) == 4  # evaluation keeps every pair
    with pytest.raises(ValueError, match="no test files"):
        data.setup("test")


def test_length_batches_bucket_and_shuffle():
    lengths = [random.Random(i).randint(1, 20) for i in range(50)]
    lines = [" ".join([f"s{i}"] + ["a"] * (n - 1)) for i, n in enumerate(lengths)]  # unique sentences
    vocab = Seq2SeqVocab.build([["a"]])
    examples = Examples.encode(lines, lines, vocab, vocab)
    batches = LengthBatches(examples, batch_size=4, shuffle=True, seed=3)
    epochs = [[b["src_text"] for b in batches] for _ in range(2)]
    assert epochs[0] != epochs[1]  # a fresh order every pass
    for epoch in epochs:
        assert sorted(s for batch in epoch for s in batch) == sorted(lines)
        # Batches are slices of the length-sorted corpus: their length ranges do not interleave.
        ranges = sorted((min(len(s.split()) for s in b), max(len(s.split()) for s in b)) for b in epoch)
        assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(ranges, ranges[1:]))
    batch = next(iter(batches))
    assert batch["src"].shape == (len(batch["src_text"]), int(batch["src_lengths"].max()))
    # Two processes: the same number of batches each, no sentence twice.
    shares = [list(LengthBatches(examples, 4, shuffle=True, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == len(batches) // 2
    seen = [s for share in shares for b in share for s in b["src_text"]]
    assert len(seen) == len(set(seen))


def test_gzip_detected_by_magic_bytes(tmp_path):
    path = tmp_path / "plain_name.txt"
    write_lines(path, ["eins", "zwei"], gz=True)
    assert read_lines(path) == ["eins", "zwei"]


# ---- bad input -------------------------------------------------------------------------------------


def test_mismatched_line_counts_name_both_files(tmp_path):
    src = write_lines(tmp_path / "a.de", ["eins", "zwei", "drei"])
    tgt = write_lines(tmp_path / "a.en.gz", ["one", "two"], gz=True)
    with pytest.raises(ValueError, match=r"a\.de.* has 3 lines, .*a\.en\.gz.* has 2"):
        read_parallel(src, tgt)
    data = ParallelDataModule(src, tgt, src, src, None, None)
    with pytest.raises(ValueError, match="differ in length"):
        data.setup("fit")


def test_empty_missing_and_bad_files(tmp_path):
    empty = tmp_path / "empty.en"
    empty.write_text("")
    blank = tmp_path / "blank.en.gz"
    blank.write_bytes(gzip.compress(b"\n\n"))
    not_gzip = tmp_path / "fake.en.gz"
    not_gzip.write_text("hello\n")
    latin1 = tmp_path / "latin1.de"
    latin1.write_bytes("ok\nStra\xdfe\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"empty\.en.* is empty"):
        read_lines(empty)
    with pytest.raises(ValueError, match=r"blank\.en\.gz.* is empty"):
        read_lines(blank)
    with pytest.raises(FileNotFoundError, match=r"missing\.de.* does not exist"):
        read_lines(tmp_path / "missing.de")
    with pytest.raises(ValueError, match="not gzip"):
        read_lines(not_gzip)
    with pytest.raises(ValueError, match=r"latin1\.de.* not UTF-8 .* line 2"):
        read_lines(latin1)


def test_missing_validation_file_fails_at_setup(corpus):
    paths = dict(corpus.paths, val_tgt=str(corpus.root / "nope.en"))
    data = ParallelDataModule(**paths)
    with pytest.raises(FileNotFoundError, match=r"nope\.en"):
        data.setup("fit")


def test_translate_rejects_other_checkpoints(tmp_path, capsys):
    other = tmp_path / "charlm.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"vocab": "abc", "cell": "lstm"}}, other)
    not_ckpt = tmp_path / "notes.ckpt"
    not_ckpt.write_text("not a checkpoint")
    assert main(["translate", "--ckpt_path", str(other)]) == 2
    assert "not a Seq2Seq translation checkpoint" in capsys.readouterr().err
    assert main(["translate", "--ckpt_path", str(not_ckpt)]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err
    assert main(["translate", "--ckpt_path", str(tmp_path / "none.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---- model and decoding ----------------------------------------------------------------------------


def tiny_model(vocab_size: int = 20, **kwargs) -> Seq2Seq:
    torch.manual_seed(0)
    vocab = "\n".join(["<pad>", "<unk>", "<bos>", "<eos>"] + [f"t{i}" for i in range(vocab_size - 4)])
    return Seq2Seq(vocab, vocab, **{**TINY, "backend": "torch", **kwargs}).eval()


@pytest.mark.parametrize(
    "backend, cell, attention", [("torch", "gru", "additive"), ("torch", "lstm", "multiplicative"), ("triton", "lstm", "additive")]
)
def test_attention_ignores_padding(backend, cell, attention):
    model = tiny_model(cell=cell, attention=attention, backend=backend)
    lengths = torch.tensor([3, 7, 5])
    src = torch.randint(4, 20, (3, 7))
    src[torch.arange(7)[None] >= lengths[:, None]] = 0
    scrambled = src.clone()
    padded = torch.arange(7)[None] >= lengths[:, None]
    scrambled[padded] = torch.randint(4, 20, (int(padded.sum()),))
    tgt_in = torch.randint(4, 20, (3, 5))
    tgt_in[:, 0] = model.tgt_vocab.bos
    with torch.no_grad():
        torch.testing.assert_close(model(scrambled, lengths, tgt_in), model(src, lengths, tgt_in), rtol=0, atol=1e-6)
        # One sentence alone, without padding, gets the same logits as in the padded batch.
        alone = model(src[:1, :3], lengths[:1], tgt_in[:1])
        torch.testing.assert_close(alone, model(src, lengths, tgt_in)[:1], rtol=1e-5, atol=1e-5)
    if backend == "triton":  # the fused kernels inside the model give torch's numbers
        reference = tiny_model(cell=cell, attention=attention, backend="torch")
        reference.load_state_dict(model.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(model(src, lengths, tgt_in), reference(src, lengths, tgt_in), rtol=1e-5, atol=1e-5)
    else:
        assert model.greedy(scrambled, lengths) == model.greedy(src, lengths)
        assert model.beam_search(scrambled, lengths, 3) == model.beam_search(src, lengths, 3)


def test_beam_one_equals_greedy(trained):
    model, batch = trained.model, val_batch(trained.data)
    assert model.beam_search(batch["src"], batch["src_lengths"], 1) == model.greedy(batch["src"], batch["src_lengths"])
    # An untrained model, whose translations run to the length limit.
    fresh = tiny_model(cell="lstm")
    src, lengths = torch.randint(4, 20, (4, 6)), torch.tensor([6, 2, 4, 1])
    greedy = fresh.greedy(src, lengths)
    assert fresh.beam_search(src, lengths, 1) == greedy
    assert all(len(h) <= limit for h, limit in zip(greedy, fresh.search.max_lengths(lengths).tolist()))


@pytest.mark.parametrize("which", ["trained", "fresh"])
def test_beam_scores_at_least_greedy(trained, which):
    model = trained.model if which == "trained" else tiny_model(vocab_size=9, max_len_offset=2)
    if which == "trained":
        batch = val_batch(trained.data)
        src, lengths = batch["src"], batch["src_lengths"]
    else:
        src, lengths = torch.randint(4, 9, (6, 4)), torch.tensor([4, 3, 2, 1, 4, 2])
    greedy = model.greedy(src, lengths)
    beam = model.beam_search(src, lengths, 4)
    greedy_scores = model.sequence_scores(src, lengths, greedy)
    beam_scores = model.sequence_scores(src, lengths, beam)
    for g, b in zip(greedy_scores, beam_scores):
        assert b >= g - 1e-5


# ---- training, checkpoint and CLI ------------------------------------------------------------------


def test_training_learns_and_logs(trained):
    metrics = trained.metrics
    assert {"val/loss", "val/bleu", "val/ppl", "test/bleu", "test/loss"} <= metrics.keys()
    assert float(metrics["val/bleu"]) > 20  # the synthetic task is learnable; chance is near 0
    columns, rows = trained.logger.tables["val/samples"]
    assert columns == ["epoch", "step", "source", "reference", "hypothesis"]
    assert len(rows) == 4 * 5  # num_samples per validation epoch, all epochs kept
    assert rows[-1][0] == 4 and all(isinstance(cell, str) for cell in rows[-1][2:])
    assert len(trained.logger.tables["test/samples"][1]) == 4


def test_bleu_matches_sacrebleu(trained, corpus):
    """val/bleu is sacrebleu's corpus BLEU (13a, lowercased) of the detokenized greedy translations."""
    sacrebleu = pytest.importorskip("sacrebleu")
    sources, references = read_parallel(corpus.paths["val_src"], corpus.paths["val_tgt"])
    hypotheses = trained.model.translate(sources, beam_size=1, batch_size=5)  # other batches than validation's
    expected = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="13a", lowercase=True).score
    assert float(trained.metrics["val/bleu"]) == pytest.approx(expected, abs=1e-3)


def test_checkpoint_translates_in_a_fresh_process(trained):
    lines = ["w1 w2 w3", "w5 w0 w11 w7", "", "w4 unknownword w4"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "fusedrnn.lightning_modules.seq2seq_cli", "translate", "--ckpt_path", str(trained.ckpt), "--beam", "3"]
    result = subprocess.run(command, input="\n".join(lines) + "\n", capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == trained.model.translate(lines, beam_size=3)
    loaded = Seq2Seq.from_checkpoint(trained.ckpt)
    assert loaded.src_vocab == trained.data.src_vocab and loaded.tgt_vocab == trained.data.tgt_vocab


@pytest.mark.parametrize("backend, cell, attention", [("torch", "lstm", "multiplicative"), ("triton", "gru", "additive")])
def test_fast_dev_run(corpus, tmp_path, backend, cell, attention):
    args = ["fit", *cli_data_args(corpus.paths), "--data.batch_size", "8", "--data.min_freq", "1"]
    args += [f"--model.{key}={value}" for key, value in {**TINY, "cell": cell, "attention": attention, "backend": backend, "val_beam_size": 2}.items()]
    args += ["--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]
    assert main(args) == 0


def test_cli_usage(capsys):
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "translate" in capsys.readouterr().out


@pytest.mark.skipif(not MULTI30K.is_dir(), reason="Multi30k is not at ../shared/data/multi30k")
def test_multi30k_smoke(tmp_path):
    """The real config on the first few hundred Multi30k pairs: a few training batches, then test BLEU."""
    paths = {}
    for split, key in (("train", "train"), ("val", "val"), ("test_2016_flickr", "test")):
        for side, lang in (("src", "de"), ("tgt", "en")):
            lines = read_lines(MULTI30K / f"{split}.{lang}.gz")[: 300 if split == "train" else 40]
            paths[f"{key}_{side}"] = write_lines(tmp_path / f"{split}.{lang}.gz", lines, gz=True)
    common = ["--config", str(REPO / "configs" / "seq2seq.yaml"), *cli_data_args(paths), "--data.batch_size", "32"]
    common += [f"--model.{key}={value}" for key, value in {**TINY, "backend": "torch", "beam_size": 2}.items()]
    common += ["--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false"]
    fit = ["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "1"]
    assert main(fit) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    assert main(["test", *common, "--ckpt_path", str(ckpt), "--trainer.limit_test_batches", "1"]) == 0
