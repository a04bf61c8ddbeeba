"""CoNLL-format tagged text: the file reader, vocabularies, and the LightningDataModule for NER.

A file has one token per line with columns separated by tabs or spaces (CoNLL-2003: `word POS chunk NER`;
many others just `word<TAB>tag`), a blank line between sentences, and `-DOCSTART-` lines that are skipped.
The word is the first column; the tag column is chosen by index. Tags in IOB1 are rewritten to IOB2 on
reading (tag_schemes). Each `-DOCSTART-` line opens a document; a file without them is one document.

Tags are read in any case: the prefix is upper-cased (`b-person` is `B-person`, `o` is `O`), the entity
type is kept as written. A token that carries several comma-joined tags (`B-person,B-location`, as some
data sets give ambiguous tokens) gets one of them by this rule: the first that continues the entity open
at the previous token (I-X or E-X after B-X or I-X of the same type X), else the first listed; a warning
says how many tokens of the file had several.
"""

import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Sampler

from fusedrnn.cli_errors import UserError
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
DOCSTART = "-DOCSTART-"  # a line that opens a document
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


def normalize_tag(tag: str) -> str:
    """The tag with its prefix upper-cased ("b-person" -> "B-person", "o" -> "O"); the type is kept."""
    prefix, sep, kind = tag.partition("-")
    return prefix.upper() + sep + kind if sep else tag.upper() if tag.upper() == "O" else tag


def choose_tag(candidates: list[str], previous: str | None) -> str:
    """One of a token's several tags (normalised): the first that continues the entity open at the previous
    token (I-X or E-X after B-X or I-X), else the first listed."""
    if previous is not None and previous != "O":
        before, kind = previous.partition("-")[::2]
        if before in ("B", "I"):
            for tag in candidates:
                prefix, _, other = tag.partition("-")
                if prefix in ("I", "E") and other == kind:
                    return tag
    return candidates[0]


def read_conll(path: str | os.PathLike, tag_column: int = -1, scheme: str = "IOB2") -> list[Sentence]:
    """Sentences of a CoNLL-style file (see the module docstring for the rules); a ValueError (UserError)
    names the file and line of a malformed line or tag."""
    check_scheme(scheme)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CoNLL file {str(path)!r} {'is not a file' if path.exists() else 'does not exist'}")
    sentences, words, tags, lines = [], [], [], []
    columns, document = None, 0
    several: list[int] = []  # the lines of tokens with several tags
    allowed = ("B", "I", "O") if scheme != "BIOES" else ("B", "I", "E", "S", "O")

    def close():
        if words:
            held = iob1_to_iob2(tags) if scheme == "IOB1" else list(tags)
            sentences.append(Sentence(list(words), held, list(lines), document))
            words.clear()
            tags.clear()
            lines.clear()

    def tag_of(text: str, number: int) -> str:
        candidates = [normalize_tag(t) for t in text.split(",") if t]
        for tag in candidates or [text]:
            try:
                prefix, _ = split_tag(tag)
            except ValueError as err:
                raise UserError(f"{path}:{number}: {err}") from None
            if prefix not in allowed:
                raise UserError(f"{path}:{number}: tag {text!r} is not in scheme {scheme}")
        if len(candidates) > 1:
            several.append(number)
        return choose_tag(candidates, tags[-1] if tags else None)

    number = 0
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    close()
                    continue
                if fields[0] == DOCSTART:
                    close()
                    document += 1
                    continue
                if columns is None:
                    columns = len(fields)
                    if not -columns <= tag_column < columns:
                        raise UserError(f"{path}:{number}: tag column {tag_column} is outside the {columns} columns")
                if len(fields) != columns:
                    raise UserError(
                        f"{path}:{number}: expected {columns} columns like the first token line, got {len(fields)}"
                    )
                tags.append(tag_of(fields[tag_column], number))
                words.append(fields[0])
                lines.append(fields)
    except UnicodeDecodeError as err:
        raise UserError(f"CoNLL file {str(path)!r} is not UTF-8 text: undecodable byte after line {number}") from err
    close()
    if not sentences:
        raise UserError(f"CoNLL file {str(path)!r} holds no sentences")
    if several:
        warnings.warn(
            f"{path}: {len(several)} token{'s carry' if len(several) > 1 else ' carries'} several comma-joined tags "
            f"(first on line {several[0]}); each gets one: the first that continues the entity before it, else the "
            "first listed",
            stacklevel=2,
        )
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
    everywhere. When a sentence of the batch has a tag the training data lacks (its id in `tags` is O's),
    gold (B lists of tag strings, None for the other sentences) holds its true tags, for span F1."""


class ConllDataModule(pl.LightningDataModule):
    """NER data from CoNLL files. Vocabularies come from the training file: words (lowercased unless
    `lowercase=False`, every digit written 0 with `normalize_digits`) that occur at least `min_word_freq`
    times, and every character (characters are never normalised).

    Args:
        train_path, val_path, test_path: CoNLL files (test_path optional).
        tag_column: index of the tag column (CoNLL-2003: -1, the NER column).
        feature_columns: indices of further columns given to the model as categorical features, each
            with its vocabulary from the training file (CoNLL-2003: 1 and 2, its POS and chunk tags). A
            training file with no columns but the word and the tag has none: they are ignored, with a warning
            (so a config written for CoNLL-2003 reads `word<TAB>tag` files too).
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
        # Saved in checkpoints: how words are encoded, which `fusedrnn ner tag` repeats on new text.
        self.save_hyperparameters("feature_columns", "lowercase", "normalize_digits", "max_word_len")
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

    @classmethod
    def encoder(cls, vocabularies: dict[str, str], options: dict) -> "ConllDataModule":
        """A data module without files that encodes new sentences (`encode`) as one with these training
        vocabularies (the form `vocabularies` returns) and encoding options (the hyperparameters it saves in
        checkpoints) did. Feature columns count only where the vocabularies have features: training drops
        them for a file without any."""
        data = cls("", "", **options)
        if not vocabularies["features"]:
            data.feature_columns = []
        data._vocabularies = dict(vocabularies)
        return data

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
            if self.feature_columns and len(train[0].columns[0]) == 2:
                warnings.warn(f"{self.paths['train']!r} has no feature columns, only the word and the tag: "
                              f"feature_columns {self.feature_columns} are ignored", stacklevel=2)
                self.feature_columns = []
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
                raise UserError(f"feature column {k} is outside the {width} columns of {path!r} "
                                "(--data.feature_columns [] uses none)")
            if k % width in (0, self.tag_column % width):
                raise UserError(
                    f"feature column {k} is the word or the tag column (--data.feature_columns [] uses none)"
                )

    def _norm(self, word: str) -> str:
        """The form looked up in the word vocabulary. Digits as 0: "1996" and "1997" share an entry."""
        word = word.lower() if self.lowercase else word
        return _DIGIT.sub("0", word) if self.normalize_digits else word

    def encode(self, sentences: list[Sentence], source: str | None = None) -> list[tuple]:
        """Each sentence as (word ids, character ids per word, casing ids, feature ids per word, tag ids,
        form ids, gold tags): what `collate` takes. Form ids number the (document, normalised word) pairs
        of `sentences` from 1. A tag the training data lacks cannot be predicted, but it is still scored:
        its tag id is O's (in the loss and the confusion table), and the sentence's gold tags (None when
        every tag is known) keep it for span F1, where its spans count as entities the model missed. A
        warning names each such tag type and how many tokens of `source` (the file) carry it."""
        v = self.vocabularies
        words, chars, tags = NERVocab.from_text(v["words"]), NERVocab.from_text(v["chars"]), Vocab.from_text(v["tags"])
        features = [NERVocab.from_text(line, " ") for line in v["features"].split("\n")] if v["features"] else []
        forms: dict[tuple[int, str], int] = {}
        encoded, unseen = [], Counter()
        known_types = {split_tag(t)[1] for t in tags.tokens}
        outside = tags.id("O")
        for s in sentences:
            unknown = [t for t in s.tags if t not in tags]
            unseen.update(("tag", t) if split_tag(t)[1] in known_types else ("tag type", split_tag(t)[1])
                          for t in unknown)
            encoded.append((
                words.encode(self._norm(w) for w in s.words),
                [chars.encode(w[: self.max_word_len]) for w in s.words],
                [casing(w) for w in s.words],
                [[f.id(line[k]) for f, k in zip(features, self.feature_columns)] for line in s.columns],
                [tags.id(t) if t in tags else outside for t in s.tags],
                [forms.setdefault((s.document, self._norm(w)), len(forms) + 1) for w in s.words],
                list(s.tags) if unknown else None,
            ))
        for (what, name), count in unseen.items():
            warnings.warn(
                f"{what} {name!r} does not occur in the training data {self.paths['train']!r}: {count} token"
                f"{'s' if count > 1 else ''} of {source or 'the data'!r} carr{'y' if count > 1 else 'ies'} it; "
                "the model cannot predict it, so its spans count as gold entities it missed (in the loss and the "
                "confusion table those tokens read as O)",
                stacklevel=2,
            )
        return encoded

    def setup(self, stage: str) -> None:
        splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": []}[stage]
        self.data = getattr(self, "data", {})
        for split in splits:
            self._check_feature_columns(self.sentences(split), self.paths[split])
            self.data[split] = self.encode(self.sentences(split), self.paths[split])

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
    for b, (w, cs, k, fs, t, f, *_) in enumerate(items):
        words[b, : len(w)] = torch.tensor(w)
        forms[b, : len(f)] = torch.tensor(f)
        cases[b, : len(k)] = torch.tensor(k)
        features[b, : len(fs)] = torch.tensor(fs, dtype=torch.long).view(len(fs), F)
        tags[b, : len(t)] = torch.tensor(t)
        for i, c in enumerate(cs):
            chars[b, i, : len(c)] = torch.tensor(c)
    lengths = torch.tensor([len(item[0]) for item in items])
    mask = torch.arange(L)[None, :] < lengths[:, None]
    batch = TaggedBatch(words=words, chars=chars, cases=cases, features=features, tags=tags, mask=mask, forms=forms)
    gold = [item[6] if len(item) > 6 else None for item in items]
    if any(g is not None for g in gold):
        batch["gold"] = gold
    return batch
