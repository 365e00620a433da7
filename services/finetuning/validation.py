"""Validation of fine-tuning datasets, line by line, with token counts.

Two formats (JSON lines, UTF-8):

- chat: ``{"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": ...}],
  "tools": [...]?}``; every example needs at least one assistant message;
  assistant messages may carry ``tool_calls`` instead of content, ``tool``
  messages need a ``tool_call_id``; ``weight`` on assistant messages is 0 or 1;
- prompt/completion: ``{"prompt": "...", "completion": "..."}``.

A line nesting JSON deeper than Python can parse is reported as TOO_DEEP.
Every bad line is reported with its number (from 1), a stable code, a message
and the field path; the report keeps the first :data:`MAX_REPORTED_ERRORS`
but counts all. Tokens are estimated at about four characters a token (the
same rule for every provider, so an estimate never needs a provider call);
an example longer than ``max_example_tokens`` is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from llmgw.finetuning.v1 import finetuning_pb2 as ft

MAX_REPORTED_ERRORS = 100
CHAT_ROLES = frozenset({"system", "user", "assistant", "tool"})
_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True, slots=True)
class Limits:
    """What one dataset may hold."""

    max_bytes: int
    max_lines: int
    min_lines: int
    max_example_tokens: int


@dataclass(slots=True)
class Report:
    """What validation found: counts, tokens and the first errors."""

    line_count: int = 0
    error_count: int = 0
    token_count: int = 0
    max_example_tokens: int = 0
    errors: list[ft.DatasetLineError] = field(default_factory=list)

    def add(self, line: int, code: str, message: str, field_path: str = "") -> None:
        """Count an error; keep it if fewer than the reported maximum are kept."""
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(
                ft.DatasetLineError(line=line, code=code, message=message, field_path=field_path)
            )

    @property
    def valid(self) -> bool:
        """No errors at all."""
        return self.error_count == 0


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` by the four-characters rule (at least 1 for non-empty text)."""
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def validate(content: bytes, fmt: ft.DatasetFormat.ValueType, limits: Limits) -> Report:
    """Check every line of ``content`` (see the module docstring)."""
    report = Report()
    if len(content) > limits.max_bytes:
        report.add(
            0, "TOO_LARGE", f"the dataset has {len(content)} bytes, more than {limits.max_bytes}"
        )
        return report
    check = (
        _check_prompt_completion
        if fmt == ft.DATASET_FORMAT_PROMPT_COMPLETION_JSONL
        else _check_chat
    )
    for number, raw in _lines(content):
        report.line_count += 1
        if report.line_count > limits.max_lines:
            report.add(number, "TOO_MANY_LINES", f"more than {limits.max_lines} lines")
            break
        problems: list[tuple[str, str, str]] = []
        try:
            tokens = _check_line(raw, check, problems)
        except RecursionError:
            problems = [("TOO_DEEP", "the line nests JSON too deeply", "")]
        for code, message, path in problems:
            report.add(number, code, message, path)
        if problems:
            continue
        if tokens > limits.max_example_tokens:
            report.add(
                number,
                "TOO_MANY_TOKENS",
                f"the example has about {tokens} tokens, more than {limits.max_example_tokens}",
            )
            continue
        report.token_count += tokens
        report.max_example_tokens = max(report.max_example_tokens, tokens)
    if report.line_count < limits.min_lines:
        report.add(0, "TOO_FEW_LINES", f"at least {limits.min_lines} examples are needed")
    return report


Problems = list[tuple[str, str, str]]


def _lines(content: bytes) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers."""
    for index, raw in enumerate(content.split(b"\n"), start=1):
        if raw.strip():
            yield index, raw


def _check_line(raw: bytes, check: Any, problems: Problems) -> int:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(("INVALID_UTF8", "the line is not UTF-8", ""))
        return 0
    try:
        example = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(("INVALID_JSON", f"not JSON: {exc.msg} at column {exc.colno}", ""))
        return 0
    if not isinstance(example, dict):
        problems.append(("NOT_AN_OBJECT", "the line must be a JSON object", ""))
        return 0
    tokens: int = check(example, problems)
    return tokens


def _check_prompt_completion(example: dict[str, Any], problems: Problems) -> int:
    tokens = 0
    for name in ("prompt", "completion"):
        value = example.get(name)
        if not isinstance(value, str):
            problems.append((f"MISSING_{name.upper()}", f"{name} must be a string", name))
        else:
            tokens += estimate_tokens(value)
    if isinstance(example.get("completion"), str) and not example["completion"].strip():
        problems.append(("EMPTY_COMPLETION", "completion must not be empty", "completion"))
    return tokens


def _check_chat(example: dict[str, Any], problems: Problems) -> int:
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append(("MISSING_MESSAGES", "messages must be a non-empty list", "messages"))
        return 0
    tokens = 0
    assistants = 0
    for index, message in enumerate(messages):
        path = f"messages[{index}]"
        if not isinstance(message, dict):
            problems.append(("INVALID_MESSAGE", "a message must be an object", path))
            continue
        role = message.get("role")
        if role not in CHAT_ROLES:
            problems.append(
                (
                    "UNKNOWN_ROLE",
                    f"role must be one of {', '.join(sorted(CHAT_ROLES))}",
                    f"{path}.role",
                )
            )
            continue
        tokens += _TOKENS_PER_MESSAGE + _check_content(message, role, path, problems)
        if role == "assistant":
            assistants += 1
            weight = message.get("weight", 1)
            if weight not in (0, 1) or isinstance(weight, bool):
                problems.append(("INVALID_WEIGHT", "weight must be 0 or 1", f"{path}.weight"))
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            problems.append(
                (
                    "MISSING_TOOL_CALL_ID",
                    "a tool message needs tool_call_id",
                    f"{path}.tool_call_id",
                )
            )
    if assistants == 0:
        problems.append(
            ("NO_ASSISTANT_MESSAGE", "an example needs an assistant message", "messages")
        )
    tools = example.get("tools")
    if tools is not None:
        tokens += _check_tools(tools, problems)
    return tokens


def _check_content(message: dict[str, Any], role: str, path: str, problems: Problems) -> int:
    content = message.get("content")
    calls = message.get("tool_calls")
    if role == "assistant" and content is None and calls is not None:
        if not isinstance(calls, list) or not calls:
            problems.append(
                ("INVALID_TOOL_CALLS", "tool_calls must be a non-empty list", f"{path}.tool_calls")
            )
            return 0
        return estimate_tokens(json.dumps(calls))
    if isinstance(content, str):
        return estimate_tokens(content)
    if isinstance(content, list) and all(
        isinstance(part, dict) and isinstance(part.get("text"), str) for part in content
    ):
        return sum(estimate_tokens(part["text"]) for part in content)
    problems.append(
        ("INVALID_CONTENT", "content must be a string or a list of text parts", f"{path}.content")
    )
    return 0


def _check_tools(tools: Any, problems: Problems) -> int:
    if not isinstance(tools, list):
        problems.append(("INVALID_TOOLS", "tools must be a list", "tools"))
        return 0
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            problems.append(
                ("INVALID_TOOL", "a tool needs function.name", f"tools[{index}].function.name")
            )
    return estimate_tokens(json.dumps(tools))
