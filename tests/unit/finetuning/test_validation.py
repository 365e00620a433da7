"""Dataset validation: every rule, with line numbers, codes and field paths."""

from __future__ import annotations

import json

import pytest

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.finetuning.validation import MAX_REPORTED_ERRORS, Limits, estimate_tokens, validate

LIMITS = Limits(max_bytes=1 << 20, max_lines=100, min_lines=1, max_example_tokens=1000)
CHAT = ft.DATASET_FORMAT_CHAT_JSONL


def line(example: object) -> str:
    return json.dumps(example)


def codes(
    content: str, fmt: ft.DatasetFormat.ValueType = CHAT, limits: Limits = LIMITS
) -> list[tuple[int, str, str]]:
    report = validate(content.encode(), fmt, limits)
    return [(e.line, e.code, e.field_path) for e in report.errors]


GOOD = line(
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
)


def test_a_valid_chat_line_counts_tokens() -> None:
    report = validate((GOOD + "\n").encode(), CHAT, LIMITS)
    assert report.valid and report.line_count == 1
    assert report.token_count == 2 * 4 + estimate_tokens("hi") + estimate_tokens("hello")


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("[1, 2]", [(1, "NOT_AN_OBJECT", "")]),
        ("{}", [(1, "MISSING_MESSAGES", "messages")]),
        (line({"messages": []}), [(1, "MISSING_MESSAGES", "messages")]),
        (
            line({"messages": ["text"]}),
            [(1, "INVALID_MESSAGE", "messages[0]"), (1, "NO_ASSISTANT_MESSAGE", "messages")],
        ),
        (
            line(
                {
                    "messages": [
                        {"role": "user", "content": "hi"},
                        {"role": "assistant", "content": 3},
                    ]
                }
            ),
            [(1, "INVALID_CONTENT", "messages[1].content")],
        ),
        (
            line({"messages": [{"role": "assistant", "content": "a", "weight": 2}]}),
            [(1, "INVALID_WEIGHT", "messages[0].weight")],
        ),
        (
            line(
                {
                    "messages": [
                        {"role": "tool", "content": "42"},
                        {"role": "assistant", "content": "ok"},
                    ]
                }
            ),
            [(1, "MISSING_TOOL_CALL_ID", "messages[0].tool_call_id")],
        ),
        (
            line(
                {
                    "messages": [{"role": "assistant", "content": "a"}],
                    "tools": [{"type": "function"}],
                }
            ),
            [(1, "INVALID_TOOL", "tools[0].function.name")],
        ),
    ],
)
def test_chat_rules(example: str, expected: list[tuple[int, str, str]]) -> None:
    assert codes(example) == expected


def test_tool_calls_and_tools_are_valid_chat() -> None:
    example = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}]},
        ],
        "tools": [{"type": "function", "function": {"name": "w", "parameters": {}}}],
    }
    assert codes(line(example)) == []


def test_bad_bytes_and_json_are_reported_per_line_and_blank_lines_are_skipped() -> None:
    content = GOOD.encode() + b"\n\xff\xfe\n\n{broken\n" + GOOD.encode()
    report = validate(content, CHAT, LIMITS)
    assert [(e.line, e.code) for e in report.errors] == [(2, "INVALID_UTF8"), (4, "INVALID_JSON")]
    assert report.line_count == 4


def test_prompt_completion_rules() -> None:
    fmt = ft.DATASET_FORMAT_PROMPT_COMPLETION_JSONL
    content = "\n".join(
        [
            line({"prompt": "a", "completion": "b"}),
            line({"prompt": "a"}),
            line({"completion": "b"}),
            line({"prompt": "a", "completion": "  "}),
        ]
    )
    assert codes(content, fmt) == [
        (2, "MISSING_COMPLETION", "completion"),
        (3, "MISSING_PROMPT", "prompt"),
        (4, "EMPTY_COMPLETION", "completion"),
    ]


def test_limits_on_bytes_lines_and_tokens() -> None:
    tight = Limits(max_bytes=len(GOOD) * 3, max_lines=2, min_lines=1, max_example_tokens=5)
    assert codes(GOOD + "\n" + GOOD + "\n" + GOOD + "\n", limits=tight)[0][1] == "TOO_LARGE"
    lines = Limits(max_bytes=1 << 20, max_lines=2, min_lines=1, max_example_tokens=1000)
    assert codes("\n".join([GOOD] * 3), limits=lines) == [(3, "TOO_MANY_LINES", "")]
    tokens = Limits(max_bytes=1 << 20, max_lines=10, min_lines=1, max_example_tokens=5)
    assert codes(GOOD, limits=tokens) == [(1, "TOO_MANY_TOKENS", "")]
    assert codes("") == [(0, "TOO_FEW_LINES", "")]


def test_errors_are_all_counted_but_only_the_first_are_kept() -> None:
    report = validate(b"{x\n" * (MAX_REPORTED_ERRORS + 5), CHAT, Limits(1 << 20, 1000, 1, 1000))
    assert report.error_count == MAX_REPORTED_ERRORS + 5
    assert len(report.errors) == MAX_REPORTED_ERRORS


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_a_line_nesting_json_too_deeply_is_reported_not_raised(depth: int) -> None:
    deep = '{"messages": ' + "[" * depth + "]" * depth + "}"
    report = validate(f"{GOOD}\n{deep}\n{GOOD}\n".encode(), CHAT, LIMITS)
    assert report.line_count == 3
    assert [(e.line, e.code) for e in report.errors] == [(2, "TOO_DEEP")]
