"""The in-memory policy cache: reloads by revision, never goes back to an older one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.auth.cache import PolicyCache, PolicySnapshot
from gateway.auth.grants import ProjectRecord
from gateway.policies import RateLimitRule
from services.kernel.identity import Principal
from services.kernel.spend import SpendSubject, SubjectKind


@dataclass
class Store:
    """Snapshots by revision; ``gate`` holds ``snapshot()`` back until set."""

    current: int = 1
    loads: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def revision(self) -> int:
        return self.current

    async def snapshot(self) -> PolicySnapshot:
        revision = self.current
        self.loads += 1
        await self.gate.wait()
        project = ProjectRecord(f"p{revision}")
        subject = SpendSubject(SubjectKind.PROJECT, "p")
        rule = RateLimitRule(id=f"r{revision}", subject=subject, requests_per_minute=revision)
        return PolicySnapshot(
            revision=revision, projects={project.id: project}, rate_limits={subject: (rule,)}
        )


async def test_the_cache_reloads_only_when_the_revision_moved() -> None:
    store = Store()
    store.gate.set()
    cache = PolicyCache()
    assert cache.revision == -1 and cache.project("p1") is None
    assert await cache.refresh(store)
    assert not await cache.refresh(store)
    assert store.loads == 1
    store.current = 2
    assert await cache.refresh(store)
    assert cache.revision == 2 and cache.project("p2") is not None
    rules = cache.rate_limits(Principal("api_key", "k", "p"))
    assert [rule.id for rule in rules] == ["r2"]
    assert cache.rate_limits(Principal("api_key", "k", "other")) == ()


async def test_a_slow_reload_of_an_older_revision_does_not_replace_a_newer_one() -> None:
    store = Store()
    cache = PolicyCache()
    slow = asyncio.create_task(cache.refresh(store))  # starts loading revision 1
    await asyncio.sleep(0)
    store.current = 2
    store.gate.set()
    assert await cache.refresh(store)  # loads and installs revision 2 first
    await slow
    assert cache.revision == 2
