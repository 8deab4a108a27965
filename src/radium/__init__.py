"""Radium: a plan execution system for AI agents.

The package layout follows the architecture: ``models`` (plan data model) →
``store`` (persistence) and ``workspace`` (lookup) → ``agents``/``prompts`` →
``planning.executor`` (the async run loop) → ``engines`` (model providers) →
``cli`` (the ``rad`` command). ``errors`` holds the error taxonomy and
``retry`` the retry policy.
"""

__version__ = "0.1.0"
