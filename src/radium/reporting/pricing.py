"""Prices and cost: tokens x price per model.

Prices come from the agent file's ``price`` override (for self-hosted or
unlisted models)::

    [agent]
    price = { input_per_mtok = 0.5, output_per_mtok = 1.5 }   # USD per million tokens

or else from ``genai-prices`` (the pydantic team's maintained price database,
shipped as data inside the package: no network), for the engines whose
provider it knows (``openai``, ``anthropic``, ``gemini``). Everything else
(``mock``, ``openai-compatible``, ``ollama``, ``command``) has no price unless
the agent sets one: its cost is *unknown*, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}
"""Radium engine -> genai-prices provider id. Engines not listed have no database price."""


@dataclass(frozen=True)
class Price:
    """A model's price. ``provider_id``/``model_ref`` set: from the database, computed there."""

    input_per_mtok: float
    output_per_mtok: float
    source: str
    provider_id: str | None = None
    model_ref: str | None = None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for this many tokens (the database's own calculation when it is the source)."""
        if self.provider_id is not None and self.model_ref is not None:
            from genai_prices import Usage, calc_price

            result = calc_price(
                Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens),
                self.model_ref,
                provider_id=self.provider_id,
            )
            return float(result.total_price)
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1_000_000

    def describe(self) -> str:
        return f"${self.input_per_mtok:g}/MTok in, ${self.output_per_mtok:g}/MTok out ({self.source})"


@lru_cache(maxsize=256)
def database_price(engine: str, model: str | None) -> Price | None:
    """The genai-prices price of ``model`` served by ``engine``'s provider, or None if unknown."""
    provider_id = PROVIDER_IDS.get(engine)
    if provider_id is None or not model:
        return None
    try:
        from genai_prices import Usage, __version__, calc_price
    except ImportError:  # the dependency is declared; a broken install just means "unknown"
        return None
    try:
        per_in = calc_price(Usage(input_tokens=1_000_000, output_tokens=0), model, provider_id=provider_id)
        per_out = calc_price(Usage(input_tokens=0, output_tokens=1_000_000), model, provider_id=provider_id)
    except (LookupError, ValueError):
        return None
    return Price(
        float(per_in.total_price),
        float(per_out.total_price),
        f"genai-prices {__version__}: {per_in.provider.id}/{per_in.model.id}",
        provider_id=provider_id,
        model_ref=model,
    )


def price_for(engine: str, model: str | None, override: object | None = None) -> Price | None:
    """The price of one agent's calls: its ``price`` override, else the database, else None."""
    if override is not None:
        return Price(
            float(getattr(override, "input_per_mtok")),
            float(getattr(override, "output_per_mtok")),
            "agent file price",
        )
    return database_price(engine, model)


def format_cost(cost: float | None) -> str:
    """``$0.0123``; small amounts keep 2 significant digits; None is ``unknown``."""
    if cost is None:
        return "unknown"
    if cost == 0:
        return "$0.00"
    if cost >= 0.01:
        return f"${cost:,.4f}".rstrip("0").rstrip(".") if cost < 1 else f"${cost:,.2f}"
    return f"${cost:.2g}" if cost >= 1e-4 else f"${cost:.1e}"
