"""What the sweep tries: every operation the served OpenAPI document lists, with example
inputs built from its own schemas, and the strings a hostile user would put in them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

METHODS = ("get", "put", "post", "patch", "delete")
WRITES = frozenset({"put", "post", "patch", "delete"})

# Each is tried in every string field; markup carries a marker the browser test looks for.
MARKER = "xss-fleet"
MARKUP = (
    f'<img src=x onerror=alert("{MARKER}-img")>',
    f'"><script>alert("{MARKER}-script")</script>',
    f"<svg/onload=alert('{MARKER}-svg')>",
    f"javascript:alert('{MARKER}-href')",
)
CORPUS: tuple[tuple[str, str], ...] = (
    ("sql quote", "' OR '1'='1"),
    ("sql statement", "1; DROP TABLE vehicles; --"),
    ("sql comment", "x'/**/UNION/**/SELECT/**/password_hash/**/FROM/**/users--"),
    *((f"markup {i}", m) for i, m in enumerate(MARKUP)),
    ("nul", "a\x00b"),
    ("lone surrogate", "x\ud800y"),
    ("lone low surrogate", "\udfff"),
    ("bidi controls", "\u202eevil\u202c \u2066x\u2069"),
    ("crlf", "a\r\nSet-Cookie: injected=1\r\n\r\n"),
    ("2 MB", "A" * 2_000_000),
)


@dataclass(frozen=True)
class Operation:
    """One method on one path of the document."""

    method: str
    path: str
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def is_write(self) -> bool:
        return self.method in WRITES

    @property
    def is_open(self) -> bool:
        """Whether the document says it needs no credentials (security absent or empty)."""
        security = self.spec.get("security")
        return not security or {} in security

    @property
    def cookie_needs_csrf(self) -> bool:
        return any("csrf" in option for option in self.spec.get("security") or [])


def operations(document: dict[str, Any]) -> list[Operation]:
    """Return every operation in the document, in its order."""
    return [
        Operation(method, path, spec)
        for path, item in document["paths"].items()
        for method, spec in item.items()
        if method in METHODS
    ]


@dataclass
class Examples:
    """Known-good values for fields by name (ids of the sweep's world), else by type."""

    ids: dict[str, int]
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def time(self, name: str) -> str:
        later = any(w in name for w in ("end", "eta", "until", "new_end", "return"))
        moment = self.now + timedelta(hours=30 if later else 26)
        return moment.replace(microsecond=0).isoformat()


class Schemas:
    """The document's schemas, with `$ref` and nullable `anyOf` resolved."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.components = document.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while True:
            if "$ref" in schema:
                schema = self.components[schema["$ref"].rsplit("/", 1)[-1]]
            elif "anyOf" in schema or "oneOf" in schema:
                options = schema.get("anyOf") or schema.get("oneOf")
                schema = next((o for o in options if o.get("type") != "null"), options[0])
            elif "allOf" in schema and len(schema["allOf"]) == 1:
                schema = schema["allOf"][0]
            else:
                return schema

    def example(self, schema: dict[str, Any], ex: Examples, name: str = "") -> Any:
        """Return a value the schema accepts (as far as names and types tell)."""
        s = self.resolve(schema)
        if "enum" in s:
            return s["enum"][0]
        if "examples" in s and s.get("type") != "object":
            return s["examples"][0]
        kind = s.get("type")
        if kind == "object" or "properties" in s:
            props = s.get("properties", {})
            # Every string property too, required or not: each is a field to inject into.
            keep = set(s.get("required", [])) | {
                k for k, v in props.items() if self.resolve(v).get("type") == "string"
            }
            return {k: self.example(v, ex, k) for k, v in props.items() if k in keep}
        if kind == "array":
            return [self.example(s.get("items", {}), ex, name)]
        if kind == "integer":
            return ex.ids.get(name, max(1, int(s.get("minimum", 1))))
        if kind == "number":
            return 2.0
        if kind == "boolean":
            return False
        if kind == "string":
            if s.get("format") == "date-time" or s.get("pattern", "").startswith("^20"):
                return ex.time(name)
            if s.get("format") in ("uri", "url") or name in ("endpoint",):
                return "https://push.example.com/send/sweep"
            return "sweep"
        return None


def string_leaves(value: Any, at: tuple = ()) -> Iterator[tuple]:
    """Yield the path (keys and list indexes) of every string in an example value."""
    if isinstance(value, str):
        yield at
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from string_leaves(item, (*at, i))
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from string_leaves(item, (*at, k))


def with_value(body: Any, at: tuple, value: Any) -> Any:
    """Return a copy of `body` with the field at `at` set to `value`."""
    if not at:
        return value
    copy = list(body) if isinstance(body, list) else dict(body)
    head = at[0]
    copy[head] = with_value(copy[head], at[1:], value)
    return copy


def json_bytes(body: Any) -> bytes:
    """Encode as JSON text: lone surrogates travel as `\\ud800` escapes, as a browser's would."""
    return json.dumps(body, ensure_ascii=True).encode()


def url_text(value: str) -> str:
    """Percent-encode any text for a path or query, lone surrogates as their raw bytes."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def fill_path(op: Operation, ex: Examples, override: dict[str, str] | None = None) -> str:
    """Return the operation's path with every path parameter filled in."""
    path = op.path
    for p in op.spec.get("parameters", []):
        if p["in"] != "path":
            continue
        if override and p["name"] in override:
            text = url_text(override[p["name"]])
        else:
            schema = p.get("schema", {})
            value = ex.ids.get(p["name"], 1) if schema.get("type") == "integer" else "sweep"
            text = url_text(str(value))
        path = path.replace("{" + p["name"] + "}", text)
    return path


def request_schema(op: Operation) -> dict[str, Any] | None:
    content = op.spec.get("requestBody", {}).get("content", {})
    return content.get("application/json", {}).get("schema")
