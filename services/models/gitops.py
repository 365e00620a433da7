"""Command line export and import of the registry as YAML, for GitOps pipelines.

::

    python -m services.models.gitops export --database-url URL > registry.yaml
    python -m services.models.gitops import --database-url URL registry.yaml

The URL defaults to ``$DATABASE_URL``. Import follows
:func:`services.models.portable.import_registry` (validated, transactional,
idempotent), records the changes as the system actor and leaves their events
in the outbox for the running registry to publish. Exit status 0 on success,
2 when the document is refused (the errors name each entry on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.kernel.errors import InvalidArgument
from services.kernel.migrations import migrate
from services.kernel.sql import Database, DatabaseConfig
from services.models.caller import SYSTEM
from services.models.portable import export_registry, import_registry
from services.models.registry import Registry
from services.models.runtime import installed_providers
from services.models.schema import COMPONENT, MIGRATIONS
from services.models.store import RegistryStore
from services.models.validation import Rules


async def _run(command: str, database_url: str, document: str | None) -> int:
    database = await Database.connect(DatabaseConfig(database_url))
    try:
        await migrate(database, COMPONENT, MIGRATIONS)
        registry = Registry(RegistryStore(database), Rules(installed_providers()))
        if command == "export":
            sys.stdout.write(await export_registry(registry))
            return 0
        assert document is not None
        try:
            result = await import_registry(registry, document, SYSTEM)
        except InvalidArgument as exc:
            print(f"import refused: {exc.message}", file=sys.stderr)
            for violation in exc.violations:
                print(f"  {violation.field}: {violation.description}", file=sys.stderr)
            return 2
        print(f"imported: {result.changed} change(s), revision {result.revision}", file=sys.stderr)
        return 0
    finally:
        await database.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m services.models.gitops")
    parser.add_argument("command", choices=("export", "import"))
    parser.add_argument("document", nargs="?", type=Path, help="YAML file to import")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url or $DATABASE_URL is required")
    if args.command == "import" and args.document is None:
        parser.error("import needs a document")
    document = args.document.read_text(encoding="utf-8") if args.document else None
    return asyncio.run(_run(args.command, args.database_url, document))


if __name__ == "__main__":
    sys.exit(main())
