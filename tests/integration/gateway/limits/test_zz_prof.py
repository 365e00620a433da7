import statistics, time
from pathlib import Path
from tests.integration.gateway.limits.conftest import *  # noqa
from tests.integration.gateway.limits.helpers import complete, start_limited

async def test_prof(start_gateway, start_replicas, redis_url, redis_prefix, tmp_path: Path):
    (replica,) = await start_replicas(1)
    ns = {"redis_url": redis_url, "namespace": f"{redis_prefix}llmgw"}
    rl = {**ns, "rules": [{"id": "r", "project": "p", "requests_per_minute": 10**9, "tokens_per_minute": 10**9}]}
    bu = {**ns, "budgets": [{"id": "b", "project": "p", "amount_nanos": 10**18}]}
    variants = {
        "none": await start_limited(start_gateway, replica, tmp_path),
        "rate": await start_limited(start_gateway, replica, tmp_path, rate_limit=rl),
        "budget": await start_limited(start_gateway, replica, tmp_path, budget=bu),
        "both": await start_limited(start_gateway, replica, tmp_path, rate_limit=rl, budget=bu),
    }
    samples = {k: [] for k in variants}
    for _ in range(6):
        for name, g in variants.items():
            for _ in range(150):
                t = time.perf_counter(); await complete(g, "k", "p"); samples[name].append(time.perf_counter() - t)
    base = statistics.median(samples["none"])
    print()
    for name, s in samples.items():
        print(name, round(statistics.median(s) * 1e3, 3), "ms; added", round((statistics.median(s) - base) * 1e6), "us")
