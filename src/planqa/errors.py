"""planqa's errors: one small hierarchy, each with the HTTP status it maps to.

Every error planqa raises on purpose is a :class:`PlanQAError`; anything else is a
bug. The web layer maps an error to a response with ``exc.http_status`` and nothing
else, so a bug's stray ``ValueError`` becomes a 500 (and a log line), not a 422.
The subclasses also derive from the built-in they used to be (``ValueError``,
``RuntimeError``), so callers that caught those keep working.
"""

from __future__ import annotations


class PlanQAError(Exception):
    """Base of every error planqa raises on purpose."""

    http_status: int = 500


class InvalidQuestion(PlanQAError, ValueError):
    """The caller's input cannot be answered as given: an empty question, a malformed
    history, an unknown script, a bad `k`."""

    http_status = 422


class IndexUnavailable(PlanQAError, RuntimeError):
    """The index cannot be served (missing, corrupt or stale); the message says why and
    names the command that rebuilds it."""

    http_status = 503


class ConfigError(PlanQAError, ValueError):
    """A setting (a PLANQA_* environment variable) has a value planqa cannot use; the
    message names the variable."""

    http_status = 500


class LLMError(PlanQAError):
    """The optional LLM failed or answered unfaithfully; planqa falls back to the
    extractive answer, so this never reaches a user."""

    http_status = 502


__all__ = ["ConfigError", "IndexUnavailable", "InvalidQuestion", "LLMError", "PlanQAError"]
