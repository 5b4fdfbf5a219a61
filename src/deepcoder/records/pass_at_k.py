"""The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models Trained on Code".

With ``n`` samples of which ``c`` pass, ``pass@k = 1 - C(n-c, k) / C(n, k)``: the chance that at
least one of ``k`` samples drawn without replacement passes. Written as the product
``1 - Π_{i=n-c+1}^{n} (1 - k/i)``, which never forms the huge binomials (the paper's stable form).
"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """The estimate for one problem from ``n`` samples with ``c`` correct; requires ``1 <= k <= n``."""
    if not 0 <= c <= n:
        raise ValueError(f"pass@k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k: need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(samples: Sequence[int], correct: Sequence[int], k: int) -> float:
    """The mean estimate over problems (``samples[i]`` drawn, ``correct[i]`` passed for problem ``i``)."""
    if len(samples) != len(correct):
        raise ValueError(f"pass@k: {len(samples)} sample counts but {len(correct)} correct counts")
    if not samples:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in zip(samples, correct)) / len(samples)
