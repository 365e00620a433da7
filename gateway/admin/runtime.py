"""The security side of one gateway process, opened before serving and closed after.

:class:`SecurityRuntime` is built with the gateway (its cache, audit publisher
and JWT verifier are what the ``authn``/``authz`` filters and the rate-limit
and budget filters read) and :meth:`SecurityRuntime.lifespan` opens, in order:
the database (migrated to the ``admin`` schema), the spend ledger (with
``redis_url``, for budgets' current spend), the bootstrap key (when
configured), the first snapshot, the JWKS, the event bus (Kafka when
``kafka.bootstrap_servers`` is set, connected on first use so the gateway starts
and serves while the broker is away; else in-process), the audit publisher and
the poller that keeps the snapshot current. They close in reverse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from grpc import aio
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url

from gateway.admin.api import AdminApi
from gateway.admin.bootstrap import bootstrap_admin_key
from gateway.admin.schema import COMPONENT, MIGRATIONS
from gateway.admin.servicer import SERVICE, AdminServicer
from gateway.admin.store import AdminStore
from gateway.auth.audit import SOURCE, AuditConfig, AuditPublisher, Publisher
from gateway.auth.authenticator import Authenticator
from gateway.auth.authorizer import Authorizer
from gateway.auth.cache import PolicyCache
from gateway.auth.context import SecurityContext
from gateway.auth.tokens import JwtVerifier
from gateway.settings import GatewaySettings
from llmgw.admin.v1 import admin_pb2_grpc
from services.kernel.cache import RedisConfig, connect_redis
from services.kernel.resources import open_database, open_publisher, run_in_background
from services.kernel.server import ServiceRegistration
from services.kernel.spend import SpendLedger

_log = logging.getLogger(__name__)


def sqlite_parent(url: str) -> Path | None:
    """The folder of a SQLite database file, None for other databases or in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database).parent


class SecurityRuntime:
    """Keys, policies, the admin API and audit of one gateway; see the module docstring."""

    def __init__(
        self,
        settings: GatewaySettings,
        registry: CollectorRegistry,
        env: Mapping[str, str],
        publisher: Publisher | None = None,
    ) -> None:
        """Prepare; nothing opens before :meth:`lifespan`. ``publisher`` replaces the
        configured event bus (tests)."""
        self._settings = settings
        self._env = env
        self._publisher = publisher
        security = settings.gateway.security
        self.cache = PolicyCache(security.poll_interval_seconds)
        self.audit = AuditPublisher(
            AuditConfig(topic=security.audit_topic, buffer_size=security.audit_buffer_size),
            registry,
        )
        self.jwt = JwtVerifier(security.jwt) if security.jwt is not None else None
        self.context = SecurityContext(keys=self.cache, jwt=self.jwt, audit=self.audit)
        self._servicer: AdminServicer | None = None
        self._store: AdminStore | None = None
        self.api: AdminApi | None = None

    def registration(self) -> ServiceRegistration:
        """The AdminService, served once :meth:`lifespan` has opened the store."""
        return ServiceRegistration(SERVICE, self._add_to_server)

    def _add_to_server(self, server: aio.Server) -> None:
        if self._servicer is None:
            raise RuntimeError("the admin API is not started")
        admin_pb2_grpc.add_AdminServiceServicer_to_server(self._servicer, server)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open everything, serve, close everything in reverse."""
        settings = self._settings
        security = settings.gateway.security
        async with AsyncExitStack() as stack:
            folder = sqlite_parent(settings.database_url)
            if folder is not None:
                await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            database = await open_database(stack, settings.database_url, COMPONENT, MIGRATIONS)
            store = AdminStore(database)
            api = AdminApi(store, spend=await self._open_spend(stack))
            if security.bootstrap_key_file is not None:
                await bootstrap_admin_key(
                    api, security.bootstrap_key_file, security.bootstrap_project
                )
            await self.cache.refresh(store)
            if self.jwt is not None:
                try:
                    await self.jwt.keys.load()
                except Exception as exc:  # unreadable now: retried on the first token
                    _log.warning("cannot read the JWKS at start: %r", exc)
            self.audit.start(
                self._publisher
                # connects on first use and again after a failure: the gateway serves
                # while the broker is away (its audit events are then counted as failed)
                or await open_publisher(stack, settings.kafka, self._env, SOURCE, connect_now=False)
            )
            stack.push_async_callback(self.audit.aclose)
            poller = asyncio.create_task(self.cache.run(store), name="admin-policy-poller")
            run_in_background(stack, poller)
            self.api = api
            self._servicer = AdminServicer(
                api,
                Authenticator(self.cache, self.jwt),
                Authorizer(self.cache),
                self.audit,
                after_write=lambda: self.cache.refresh(store),
                usage=self.context.usage,
            )
            self._store = store
            flusher = asyncio.create_task(self._flush_usage_forever(), name="key-usage-flusher")
            stack.push_async_callback(self.flush_usage)
            run_in_background(stack, flusher)
            try:
                yield
            finally:
                self._servicer = None
                self.api = None

    async def flush_usage(self) -> None:
        """Store the time of use of the keys used since the last flush (``last_used_time``)."""
        store = self._store
        used = self.context.usage.take()
        if store is None or not used:
            return
        try:
            await store.mark_used(used, time.time_ns())
        except Exception as exc:  # a database hiccup costs only this approximation
            _log.warning("cannot record when API keys were used: %r", exc)

    async def _flush_usage_forever(self) -> None:
        interval = self._settings.gateway.security.last_used_flush_seconds
        while True:
            await asyncio.sleep(interval)
            await self.flush_usage()

    async def _open_spend(self, stack: AsyncExitStack) -> SpendLedger | None:
        """The spend ledger when Redis is configured and answers, else None."""
        url = self._settings.redis_url
        if not url:
            return None
        try:
            client = await connect_redis(RedisConfig(url))
        except RedisError as exc:
            _log.warning("Redis unreachable: budgets are served without their spend: %r", exc)
            return None
        stack.push_async_callback(client.aclose)
        return SpendLedger(client, namespace=self._settings.gateway.security.spend_namespace)
