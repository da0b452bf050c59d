"""What the adapter tells the model about the answer it wants, from the task's pydantic model.

`strict_json_schema` turns the model's JSON schema into the subset that strict structured outputs
accept (the `json_schema` response format, named by `schema_name`); `json_mode_instructions` is the
system text that describes the schema when the server only has JSON mode (`json_object`);
`describe_validation_errors` names, one line per problem, what is wrong with an answer that does
not validate, and `repair_instructions` turns those lines into the user turn asking for a fix.
Pure functions: no I/O and no SDK.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

from pydantic import BaseModel, ValidationError

# Keywords outside the subset that strict structured outputs accept; pydantic still enforces them.
STRICT_UNSUPPORTED_KEYWORDS = ("default", "minLength", "maxLength")


def schema_name(task: str) -> str:
    """The task as a json_schema name (letters, digits, `_` and `-`, at most 64 characters)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", task)[:64] or "answer"


def describe_validation_errors(exc: ValidationError) -> list[str]:
    """One line per problem: the field path, what is wrong, and (briefly) what was given."""
    lines = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"]) or "(the whole answer)"
        line = f"{path}: {error['msg']}"
        if error["type"] not in ("missing", "json_invalid") and "input" in error:
            given = json.dumps(error["input"], default=str)
            line += f" (got {given[:80] + '...' if len(given) > 80 else given})"
        lines.append(line)
    return lines


def repair_instructions(problems: list[str], *, cut_off: bool = False) -> str:
    """The user turn that asks the model to fix its previous answer."""
    text = "Your previous answer is not valid for the required JSON schema. Fix these problems:\n"
    text += "\n".join(f"- {problem}" for problem in problems[:20])
    if cut_off:
        text += "\n- the answer was cut off at the token limit: keep it shorter"
    text += (
        "\nReply with only the corrected JSON object: no explanation, no code fences, and keep "
        "every field that was already right."
    )
    return text


def json_mode_instructions(task: str, response_model: type[BaseModel]) -> str:
    """The system text that describes the expected JSON when only JSON mode is available."""
    schema = json.dumps(response_model.model_json_schema(), separators=(",", ":"))
    return (
        f"Answer with a single JSON object for the task `{task}`, with no prose and no code "
        f"fences. It must validate against this JSON schema:\n{schema}"
    )


def strict_json_schema(response_model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the subset strict structured outputs accept.

    Every object forbids extra properties and lists all its properties as required (optional ones
    are nullable or take their default explicitly); `$ref`s with siblings are inlined; keywords
    strict mode rejects are dropped, length limits being kept as words in the description.
    """
    schema = response_model.model_json_schema()
    return cast(dict[str, Any], _make_strict(schema, root=schema))


def _make_strict(node: object, *, root: dict[str, Any]) -> object:
    if isinstance(node, list):
        return [_make_strict(item, root=root) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        resolved = _resolve_ref(root, ref)
        node = {**resolved, **{k: v for k, v in node.items() if k != "$ref"}}
    limits = [
        f"{word} {node[key]}"
        for key, word in (("minLength", "minimum length"), ("maxLength", "maximum length"))
        if key in node
    ]
    for key in STRICT_UNSUPPORTED_KEYWORDS:
        node.pop(key, None)
    if limits:
        description = str(node.get("description", "")).strip()
        node["description"] = (description + " " if description else "") + (
            "(" + ", ".join(limits) + ")"
        )
    strict: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "$defs"):
            strict[key] = {name: _make_strict(sub, root=root) for name, sub in value.items()}
        else:
            strict[key] = _make_strict(value, root=root)
    if strict.get("type") == "object" or "properties" in strict:
        strict["additionalProperties"] = False
        strict["required"] = list(strict.get("properties", {}))
    return strict


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"unsupported $ref {ref!r}")
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    return dict(target)
