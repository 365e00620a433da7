"""Typed reading of :attr:`Deployment.options`, refusing keys an adapter does not know.

An adapter declares the keys it reads; :class:`OptionReader` rejects any other
key at construction (a typo in a deployment must not be silently ignored) and
converts values with a clear error naming the provider, key and bad value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class InvalidDeploymentOptions(ValueError):
    """A deployment's ``options`` hold an unknown key or a value of the wrong type."""


class OptionReader:
    """The options of one deployment, checked against the keys an adapter knows."""

    def __init__(self, provider: str, options: Mapping[str, str], known: Iterable[str]) -> None:
        allowed = frozenset(known)
        unknown = sorted(set(options) - allowed)
        if unknown:
            expected = ", ".join(sorted(allowed)) or "none"
            raise InvalidDeploymentOptions(
                f"{provider} deployment has unknown option(s) {', '.join(unknown)}"
                f" (known: {expected})"
            )
        self._provider = provider
        self._options = dict(options)

    def text(self, key: str, default: str | None = None) -> str | None:
        """The raw value of ``key``, or ``default`` when unset."""
        return self._options.get(key, default)

    def positive_int(self, key: str, default: int) -> int:
        """``key`` as an integer above zero, or ``default`` when unset."""
        raw = self._options.get(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise InvalidDeploymentOptions(
                f"{self._provider} option {key} must be a positive integer, got {raw!r}"
            )
        return value

    def optional_positive_int(self, key: str) -> int | None:
        """``key`` as an integer above zero, or None when unset."""
        if key not in self._options:
            return None
        return self.positive_int(key, 1)

    def flag(self, key: str, default: bool) -> bool:
        """``key`` as a boolean (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
        raw = self._options.get(key)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no"}:
            return False
        raise InvalidDeploymentOptions(
            f"{self._provider} option {key} must be true or false, got {raw!r}"
        )
