"""CoNLL-format tagged text: the file reader, vocabularies, and the LightningDataModule for NER.

A file has one token per line with whitespace-separated columns (CoNLL-2003: `word POS chunk NER`), a
blank line between sentences, and `-DOCSTART-` lines that are skipped. The word is the first column;
the tag column is chosen by index. Tags in IOB1 are rewritten to IOB2 on reading (tag_schemes). Each
`-DOCSTART-` line opens a document; a file without them is one document.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Sampler

from fusedrnn.lightning_modules.common.vocab import PAD, UNK, Vocab
from fusedrnn.lightning_modules.ner.tag_schemes import (
    MODEL_SCHEMES,
    check_scheme,
    convert,
    iob1_to_iob2,
    read_as,
    split_tag,
)

# A word's shape, which lowercased word embeddings lose: its id in the batch's `cases` (0 is padding).
CASINGS = ("lower", "title", "upper", "mixed", "number", "has_digit", "other")
_DIGIT = re.compile(r"\d")


def casing(word: str) -> int:
    """The id (1-based, 0 is padding) of the word's entry in CASINGS."""
    if word.isdigit():
        shape = "number"
    elif _DIGIT.search(word):
        shape = "has_digit"
    elif word.islower():
        shape = "lower"
    elif word[0].isupper() and (len(word) == 1 or word[1:].islower()):
        shape = "title"
    elif word.isupper():
        shape = "upper"
    elif any(c.isalpha() for c in word):
        shape = "mixed"
    else:
        shape = "other"
    return 1 + CASINGS.index(shape)


@dataclass
class Sentence:
    words: list[str]
    tags: list[str]
    columns: list[list[str]] = field(default_factory=list)  # every column of each token's line
    document: int = 0  # how many -DOCSTART- lines come before it in its file


def read_conll(path: str | os.PathLike, tag_column: int = -1, scheme: str = "IOB2") -> list[Sentence]:
    """Sentences of a CoNLL file; a ValueError names the file and line of a malformed line or tag."""
    check_scheme(scheme)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CoNLL file {str(path)!r} {'is not a file' if path.exists() else 'does not exist'}")
    sentences, words, tags, lines = [], [], [], []
    columns, document = None, 0

    def close():
        if words:
            held = iob1_to_iob2(tags) if scheme == "IOB1" else list(tags)
            sentences.append(Sentence(list(words), held, list(lines), document))
            words.clear()
            tags.clear()
            lines.clear()

    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                close()
                continue
            if fields[0] == "-DOCSTART-":
                close()
                document += 1
                continue
            if columns is None:
                columns = len(fields)
                if not -columns <= tag_column < columns:
                    raise ValueError(f"{path}:{number}: tag column {tag_column} is outside the {columns} columns")
            if len(fields) != columns:
                raise ValueError(
                    f"{path}:{number}: expected {columns} columns like the first token line, got {len(fields)}"
                )
            try:
                prefix, _ = split_tag(fields[tag_column])
            except ValueError as err:
                raise ValueError(f"{path}:{number}: {err}") from None
            allowed = ("B", "I", "O") if scheme != "BIOES" else ("B", "I", "E", "S", "O")
            if prefix not in allowed:
                raise ValueError(f"{path}:{number}: tag {fields[tag_column]!r} is not in scheme {scheme}")
            words.append(fields[0])
            tags.append(fields[tag_column])
            lines.append(fields)
    close()
    if not sentences:
        raise ValueError(f"CoNLL file {str(path)!r} holds no sentences")
    return sentences


class NERVocab(Vocab):
    """The vocabularies of words, characters and feature values: id 0 pads, id 1 is the unknown token."""

    specials = (PAD, UNK)


def tag_list(sentences: list[Sentence]) -> list[str]:
    """The tag set of the data, "O" first, then by entity type and prefix."""
    tags = {t for s in sentences for t in s.tags} | {"O"}
    return sorted(tags, key=lambda t: (t != "O", split_tag(t)[1], split_tag(t)[0]))


class TaggedBatch(dict):
    """words (B, L), chars (B, L, W), cases (B, L) (`casing` ids), features (B, L, F) (ids of the F
    feature columns), tags (B, L), mask (B, L) bool, forms (B, L): one id per word form and document (the
    same normalised word in the same document has the same id, also when it is unknown); padding is id 0
    everywhere."""


class ConllDataModule(pl.LightningDataModule):
    """NER data from CoNLL files. Vocabularies come from the training file: words (lowercased unless
    `lowercase=False`, every digit written 0 with `normalize_digits`) that occur at least `min_word_freq`
    times, and every character (characters are never normalised).

    Args:
        train_path, val_path, test_path: CoNLL files (test_path optional).
        tag_column: index of the tag column (CoNLL-2003: -1, the NER column).
        feature_columns: indices of further columns given to the model as categorical features, each
            with its vocabulary from the training file (CoNLL-2003: 1 and 2, its POS and chunk tags).
        scheme: the tags' scheme in the files: IOB1, IOB2 or BIOES.
        model_scheme: the scheme the model learns, decodes and is scored in, IOB2 or BIOES (default: the
            files' own, IOB1 read as IOB2). Rewriting keeps every strict span, so span F1 is unchanged;
            BIOES gives the model a tag for a chunk's last token and for a one-token chunk.
        max_word_len: characters kept per word for the character encoder.
        batch_by_document: batches hold whole documents (shuffled by document in training; a document of
            more than batch_size sentences is cut into batch_size pieces), so that a model can pool what it
            reads about a word across the document (NERTagger's document_context). Otherwise sentences are
            shuffled one by one.
    """

    def __init__(
        self,
        train_path: str,
        val_path: str,
        test_path: str | None = None,
        tag_column: int = -1,
        feature_columns: list[int] | None = None,
        scheme: str = "IOB2",
        model_scheme: str | None = None,
        min_word_freq: int = 1,
        lowercase: bool = True,
        normalize_digits: bool = False,
        max_word_len: int = 30,
        batch_size: int = 32,
        batch_by_document: bool = False,
    ):
        super().__init__()
        check_scheme(scheme)
        if model_scheme is not None and model_scheme not in MODEL_SCHEMES:
            raise ValueError(f"model_scheme must be one of {', '.join(MODEL_SCHEMES)}, got {model_scheme!r}")
        self.model_scheme = model_scheme or read_as(scheme)
        self.paths = {"train": train_path, "val": val_path, "test": test_path}
        self.tag_column, self.scheme = tag_column, scheme
        self.feature_columns = list(feature_columns or [])
        self.min_word_freq, self.lowercase, self.max_word_len = min_word_freq, lowercase, max_word_len
        self.normalize_digits = normalize_digits
        self.batch_size, self.batch_by_document = batch_size, batch_by_document
        self._sentences: dict[str, list[Sentence]] = {}
        self._vocabularies = None

    def sentences(self, split: str) -> list[Sentence]:
        if split not in self._sentences:
            if not self.paths[split]:
                raise ValueError(f"no {split} file: pass --data.{split}_path")
            sentences = read_conll(self.paths[split], self.tag_column, self.scheme)
            held_as = read_as(self.scheme)
            if self.model_scheme != held_as:
                for s in sentences:
                    s.tags = convert(s.tags, held_as, self.model_scheme)
            self._sentences[split] = sentences
        return self._sentences[split]

    @property
    def vocabularies(self) -> dict[str, str]:
        """words, chars and tags from the training data, each one newline-separated string (the form
        NERTagger takes), the feature columns' vocabularies (one line per column, entries separated by
        spaces) and the scheme; read on first use (the model needs them when the CLI builds it, before any
        setup). Whitespace never occurs inside an entry: the reader splits on it."""
        if self._vocabularies is None:
            train = self.sentences("train")
            self._check_feature_columns(train, self.paths["train"])
            words = NERVocab.build(([self._norm(w) for w in s.words] for s in train), self.min_word_freq)
            chars = NERVocab.build(w for s in train for w in s.words)  # a word: a sequence of characters
            features = [NERVocab.build([line[k] for line in s.columns] for s in train) for k in self.feature_columns]
            self._vocabularies = {
                "words": words.to_text(),
                "chars": chars.to_text(),
                "tags": "\n".join(tag_list(train)),
                "features": "\n".join(f.to_text(" ") for f in features),
                "scheme": self.model_scheme,
            }
        return self._vocabularies

    def _check_feature_columns(self, sentences: list[Sentence], path: str) -> None:
        width = len(sentences[0].columns[0])
        for k in self.feature_columns:
            if not -width <= k < width:
                raise ValueError(f"feature column {k} is outside the {width} columns of {path!r}")
            if k % width in (0, self.tag_column % width):
                raise ValueError(f"feature column {k} is the word or the tag column")

    def _norm(self, word: str) -> str:
        """The form looked up in the word vocabulary. Digits as 0: "1996" and "1997" share an entry."""
        word = word.lower() if self.lowercase else word
        return _DIGIT.sub("0", word) if self.normalize_digits else word

    def encode(self, sentences: list[Sentence]) -> list[tuple]:
        """Each sentence as (word ids, character ids per word, casing ids, feature ids per word, tag ids,
        form ids): what `collate` takes. Form ids number the (document, normalised word) pairs of
        `sentences` from 1."""
        v = self.vocabularies
        words, chars, tags = NERVocab.from_text(v["words"]), NERVocab.from_text(v["chars"]), Vocab.from_text(v["tags"])
        features = [NERVocab.from_text(line, " ") for line in v["features"].split("\n")] if v["features"] else []
        forms: dict[tuple[int, str], int] = {}
        encoded = []
        for s in sentences:
            unknown = [t for t in s.tags if t not in tags]
            if unknown:
                raise ValueError(f"tag {unknown[0]!r} does not occur in the training data {self.paths['train']!r}")
            encoded.append((
                words.encode(self._norm(w) for w in s.words),
                [chars.encode(w[: self.max_word_len]) for w in s.words],
                [casing(w) for w in s.words],
                [[f.id(line[k]) for f, k in zip(features, self.feature_columns)] for line in s.columns],
                tags.encode(s.tags),
                [forms.setdefault((s.document, self._norm(w)), len(forms) + 1) for w in s.words],
            ))
        return encoded

    def setup(self, stage: str) -> None:
        splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": []}[stage]
        self.data = getattr(self, "data", {})
        for split in splits:
            self._check_feature_columns(self.sentences(split), self.paths[split])
            self.data[split] = self.encode(self.sentences(split))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if self.batch_by_document:
            if self.trainer is not None and self.trainer.world_size > 1:
                raise ValueError("batch_by_document runs in one process only: its batches are not split over processes")
            documents = [s.document for s in self.sentences(split)]
            sampler = DocumentBatches(documents, self.batch_size, shuffle)
            return DataLoader(self.data[split], batch_sampler=sampler, collate_fn=collate)
        return DataLoader(self.data[split], batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


class DocumentBatches(Sampler[list[int]]):
    """Batches of sentence indices that keep documents whole: consecutive documents (in shuffled order
    when `shuffle`) fill a batch up to `batch_size` sentences; a longer document is cut into pieces of
    `batch_size`. `documents[i]` is sentence i's document; a document's sentences are consecutive."""

    def __init__(self, documents: list[int], batch_size: int, shuffle: bool):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.shuffle = batch_size, shuffle
        self.pieces: list[list[int]] = []  # each document's sentences, cut to batch_size
        for i, doc in enumerate(documents):
            if i == 0 or doc != documents[i - 1] or len(self.pieces[-1]) == batch_size:
                self.pieces.append([])
            self.pieces[-1].append(i)

    def _batches(self, order: list[int]) -> list[list[int]]:
        batches = [[]]
        for k in order:
            if len(batches[-1]) + len(self.pieces[k]) > self.batch_size:
                batches.append([])
            batches[-1].extend(self.pieces[k])
        return batches

    def __iter__(self):
        order = torch.randperm(len(self.pieces)).tolist() if self.shuffle else list(range(len(self.pieces)))
        return iter(self._batches(order))

    def __len__(self) -> int:  # in the unshuffled order; a shuffled epoch may differ by a few batches
        return len(self._batches(list(range(len(self.pieces)))))


def collate(items) -> TaggedBatch:
    """Encoded sentences (ConllDataModule.encode) as one zero-padded batch."""
    B = len(items)
    L = max(len(item[0]) for item in items)
    W = max(len(c) for item in items for c in item[1])
    F = len(items[0][3][0])
    words, cases, tags, forms = (torch.zeros(B, L, dtype=torch.long) for _ in range(4))
    chars = torch.zeros(B, L, W, dtype=torch.long)
    features = torch.zeros(B, L, F, dtype=torch.long)
    for b, (w, cs, k, fs, t, f) in enumerate(items):
        words[b, : len(w)] = torch.tensor(w)
        forms[b, : len(f)] = torch.tensor(f)
        cases[b, : len(k)] = torch.tensor(k)
        features[b, : len(fs)] = torch.tensor(fs, dtype=torch.long).view(len(fs), F)
        tags[b, : len(t)] = torch.tensor(t)
        for i, c in enumerate(cs):
            chars[b, i, : len(c)] = torch.tensor(c)
    lengths = torch.tensor([len(item[0]) for item in items])
    mask = torch.arange(L)[None, :] < lengths[:, None]
    return TaggedBatch(words=words, chars=chars, cases=cases, features=features, tags=tags, mask=mask, forms=forms)
