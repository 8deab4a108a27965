"""Rate limits: reading providers' "come back at T" headers, and one shared limiter per provider.

``headers`` parses every dialect (``Retry-After``, ``retry-after-ms``, OpenAI
``x-ratelimit-*``, Anthropic ``anthropic-ratelimit-*``, LiteLLM
``llm_provider-*``) into plain data; ``limiter`` holds the run's per-provider
gates. The retry policy (``radium.retry``) decides what a server-timed wait
costs a task; the executor connects the three.
"""

from radium.ratelimit.headers import LimitState, RateLimitSnapshot, ServerWait, parse_snapshot, server_wait
from radium.ratelimit.limiter import GateWaitTooLong, Pacing, ProviderLimiter, RateLimiters, Ticket

__all__ = [
    "GateWaitTooLong",
    "LimitState",
    "Pacing",
    "ProviderLimiter",
    "RateLimitSnapshot",
    "RateLimiters",
    "ServerWait",
    "Ticket",
    "parse_snapshot",
    "server_wait",
]
