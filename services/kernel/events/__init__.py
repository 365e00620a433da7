"""The event bus: protobuf events on Kafka topics, CloudEvents headers, at-least-once.

- :mod:`.bus`: the contract (``EventBus``, ``Envelope``, ``Subscription``);
- :mod:`.cloudevents`: the wire format and the ``ce_type`` registry;
- :mod:`.kafka`: the implementation on any Kafka-protocol broker;
- :mod:`.inprocess`: the single-process implementation.
"""

from services.kernel.events.bus import (
    Envelope,
    EventBus,
    EventHandler,
    RetryPolicy,
    Subscription,
)
from services.kernel.events.cloudevents import (
    EventAttributes,
    EventDecodeError,
    EventTypeRegistry,
    decode_event,
    encode_event,
)
from services.kernel.events.inprocess import InProcessConfig, InProcessEventBus
from services.kernel.events.kafka import (
    ConsumerConfig,
    KafkaConfig,
    KafkaEventBus,
    connection_kwargs,
    kafka_config,
)

__all__ = [
    "ConsumerConfig",
    "Envelope",
    "EventAttributes",
    "EventBus",
    "EventDecodeError",
    "EventHandler",
    "EventTypeRegistry",
    "InProcessConfig",
    "InProcessEventBus",
    "KafkaConfig",
    "KafkaEventBus",
    "RetryPolicy",
    "Subscription",
    "connection_kwargs",
    "decode_event",
    "encode_event",
    "kafka_config",
]
