"""What a harness context manager hands to the tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A server the tests may use.

    ``started_here`` is ``False`` when the URL came from the environment;
    ``startup_seconds`` is then ``None``.
    """

    name: str
    url: str
    started_here: bool
    startup_seconds: float | None = None
