"""Actor headers and page tokens."""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2

from llmgw.common.v1 import common_pb2
from llmgw.models.v1 import models_pb2
from services.kernel.errors import InvalidArgument
from services.kernel.paging import apply_mask, next_token, page_of
from services.models.caller import caller_from_metadata


def test_actor_from_metadata() -> None:
    caller = caller_from_metadata(
        (("llmgw-actor-type", "API_KEY"), ("llmgw-actor-id", "key-1"), ("user-agent", "ua")),
        request_id="r1",
        peer="ipv4:127.0.0.1:5",
    )
    assert caller.actor == common_pb2.Actor(type=common_pb2.ACTOR_TYPE_API_KEY, id="key-1")
    assert (caller.request_id, caller.client_address, caller.user_agent) == (
        "r1",
        "ipv4:127.0.0.1:5",
        "ua",
    )
    anonymous = caller_from_metadata(None, request_id="", peer="")
    assert anonymous.actor == common_pb2.Actor()


def test_pages() -> None:
    first = page_of(0, "")
    assert (first.offset, first.limit) == (0, 50)
    token = next_token(page_of(2, ""), 2)
    second = page_of(2, token)
    assert (second.offset, second.limit) == (2, 2)
    assert next_token(second, 1) == ""
    with pytest.raises(InvalidArgument):
        page_of(-1, "")
    with pytest.raises(InvalidArgument):
        page_of(10, "garbage!")


def test_a_mask_path_into_a_plain_field_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        apply_mask(
            models_pb2.Model(name="a"),
            models_pb2.Model(name="a", description="d"),
            field_mask_pb2.FieldMask(paths=["description.x"]),
            {"description"},
            prefix="model.",
        )
