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
from typing import TYPE_CHECKING, Callable

from radium.reporting.pricing import format_cost

if TYPE_CHECKING:
    from radium.models import PlanTask, TokenUsage
    from radium.reporting.pricing import Price


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


class Spend:
    """What this run has spent so far, priced as tasks finish, and whether the budget is reached.

    ``price_for(task)`` gives the price of a task's calls (its agent's
    ``price``, else the database, else None). A task whose tokens cannot be
    priced is listed in ``unpriced``: its cost is unknown, never 0.
    """

    def __init__(self, budget: Budget | None, price_for: "Callable[[PlanTask], Price | None]") -> None:
        self.budget = budget
        self._price_for = price_for
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        """Cost of this run's tasks with a known price."""
        self.priced = 0
        self.unpriced: list[str] = []
        self.budget_hit: str | None = None
        """Set (sticky) once the budget stops new tasks: what was reached."""

    def settle(self, task: "PlanTask", usage: "TokenUsage | None") -> None:
        """Record ``task``'s cost on it, and add its tokens and cost to the run's spend."""
        price = self._price_for(task) if usage is not None else None
        task.cost_usd = price.cost_usd(usage.prompt_tokens, usage.completion_tokens) if price and usage else None
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens
        if task.cost_usd is not None:
            self.cost_usd += task.cost_usd
            self.priced += 1
        elif usage is not None:  # tokens were spent and cannot be priced
            self.unpriced.append(task.id)

    def reached(self) -> bool:
        """The scheduler's one budget seam: may no new task start? (Sticky once reached.)"""
        if self.budget is not None and self.budget_hit is None:
            self.budget_hit = self.budget.reached(self.prompt_tokens + self.completion_tokens, self.cost_usd)
        return self.budget_hit is not None

    @property
    def total_cost_usd(self) -> float | None:
        """The run's cost, or None when no task had a known price."""
        return round(self.cost_usd, 10) if self.priced else None
