"""Running the suites: every case with every provider in one process, so that ratios come from one run.

Per case: build each provider from the shared weights, check outputs and gradients against the float64
reference (grad), then time only the providers that passed (speed, cell) and measure their peak memory
(memory). A provider that fails to build or run is noted and the run goes on.
"""

import gc
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fusedrnn.bench.gradcheck import GradCheck, judge, measure, outputs_and_gradients, reference_results
from fusedrnn.bench.grid import Case
from fusedrnn.bench.providers import Provider, Runner, baseline_name
from fusedrnn.bench.results import FORWARD, FORWARD_BACKWARD, STEP, STEP_FORWARD_BACKWARD, new_row
from fusedrnn.bench.timing import Timing, peak_memory_mb, time_call
from fusedrnn.bench.workload import Inputs, draw_inputs, make_template

SUITES = ("speed", "memory", "grad", "cell")
ROTATION = 3  # pre-drawn input sets that timed calls rotate over
INTERPRETER_NOTE = "ran in Triton's interpreter: its times measure the interpreter, not the kernels"


@dataclass
class RunConfig:
    device: torch.device
    grid_name: str
    cases: list[Case]
    suites: tuple[str, ...]
    providers: list[Provider]
    skipped: dict[str, str]  # provider -> why it does not run at all
    warmup: int
    repeats: int
    out_dir: Path
    wandb: bool = False
    dry_run: bool = False
    threads: int = 1  # torch's CPU threads while running


@dataclass
class Notes:
    """Why a provider sat out some cases, and what went wrong where: listed in the markdown."""

    by_provider: dict[str, list[str]] = field(default_factory=dict)

    def add(self, provider: str, text: str) -> None:
        texts = self.by_provider.setdefault(provider, [])
        if text not in texts:
            texts.append(text)


def _error_text(error: Exception) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line[:200]}"


def forward_only(runner: Runner):
    def call(inputs: Inputs):
        with torch.no_grad():
            runner.forward(inputs.x, inputs.states)

    return call


def forward_backward(runner: Runner):
    params = list(runner.params.values())

    def call(inputs: Inputs):
        outputs = runner.forward(inputs.x, inputs.states)
        torch.autograd.grad(outputs, [*inputs.leaves(), *params], inputs.upstream, allow_unused=True)

    return call


def _applicable(provider: Provider, case: Case, device: torch.device, notes: Notes) -> bool:
    if case.kind not in provider.kinds:
        return False
    if provider.name in case.exclude:
        notes.add(provider.name, "left out of some of the grid's cases to keep its time budget")
        return False
    why = provider.unsupported(case, device)
    if why is None and provider.interpreted(device) and not case.interpreter_ok:
        why = f"runs in Triton's interpreter on {device.type}: only on tiny shapes (too slow for more)"
    if why:
        notes.add(provider.name, why)
        return False
    return True


def run_case(case: Case, config: RunConfig, notes: Notes) -> list[dict]:
    device = config.device
    baseline = baseline_name(case.kind, device)
    template = make_template(case, device)
    runners: dict[str, Runner] = {}
    interpreted = set()
    for provider in config.providers:
        if not _applicable(provider, case, device, notes):
            continue
        try:
            runners[provider.name] = provider.build(case, template)
        except Exception as error:  # a provider that cannot be built is reported, not fatal
            notes.add(provider.name, f"{case.label}: could not be built: {_error_text(error)}")
            continue
        if provider.interpreted(device):
            interpreted.add(provider.name)

    input_sets = [draw_inputs(case, device, seed) for seed in range(ROTATION)]
    expected = reference_results(case, template, input_sets[0])
    errors = {}
    for name in sorted(runners, key=lambda n: n != baseline):  # the baseline first: it is the yardstick
        try:
            errors[name] = measure(outputs_and_gradients(runners[name], input_sets[0], case), expected, case.dtype)
        except Exception as error:
            notes.add(name, f"{case.label}: failed to run: {_error_text(error)}")
    checks = {name: judge(errs, errors.get(baseline)) for name, errs in errors.items()}

    timings: dict[tuple[str, str], Timing] = {}
    peaks: dict[str, float] = {}
    for name, check in checks.items():
        if check.ok and case.timed:
            try:
                _measure(case, runners[name], input_sets, config, name, timings, peaks)
            except Exception as error:
                notes.add(name, f"{case.label}: failed while timed: {_error_text(error)}")
    rows = _rows(case, config, baseline, runners, checks, timings, peaks, interpreted)
    del runners, template, input_sets, expected
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def _measure(case, runner, input_sets, config, name, timings, peaks) -> None:
    device, warmup, repeats = config.device, config.warmup, config.repeats
    if case.kind == "step":
        timings[name, STEP] = time_call(forward_only(runner), input_sets, warmup, repeats, device)
        timings[name, STEP_FORWARD_BACKWARD] = time_call(forward_backward(runner), input_sets, warmup, repeats, device)
        return
    if "speed" in config.suites:
        timings[name, FORWARD] = time_call(forward_only(runner), input_sets, warmup, repeats, device)
        timings[name, FORWARD_BACKWARD] = time_call(forward_backward(runner), input_sets, warmup, repeats, device)
    if "memory" in config.suites:
        peaks[name] = peak_memory_mb(forward_backward(runner), input_sets[0], device)


def _passes(case: Case, config: RunConfig) -> list[str]:
    if case.kind == "step":
        return [STEP, STEP_FORWARD_BACKWARD] if case.timed else [STEP]
    timed_forward = case.timed and "speed" in config.suites
    return [FORWARD, FORWARD_BACKWARD] if timed_forward else [FORWARD_BACKWARD]


def _rows(case, config, baseline, runners, checks: dict[str, GradCheck], timings, peaks, interpreted) -> list[dict]:
    rows = []
    base_check = checks.get(baseline)
    for name in runners:
        check = checks.get(name)
        for pass_name in _passes(case, config):
            row = new_row(name, case, pass_name, baseline)
            notes = []
            if check is None:
                notes.append("did not run (see notes)")
            else:
                row.update(max_abs_err=check.max_abs, rel_err=check.rel, grad_ok=check.ok)
                if base_check is not None and base_check.rel > 0:
                    row["err_vs_reference_ratio"] = check.rel / base_check.rel
                if not check.ok:
                    notes.append(check.describe_failure())
            timing = timings.get((name, pass_name))
            base_timing = timings.get((baseline, pass_name))
            if timing is not None:
                row.update(median_ms=timing.median_ms, p20_ms=timing.p20_ms, p80_ms=timing.p80_ms,
                           repeats=timing.repeats)
                if base_timing is not None:
                    row["speedup_vs_cudnn"] = base_timing.median_ms / timing.median_ms
            if pass_name == FORWARD_BACKWARD and name in peaks:
                row["peak_mem_mb"] = peaks[name]
                base_peak = peaks.get(baseline, math.nan)
                if base_peak > 0:
                    row["mem_vs_cudnn"] = peaks[name] / base_peak
            if not case.timed:
                notes.append("correctness only")
            if name in interpreted and timing is not None:
                notes.append(INTERPRETER_NOTE)
            row["note"] = "; ".join(notes)
            rows.append(row)
    return rows


def _progress(cases: list[Case]) -> Iterable[Case]:
    """A tqdm bar on stderr when tqdm is installed; the plain list otherwise."""
    try:
        from tqdm import tqdm
    except ImportError:
        return cases
    return tqdm(cases, desc="fusedrnn bench", unit="case", file=sys.stderr, dynamic_ncols=True)


def run(config: RunConfig, after_case: Callable[[list[dict]], None] | None = None) -> tuple[list[dict], Notes]:
    """Every case; `after_case(rows so far)` after each, so that a run cut short keeps what it measured."""
    notes = Notes()
    rows = []
    bar = _progress(config.cases)
    for case in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(case.label)
        rows.extend(run_case(case, config, notes))
        if after_case is not None:
            after_case(rows)
    return rows, notes
