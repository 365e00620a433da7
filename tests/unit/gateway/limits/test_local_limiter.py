from __future__ import annotations

from gateway.limits.gcra import Charge, LeaseCharge, LimitKind, LocalLimiter, RateCharge


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _requests(per_minute: int) -> RateCharge:
    return RateCharge("r", LimitKind.REQUESTS, "rule", per_minute, 1)


async def test_allows_exactly_the_limit_then_one_per_interval() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    charge = Charge((_requests(7),))

    decisions = [await limiter.acquire(charge, "") for _ in range(10)]

    assert sum(d.allowed for d in decisions) == 7
    refused = decisions[-1]
    assert refused.kind is LimitKind.REQUESTS
    assert refused.rule_id == "rule"
    assert 0 < refused.retry_after_seconds <= 60 / 7
    clock.now += 60 / 7
    assert (await limiter.acquire(charge, "")).allowed
    assert not (await limiter.acquire(charge, "")).allowed


async def test_a_charge_is_all_or_nothing_and_tokens_can_be_given_back() -> None:
    limiter = LocalLimiter(Clock())
    tokens = RateCharge("t", LimitKind.TOKENS, "rule", 100, 60)
    charge = Charge((_requests(10), tokens))

    assert (await limiter.acquire(charge, "")).allowed
    refused = await limiter.acquire(charge, "")
    assert refused.kind is LimitKind.TOKENS
    # the refused charge took no request either: nine more single requests fit
    only_requests = Charge((_requests(10),))
    assert all([(await limiter.acquire(only_requests, "")).allowed for _ in range(9)])

    await limiter.adjust([(tokens, -50)])  # the call used 10 of its 60
    assert (await limiter.acquire(Charge((tokens,)), "")).allowed


async def test_leases_bound_concurrent_calls_until_released() -> None:
    limiter = LocalLimiter(Clock())
    lease = LeaseCharge("c", "rule", 2)
    charge = Charge(leases=(lease,))

    assert (await limiter.acquire(charge, "a")).allowed
    assert (await limiter.acquire(charge, "b")).allowed
    refused = await limiter.acquire(charge, "c")
    assert refused.kind is LimitKind.CONCURRENCY
    await limiter.release([lease], "a")
    assert (await limiter.acquire(charge, "c")).allowed


async def test_a_charge_larger_than_the_limit_waits_at_most_a_window() -> None:
    limiter = LocalLimiter(Clock())
    refused = await limiter.acquire(Charge((RateCharge("t", LimitKind.TOKENS, "r", 10, 50),)), "")
    assert not refused.allowed
    assert refused.retry_after_seconds == 60
    assert refused.larger_than_limit


async def test_a_scaled_charge_grants_its_share_of_each_limit() -> None:
    limiter = LocalLimiter(Clock())
    charge = Charge((_requests(9),), (LeaseCharge("c", "rule", 3),)).scaled(1 / 3)

    decisions = [await limiter.acquire(charge, str(index)) for index in range(4)]

    assert [d.allowed for d in decisions] == [True, False, False, False]
    assert decisions[1].kind is LimitKind.CONCURRENCY
    assert Charge((_requests(9),)).scaled(0.01).rates[0].per_minute == 1
