"""Run budgets: ``--max-tokens N`` and ``--max-cost-usd X``.

The executor asks ``Budget.reached(tokens, cost)`` before it starts a task (its
one seam). What counts is this run's spend: tokens and cost of the tasks that
finished in this run (completed or failed). Once the spend reaches a limit no
new task starts; tasks already running finish (so with ``--parallel`` a run
can end a little above the limit) and the run stops with outcome
``budget_reached`` (exit 0). ``rad craft --resume`` with a larger budget goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from radium.reporting.pricing import format_cost


@dataclass(frozen=True)
class Budget:
    max_tokens: int | None = None
    max_cost_usd: float | None = None

    @property
    def active(self) -> bool:
        return self.max_tokens is not None or self.max_cost_usd is not None

    def reached(self, tokens: int, cost_usd: float) -> str | None:
        """Why no new task may start (``tokens 1,204 of max 1,000``), or None to go on."""
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"tokens {tokens:,} of max {self.max_tokens:,}"
        if self.max_cost_usd is not None and cost_usd >= self.max_cost_usd:
            return f"cost {format_cost(cost_usd)} of max {format_cost(self.max_cost_usd)}"
        return None
