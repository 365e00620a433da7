"""Rate limits and budgets of gateway callers: the parts the limit filters are built from.

- :mod:`gateway.limits.rules`: limit and budget rules written in the gateway's config
  (:class:`~gateway.limits.rules.StaticPolicies`), for deployments without the admin API
  and for tests;
- :mod:`gateway.limits.gcra`: the rate limiter, in Redis (one Lua script, one round trip
  per check, exact across replicas) and in process (the fail-open fallback);
- :mod:`gateway.limits.estimate`: how many tokens a request reserves before it runs;
- :mod:`gateway.limits.redis_access`: the filters' Redis client settings and the
  "Redis is down" policy (fail open or closed).

The filters themselves are :mod:`gateway.filters.rate_limit` and :mod:`gateway.filters.budget`.
"""
