"""The grad suite: each provider's outputs and every gradient against a float64 reference.

The reference is torch.nn's own module in float64 (cuDNN on CUDA, which supports double), run on the
same weights, inputs and upstream gradients, each first rounded to the case's dtype so that only the
provider's arithmetic is measured. Errors are normwise (fusedrnn.testing.compare). A tensor passes at
the dtype's tolerance, or, since error grows with sequence length and hidden size, when its relative
error is at most RATIO_ALLOWED times the baseline's (torch.nn in the same dtype) on the same tensor.
"""

import copy
import math
from dataclasses import dataclass

import torch

from fusedrnn.bench.grid import Case
from fusedrnn.bench.providers import Runner, module_runner
from fusedrnn.bench.workload import Inputs, output_names, state_names
from fusedrnn.testing import ErrorReport, compare

RATIO_ALLOWED = 4.0


@dataclass
class GradCheck:
    errors: dict[str, ErrorReport]  # per output or gradient, e.g. "output", "grad weight_hh_l0"
    failures: list[str]  # names of the tensors that failed

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def max_abs(self) -> float:
        return max(e.max_abs for e in self.errors.values())

    @property
    def rel(self) -> float:
        return max(e.max_rel for e in self.errors.values())

    @property
    def worst(self) -> str:
        return max(self.errors, key=lambda name: self.errors[name].max_rel)

    def describe_failure(self) -> str:
        shown = ", ".join(f"{name} (rel {self.errors[name].max_rel:.2g})" for name in self.failures[:3])
        more = f" and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        return f"grad check failed: {shown}{more}"


def outputs_and_gradients(runner: Runner, inputs: Inputs, case: Case) -> dict[str, torch.Tensor]:
    """Outputs, and gradients of sum(output * upstream) over all outputs with respect to the input,
    the initial states and every parameter; fresh leaves, so nothing accumulates between calls."""
    x = inputs.x.detach().requires_grad_()
    states = tuple(s.detach().requires_grad_() for s in inputs.states)
    outputs = runner.forward(x, states)
    names = output_names(case)
    if len(outputs) != len(names):
        raise RuntimeError(f"returned {len(outputs)} outputs, expected {len(names)} ({', '.join(names)})")
    leaves = [x, *states, *runner.params.values()]
    grads = torch.autograd.grad(outputs, leaves, inputs.upstream, allow_unused=True)
    leaf_names = ["input", *state_names(case), *runner.params]
    results = dict(zip(names, outputs))
    for name, leaf, grad in zip(leaf_names, leaves, grads):
        results[f"grad {name}"] = grad if grad is not None else torch.zeros_like(leaf)
    return {name: t.detach() for name, t in results.items()}


def reference_results(case: Case, template: torch.nn.Module, inputs: Inputs) -> dict[str, torch.Tensor]:
    reference = module_runner(copy.deepcopy(template).to(torch.float64))
    return outputs_and_gradients(reference, inputs.to(torch.float64), case)


def measure(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], dtype: torch.dtype):
    """Error of every expected tensor; one the provider did not produce counts as infinitely wrong."""
    missing = ErrorReport(math.inf, math.inf, False)
    return {name: compare(actual[name], want, dtype) if name in actual else missing for name, want in expected.items()}


def judge(errors: dict[str, ErrorReport], baseline: dict[str, ErrorReport] | None) -> GradCheck:
    """Pass/fail per tensor: within the dtype's tolerance, or within RATIO_ALLOWED x the baseline's error."""
    failures = []
    for name, report in errors.items():
        if report.ok:
            continue
        yardstick = baseline.get(name) if baseline else None
        if yardstick is not None and math.isfinite(yardstick.max_rel):
            if report.max_rel <= RATIO_ALLOWED * yardstick.max_rel:
                continue
        failures.append(name)
    return GradCheck(errors, failures)
