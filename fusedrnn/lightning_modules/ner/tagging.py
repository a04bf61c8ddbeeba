"""Tagging new text with a trained `NERTagger` (`fusedrnn ner tag`): reading untagged input, encoding it as
the model's training data was encoded, and writing the predictions in CoNLL layout.

Two input forms:
- text: one sentence per line, tokens separated by whitespace; a blank line starts a new document (what a
  model with document context pools over);
- conll: the layout of the training files (one token per line, columns separated by whitespace, a blank
  line between sentences, `-DOCSTART-` lines opening documents), with or without a tag column. A model
  trained on feature columns (CoNLL-2003's POS and chunk tags) reads them from the same column indices, so
  it needs this form.

Output: one token per line, the input's columns (text: the word) and the predicted tag, separated by
spaces; a blank line after each sentence; conll input's `-DOCSTART-` lines are copied, each followed by a
blank line, as in CoNLL-2003's files.
"""

from dataclasses import dataclass

from lightning.fabric.utilities.apply_func import move_data_to_device

from fusedrnn.cli_errors import UserError
from fusedrnn.lightning_modules.ner.data import DOCSTART, ConllDataModule, DocumentBatches, Sentence, collate


@dataclass
class Untagged:
    """What was read: the sentences (tags all O, never read) and, in input order, each output piece: a
    sentence's index or a `-DOCSTART-` line to copy."""

    sentences: list[Sentence]
    pieces: list[int | str]


def read_untagged(text: str, conll: bool) -> Untagged:
    """The sentences of `text` in either input form (see the top of this file); a UserError names the line of
    a token line whose column count differs from the first's."""
    sentences, pieces, lines, document, width = [], [], [], 0, None

    def close():
        if lines:
            pieces.append(len(sentences))
            sentences.append(Sentence([f[0] for f in lines], ["O"] * len(lines), list(lines), document))
            lines.clear()

    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not conll:  # a sentence per line
            if fields:
                lines.extend([word] for word in fields)
                close()
            elif sentences and sentences[-1].document == document:
                document += 1
            continue
        if not fields:
            close()
        elif fields[0] == DOCSTART:
            close()
            document += 1
            pieces.append(line.strip())
        else:
            width = width or len(fields)
            if len(fields) != width:
                raise UserError(f"stdin:{number}: expected {width} columns like the first token line, got "
                                f"{len(fields)}")
            lines.append(fields)
    close()
    return Untagged(sentences, pieces)


def data_for(model, saved_options: dict) -> ConllDataModule:
    """A data module that encodes as the one `model` was trained with: its vocabularies (from the model) and
    the encoding options saved in the checkpoint (`saved_options`, the data module's hyperparameters)."""
    if not saved_options:
        raise UserError("the checkpoint does not record its data options (lowercase, normalize_digits, ...): it was "
                        "written before `fusedrnn ner tag` existed; train again to tag with it")
    hp = model.hparams
    vocabularies = {"words": hp.words, "chars": hp.chars, "tags": "\n".join(model.tag_names),
                    "features": hp.features, "scheme": hp.scheme}
    return ConllDataModule.encoder(vocabularies, saved_options)


def check_columns(data: ConllDataModule, untagged: Untagged, conll: bool) -> None:
    """The feature columns the model reads must be in the input (not the word's)."""
    if not data.feature_columns or not untagged.sentences:
        return
    if not conll:
        raise UserError(f"this model reads feature columns {data.feature_columns} (e.g. POS and chunk tags), which "
                        "plain text lacks: give CoNLL input with those columns (--format conll)")
    width = len(untagged.sentences[0].columns[0])
    for k in data.feature_columns:
        if not -width <= k < width or k % width == 0:
            raise UserError(f"this model reads column {k} as a feature, which the input's {width} columns lack "
                            f"(the word is column 0; feature columns {data.feature_columns})")


def predict(model, data: ConllDataModule, sentences: list[Sentence], batch_size: int) -> list[list[str]]:
    """The predicted tags of every sentence, batched by documents (as document context needs)."""
    encoded = data.encode(sentences)
    device = next(model.parameters()).device
    predicted: list[list[str] | None] = [None] * len(sentences)
    model.eval()
    for indices in DocumentBatches([s.document for s in sentences], batch_size, shuffle=False):
        batch = collate([encoded[i] for i in indices])
        tags = model.tag(move_data_to_device(batch, device))
        for i, row in zip(indices, tags):
            predicted[i] = row
    return predicted


def conll_lines(untagged: Untagged, predicted: list[list[str]]) -> str:
    """The output text (see the top of this file)."""
    out = []
    for piece in untagged.pieces:
        if isinstance(piece, str):
            out += [piece, ""]
            continue
        sentence = untagged.sentences[piece]
        out += [" ".join(columns + [tag]) for columns, tag in zip(sentence.columns, predicted[piece])] + [""]
    return "".join(line + "\n" for line in out)
