"""HumanEval pass@1 inside lm-eval, with every generated program run in :mod:`imitlib.real.sandbox`.

The ``imitlib_code`` task (``imitlib.evaluate.benchmarks``) generates a completion of each
function greedily and hands it to :func:`make_process_results`'s hook, which checks it against the
problem's tests in the sandbox (time, CPU, memory and output limits; no network; writes confined to
a scratch folder). lm-eval's own ``humaneval`` task would execute the code unsandboxed, so the
study never runs it.
"""

from __future__ import annotations

from typing import Any, Callable

from imitlib.real.sandbox import SandboxLimits, check_humaneval

METRIC = "pass@1"


def make_process_results(timeout_s: float = 10.0, cpu_s: int = 10, memory_mb: int = 512
                         ) -> Callable[[dict[str, Any], list[Any]], dict[str, float]]:
    """An lm-eval ``process_results`` hook scoring one greedy completion per problem.

    Args:
        timeout_s: wall-clock seconds per program.
        cpu_s: CPU seconds per program.
        memory_mb: address-space limit per program, in MiB.

    Returns:
        ``hook(doc, results) -> {"pass@1": 1.0 | 0.0}``; ``doc`` is a ``code`` task item with
        ``prompt``, ``test`` and ``entry_point``.
    """
    limits = SandboxLimits(timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb)

    def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
        completion = results[0] if results else ""
        if isinstance(completion, (list, tuple)):
            completion = completion[0] if completion else ""
        for key in ("prompt", "test", "entry_point"):
            if not doc.get(key):
                raise ValueError(f"code item {doc.get('id')!r} has no {key!r}: cannot check its completion")
        return {METRIC: float(check_humaneval(doc, str(completion), limits).ok)}

    return process_results
