"""Fine-tuned versions: the registry's consumer of ``FineTuneJobEvent``.

When a job's event moves it to SUCCEEDED, the job's result becomes a version
of ``job.result_model`` (the base model's when empty) with the id
``job.result_model_version`` (the job id when empty), origin FINE_TUNE. The
new version copies provider, endpoint, credential, limits, prices,
capabilities, options and labels from the base version the job trained and serves
``job.result_provider_model_id``. When the job names ``alias_on_success``,
that alias is then promoted to the version.

Idempotent under at-least-once delivery: the version id is fixed by the job,
so a repeated event finds the version and creates none, and the alias is
moved only while the version was never promoted (status REGISTERED), so a
replay never moves an alias back after someone moved it on. A job whose
base version or result model is gone, or whose version would be invalid,
is logged and skipped (redelivery cannot fix it).
"""

from __future__ import annotations

import logging

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.finetuning.v1 import finetuning_pb2
from llmgw.models.v1 import models_pb2
from services.kernel.errors import FailedPrecondition, InvalidArgument, NotFound
from services.kernel.events import Envelope
from services.models import validation
from services.models.aliases import Aliases
from services.models.caller import Caller
from services.models.registry import Registry, raise_if

_log = logging.getLogger(__name__)

CONSUMER_GROUP = "llmgw-models-finetunes"


def fine_tuned_version(
    base: models_pb2.ModelVersion, job: finetuning_pb2.Job
) -> models_pb2.ModelVersion:
    """The version a succeeded ``job`` that trained ``base`` registers: ``base``'s
    serving settings (provider, endpoint, credential, limits, prices, capabilities,
    options, labels) with the job's result model id and a FINE_TUNE origin."""
    version = models_pb2.ModelVersion()
    version.CopyFrom(base)
    for output_only in ("create_time", "update_time", "revision", "status", "description"):
        version.ClearField(output_only)
    version.model = job.result_model or job.base_model_name
    version.version = job.result_model_version or job.id
    version.provider_model_id = job.result_provider_model_id
    version.description = f"fine-tuned from {job.base_model} by job {job.id}"
    version.origin.CopyFrom(
        models_pb2.VersionOrigin(
            type=models_pb2.VERSION_ORIGIN_TYPE_FINE_TUNE,
            fine_tune_job_id=job.id,
            base_model=job.base_model,
        )
    )
    version.labels["fine-tune-job"] = job.id
    return version


class FineTuneConsumer:
    """Registers the results of succeeded fine-tuning jobs; see the module docstring."""

    def __init__(self, registry: Registry) -> None:
        """Register into ``registry``."""
        self._registry = registry
        self._aliases = Aliases(registry)

    async def handle(self, envelope: Envelope) -> None:
        """The bus handler: act on SUCCEEDED job events, ignore every other event."""
        event = envelope.event
        if not isinstance(event, events_pb2.FineTuneJobEvent):
            return
        change = event.event
        succeeded = (
            change.type == finetuning_pb2.JOB_EVENT_TYPE_STATE_CHANGED
            and change.state == finetuning_pb2.JOB_STATE_SUCCEEDED
        )
        if succeeded:
            await self.register_or_skip(event.job)

    async def register_or_skip(self, job: finetuning_pb2.Job) -> None:
        """:meth:`register`, logging and skipping a job that cannot be registered."""
        try:
            await self.register(job)
        except (NotFound, InvalidArgument, FailedPrecondition) as exc:
            _log.warning(
                "fine-tuned version not registered: %s",
                exc.message,
                extra={"job_id": job.id, "reason": exc.reason},
            )

    async def register(self, job: finetuning_pb2.Job) -> models_pb2.ModelVersion:
        """Create the job's version unless it exists, then move the alias (module rules)."""
        caller = Caller(
            actor=common_pb2.Actor(
                type=common_pb2.ACTOR_TYPE_SERVICE,
                id="llmgw-finetuning",
                project_id=job.project_id,
            ),
            request_id=job.id,
        )
        model = job.result_model or job.base_model_name
        version_id = job.result_model_version or job.id
        async with self._registry.change(caller) as ctx:
            if await ctx.writer.version(model, version_id) is None:
                base = await ctx.writer.version(job.base_model_name, job.base_model_version)
                if base is None:
                    raise NotFound(
                        "model version",
                        f"{job.base_model_name}/versions/{job.base_model_version}",
                        reason="BASE_VERSION_NOT_FOUND",
                    )
                version = fine_tuned_version(base, job)
                raise_if(
                    validation.check_version(version, "version.", self._registry.rules), "version"
                )
                await self._registry.insert_version(ctx, version)
        registered = await self._registry.get_version(model, version_id)
        if job.alias_on_success and registered.status == models_pb2.VERSION_STATUS_REGISTERED:
            await self._aliases.promote(
                models_pb2.PromoteVersionRequest(
                    model=model,
                    version=version_id,
                    alias=job.alias_on_success,
                    reason=f"fine-tuning job {job.id} succeeded",
                ),
                caller,
            )
            registered = await self._registry.get_version(model, version_id)
        return registered
