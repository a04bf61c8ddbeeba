"""Argument checks the fused path adds to torch's own, for devices and dtypes (torch's types and wording)."""

from collections.abc import Iterable

import torch


def check_devices_and_dtypes(input: torch.Tensor, states: Iterable[torch.Tensor], weight: torch.Tensor) -> None:
    if input.device != weight.device:
        raise RuntimeError(
            "Input and parameter tensors are not at the same device, found input tensor at "
            f"{input.device} and parameter tensor at {weight.device}"
        )
    for k, state in enumerate(states):
        if state.device != input.device:
            raise RuntimeError(
                "Input and hidden tensors are not at the same device, found input tensor at "
                f"{input.device} and hidden tensor at {state.device}"
            )
        if state.dtype != input.dtype and not torch.is_autocast_enabled(input.device.type):
            raise RuntimeError(
                f"hidden[{k}] dtype ({state.dtype}) does not match input dtype ({input.dtype}); "
                f"convert it with .to({input.dtype})"
            )
    if input.dtype != weight.dtype and not torch.is_autocast_enabled(input.device.type):
        raise RuntimeError(
            f"input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). Convert input: "
            f"input.to({weight.dtype}), or convert model: model.to({input.dtype})"
        )
