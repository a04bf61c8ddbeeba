"""Old path, kept for the configs, checkpoints and code that use it: the code is in `ner/tag_schemes.py`."""

from fusedrnn.lightning_modules.ner.tag_schemes import (  # noqa: F401
    MODEL_SCHEMES,
    SCHEMES,
    allowed_transition,
    check_scheme,
    convert,
    iob1_to_iob2,
    read_as,
    spans,
    split_tag,
)
