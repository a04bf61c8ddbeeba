"""Parallel text for translation: the tokenizer, the vocabularies, the corpus reader and the LightningDataModule.

A corpus split is two files, source and target, one sentence per line, line k of one translating line k
of the other; plain UTF-8 or gzip. Training batches hold sentences of similar source length (less
padding), in a fresh order every epoch.
"""

import gzip
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, IterableDataset

from fusedrnn.lightning_modules.common.vocab import BOS, EOS, PAD, UNK, Vocab

SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3 in every vocabulary

# A token is a number with inner separators (3.5, 1,000), a word with inner apostrophes or hyphens
# (man's, t-shirt), or any other single non-space character (punctuation, symbols).
_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|\w+(?:['’-]\w+)*|[^\w\s]")
# Detokenizing: no space before these, no space after those.
_NO_SPACE_BEFORE = set(".,!?;:%)]}'’”»…")
_NO_SPACE_AFTER = set("([{‘“«¿¡$#")


def tokenize(text: str) -> list[str]:
    """Lowercase `text` and split it into words, numbers and single punctuation marks.

    >>> tokenize("A man's hat, 3.5 m high.")
    ['a', "man's", 'hat', ',', '3.5', 'm', 'high', '.']
    """
    return _TOKEN.findall(text.lower())


def detokenize(tokens: Iterable[str]) -> str:
    """Join tokens into text, the inverse of `tokenize` for ordinary punctuation: closing marks attach to
    the word before, opening marks to the word after, and straight double quotes alternate opening and
    closing. `detokenize(tokenize(s)) == s.lower()` for text spaced the usual way.
    """
    text = ""
    glue = True  # no space before the next token
    quote_open = False
    for token in tokens:
        if token == '"':
            attach = quote_open  # a closing quote attaches to the word before
            quote_open = not quote_open
            text += token if (attach or glue) else " " + token
            glue = quote_open  # an opening quote attaches to the word after
            continue
        text += token if (glue or token in _NO_SPACE_BEFORE) else " " + token
        glue = token in _NO_SPACE_AFTER
    return text


class Seq2SeqVocab(Vocab):
    """Token <-> id for translation: ids 0-3 are the special tokens pad, unk, bos, eos."""

    specials = SPECIALS


# ---- reading corpora -------------------------------------------------------------------------------


def read_lines(path: str | Path) -> list[str]:
    """The lines of a plain or gzip UTF-8 text file (gzip recognised by its magic bytes), without line
    ends. Missing, empty, undecodable or non-UTF-8 files raise errors that name the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {str(path)!r} {'is not a file' if path.exists() else 'does not exist'}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"corpus file {str(path)!r} is a damaged gzip file: {err}") from err
    elif path.suffix == ".gz":
        raise ValueError(f"corpus file {str(path)!r} is named .gz but is not gzip-compressed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(f"corpus file {str(path)!r} is not UTF-8 text: undecodable byte on line {line}") from err
    if not text.strip():
        raise ValueError(f"corpus file {str(path)!r} is empty")
    # Split on newlines only: str.splitlines() also breaks at characters such as U+2028 that may sit
    # inside a sentence, and would shift every later line against the other side of the corpus.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> tuple[list[str], list[str]]:
    """Source and target lines of a parallel corpus; a ValueError names both files when their line
    counts differ."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(
            f"parallel corpus files differ in length: {str(src_path)!r} has {len(src)} lines, "
            f"{str(tgt_path)!r} has {len(tgt)}; line k of one must translate line k of the other"
        )
    return src, tgt


@dataclass
class Examples:
    """A tokenized, encoded corpus split: per sentence pair the source ids (ending in eos), the target ids
    (bos ... eos), and the raw lines (the target line is the BLEU reference)."""

    src: list[torch.Tensor]
    tgt: list[torch.Tensor]
    src_text: list[str]
    tgt_text: list[str]

    @classmethod
    def encode(cls, src_lines: list[str], tgt_lines: list[str], src_vocab: Vocab, tgt_vocab: Vocab) -> "Examples":
        src = [torch.tensor(src_vocab.encode(tokenize(s)) + [src_vocab.eos]) for s in src_lines]
        tgt = [torch.tensor([tgt_vocab.bos] + tgt_vocab.encode(tokenize(t)) + [tgt_vocab.eos]) for t in tgt_lines]
        return cls(src, tgt, list(src_lines), list(tgt_lines))

    def __len__(self) -> int:
        return len(self.src)

    def subset(self, keep: Sequence[int]) -> "Examples":
        return Examples(*([values[i] for i in keep] for values in (self.src, self.tgt, self.src_text, self.tgt_text)))

    def batch(self, indices: Sequence[int], pad: int = 0) -> dict:
        """A padded batch: src (B, S), src_lengths (B,), tgt (B, T), and the raw lines src_text, tgt_text."""
        return {
            "src": pad_sequence([self.src[i] for i in indices], batch_first=True, padding_value=pad),
            "src_lengths": torch.tensor([len(self.src[i]) for i in indices]),
            "tgt": pad_sequence([self.tgt[i] for i in indices], batch_first=True, padding_value=pad),
            "src_text": [self.src_text[i] for i in indices],
            "tgt_text": [self.tgt_text[i] for i in indices],
        }


class LengthBatches(IterableDataset):
    """Whole batches of `batch_size` sentence pairs with similar source lengths.

    With `shuffle`, each pass ties are broken at random, the length-sorted list is cut into batches and
    the batches come in random order (seeded by `seed` and the pass number, so every process of a DDP run
    draws the same order and then takes its own share: batch k goes to process k % world_size, and each
    process gets the same count). Without `shuffle` the order is fixed and batches are shared the same way
    without trimming. Iterable so that Lightning puts no sampler in front of it.
    """

    def __init__(
        self,
        examples: Examples,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.examples = examples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        n_batches = math.ceil(len(examples) / batch_size)
        if shuffle:
            self._per_rank = n_batches // world_size
            if self._per_rank == 0:
                raise ValueError(
                    f"{len(examples)} sentence pairs make {n_batches} batches of {batch_size}, too few for "
                    f"{world_size} processes: use a smaller batch_size"
                )
        else:
            self._per_rank = len(range(rank, n_batches, world_size))

    def __len__(self) -> int:
        return self._per_rank

    def _batches(self) -> list[list[int]]:
        lengths = torch.tensor([len(s) for s in self.examples.src])
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            self.epoch += 1
            order = torch.randperm(len(lengths), generator=generator)
            order = order[torch.sort(lengths[order], stable=True).indices]  # sorted, random among equals
        else:
            order = torch.sort(lengths, stable=True).indices
        batches = list(torch.split(order, self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
            batches = batches[: self._per_rank * self.world_size]
        return [b.tolist() for b in batches[self.rank :: self.world_size]]

    def __iter__(self):
        for indices in self._batches():
            yield self.examples.batch(indices)


class ParallelDataModule(pl.LightningDataModule):
    """A parallel corpus (train, validation and optionally test file pairs) for translation.

    The vocabularies come from the training files: tokens seen at least `min_freq` times, the rest map to
    unk. Training keeps the pairs whose sides both have 1 to `max_len` tokens; validation and test keep
    every pair. Sources end in eos, targets are bos ... eos.

    Args:
        train_src, train_tgt, val_src, val_tgt, test_src, test_tgt: the corpus files (plain or gzip).
        min_freq: the fewest occurrences in training for a token to enter a vocabulary.
        max_vocab: the most tokens per vocabulary besides the specials (None: no limit).
        max_len: the longest sentence, in tokens, kept for training.
        batch_size: sentence pairs per training batch and process.
        eval_batch_size: sentence pairs per validation and test batch (default: batch_size).
        seed: seeds the order of training batches (every process draws the same).
    """

    def __init__(
        self,
        train_src: str = "data/multi30k/train.de.gz",
        train_tgt: str = "data/multi30k/train.en.gz",
        val_src: str = "data/multi30k/val.de.gz",
        val_tgt: str = "data/multi30k/val.en.gz",
        test_src: str | None = "data/multi30k/test_2016_flickr.de.gz",
        test_tgt: str | None = "data/multi30k/test_2016_flickr.en.gz",
        min_freq: int = 2,
        max_vocab: int | None = None,
        max_len: int = 50,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError(f"batch sizes must be positive, got {batch_size} and {eval_batch_size}")
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}")
        if (test_src is None) != (test_tgt is None):
            raise ValueError("give both test_src and test_tgt, or neither")
        self.save_hyperparameters()
        self.paths = {"train": (train_src, train_tgt), "val": (val_src, val_tgt), "test": (test_src, test_tgt)}
        self.min_freq = min_freq
        self.max_vocab = max_vocab
        self.max_len = max_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        self._train_lines: tuple[list[str], list[str]] | None = None
        self._vocabs: tuple[Seq2SeqVocab, Seq2SeqVocab] | None = None
        self._splits: dict[str, LengthBatches] = {}

    @property
    def train_lines(self) -> tuple[list[str], list[str]]:
        # Read on first use: the CLI needs the vocabularies to build the model, before any setup().
        if self._train_lines is None:
            self._train_lines = read_parallel(*self.paths["train"])
        return self._train_lines

    def _build_vocabs(self) -> tuple[Seq2SeqVocab, Seq2SeqVocab]:
        if self._vocabs is None:
            build = Seq2SeqVocab.build
            self._vocabs = tuple(build(map(tokenize, side), self.min_freq, self.max_vocab) for side in self.train_lines)
        return self._vocabs

    @property
    def src_vocab(self) -> Seq2SeqVocab:
        return self._build_vocabs()[0]

    @property
    def tgt_vocab(self) -> Seq2SeqVocab:
        return self._build_vocabs()[1]

    def _examples(self, split: str) -> Examples:
        src_path, tgt_path = self.paths[split]
        if src_path is None:
            raise ValueError(f"no {split} files: pass --data.{split}_src and --data.{split}_tgt")
        lines = self.train_lines if split == "train" else read_parallel(src_path, tgt_path)
        examples = Examples.encode(*lines, self.src_vocab, self.tgt_vocab)
        if split != "train":
            return examples
        # Lengths without eos/bos: what the user counts as tokens.
        keep = [
            i
            for i, (s, t) in enumerate(zip(examples.src, examples.tgt))
            if 1 <= len(s) - 1 <= self.max_len and 1 <= len(t) - 2 <= self.max_len
        ]
        if not keep:
            raise ValueError(
                f"no training pair of {str(src_path)!r} and {str(tgt_path)!r} has 1 to max_len={self.max_len} "
                "tokens on both sides"
            )
        return examples.subset(keep)

    def setup(self, stage: str) -> None:
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}[stage]
        for split in wanted:
            shuffle = split == "train"
            self._splits[split] = LengthBatches(
                self._examples(split),
                self.batch_size if shuffle else self.eval_batch_size,
                shuffle=shuffle,
                seed=self.seed,
                rank=rank,
                world_size=world_size,
            )

    def _loader(self, split: str) -> DataLoader:
        # batch_size=None: the dataset yields whole batches (already tensors, so no worker processes).
        return DataLoader(self._splits[split], batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def state_dict(self) -> dict:
        return {"src_vocab": self.src_vocab.tokens, "tgt_vocab": self.tgt_vocab.tokens}

    def load_state_dict(self, state_dict: dict) -> None:
        for side in ("src", "tgt"):
            saved, built = Seq2SeqVocab(state_dict[f"{side}_vocab"]), getattr(self, f"{side}_vocab")
            if saved != built:
                raise ValueError(
                    f"the checkpoint's {side} vocabulary ({len(saved)} tokens) differs from the one built from "
                    f"{str(self.paths['train'][side == 'tgt'])!r} ({len(built)}): use the training files and "
                    "min_freq/max_vocab the model was trained with"
                )
