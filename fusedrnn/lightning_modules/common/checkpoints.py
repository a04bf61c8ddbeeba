"""Rebuilding a model from a Lightning checkpoint alone, with clear errors for the wrong file."""

import os

import lightning.pytorch as pl
import torch


def load_model(
    cls: type[pl.LightningModule],
    path: str | os.PathLike,
    required: str,
    what: str,
    backend: str | None = None,
    map_location="cpu",
) -> pl.LightningModule:
    """`cls` built from the hyperparameters saved in `path` and loaded with its weights.

    `required` names a hyperparameter every checkpoint of `cls` has (its vocabulary, say); `what` names
    the model in messages. The data module's saved hyperparameters, if any, come as `saved_data_options`.
    `backend` overrides the saved backend (e.g. "torch" on a CPU). A missing file
    raises FileNotFoundError; anything but a checkpoint of `cls` raises ValueError.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{str(path)!r} is not a PyTorch checkpoint: {err}") from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    saved_class = (hparams or {}).get("_class_path")  # recorded when the LightningCLI built the model
    if not hparams or required not in hparams or (saved_class and not saved_class.endswith(f".{cls.__qualname__}")):
        saved = saved_class or ("none recorded" if hparams else "no hyperparameters")
        raise ValueError(f"{str(path)!r} is not a {what} checkpoint (saved model: {saved})")
    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_")}
    if backend is not None:
        kwargs["backend"] = backend
    try:
        model = cls(**kwargs)
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError, KeyError, ValueError) as err:
        raise ValueError(f"{str(path)!r} does not hold a {what} that this version can load: {err}") from err
    # What the data module saved (its encoding options), for commands that read new data as training did.
    model.saved_data_options = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    return model.to(map_location)
