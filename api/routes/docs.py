"""The API's own description: the OpenAPI document and a browsable page rendered from it."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from api.security import Principal, reader

router = APIRouter(include_in_schema=False)

METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
CONSTRAINTS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minItems", "≥ {} items"),
    ("maxItems", "≤ {} items"),
    ("pattern", "matches {}"),
)
_CODE = re.compile(r"`([^`]+)`")

_CSS = """
body { font: 15px/1.5 system-ui, sans-serif; color: #1d2330; margin: 0; background: #f4f6f8; }
header { background: #0b5394; color: #fff; padding: 1rem 2rem; }
header h1 { margin: 0; font-size: 1.4rem; }
main { display: grid; grid-template-columns: 21rem 1fr; gap: 2rem; padding: 1.5rem 2rem; }
nav { position: sticky; top: 1rem; align-self: start; max-height: 92vh; overflow: auto;
      font-size: .85rem; }
nav ul { list-style: none; padding-left: .8rem; margin: .2rem 0 .8rem; }
nav a { color: #0b5394; text-decoration: none; }
section.op { background: #fff; border-radius: 6px; box-shadow: 0 1px 4px #0002;
             padding: 1rem 1.3rem; margin: 0 0 1.2rem; }
h2 { border-bottom: 2px solid #0b5394; padding-bottom: .2rem; margin-top: 2rem; }
h3 { margin: 0 0 .4rem; font-size: 1.05rem; }
h4 { margin: 1rem 0 .3rem; font-size: .9rem; text-transform: uppercase; color: #556; }
.m { display: inline-block; min-width: 4.2rem; text-align: center; border-radius: 4px;
     color: #fff; font: 600 .8rem monospace; padding: .15rem .3rem; margin-right: .5rem; }
.get { background: #2f7d32; } .put { background: #b26a00; } .post { background: #0b5394; }
.delete { background: #a32020; } .patch { background: #6a3d9a; }
.head, .options { background: #556; }
.path { font: 600 1rem monospace; }
code { background: #eef1f5; padding: 0 .25rem; border-radius: 3px; font-size: .9em; }
table { border-collapse: collapse; width: 100%; font-size: .88rem; }
th, td { text-align: left; vertical-align: top; padding: .3rem .6rem;
         border-bottom: 1px solid #dde; }
th { background: #eef1f5; }
.req { color: #a32020; font-weight: 600; }
.muted { color: #667; }
"""


@router.get("/api/openapi.json")
def openapi_document(request: Request, _: Principal = Depends(reader)) -> JSONResponse:
    """Serve the OpenAPI document (signed-in callers only, like the rest of the API)."""
    return JSONResponse(request.app.openapi())


@router.get("/api/docs", response_class=HTMLResponse)
def docs_page(request: Request, _: Principal = Depends(reader)) -> HTMLResponse:
    """Serve the browsable API reference, rendered here: no scripts from elsewhere."""
    return HTMLResponse(render(request.app.openapi()))


def render(document: dict[str, Any]) -> str:
    """Render an OpenAPI 3 document as one self-contained HTML page."""
    info = document.get("info", {})
    groups = _by_tag(document)
    schemas = document.get("components", {}).get("schemas", {})
    toc = "".join(
        f'<li><a href="#tag-{_slug(tag)}">{_e(tag)}</a><ul>'
        + "".join(
            f'<li><a href="#{_anchor(m, p, op)}">{_e(m.upper())} {_e(p)}</a></li>'
            for m, p, op in ops
        )
        + "</ul></li>"
        for tag, ops in groups.items()
    )
    if schemas:
        toc += '<li><a href="#schemas">Schemas</a></li>'
    body = "".join(
        f'<h2 id="tag-{_slug(tag)}">{_e(tag)}</h2>'
        + "".join(_operation(m, p, op, document) for m, p, op in ops)
        for tag, ops in groups.items()
    )
    if schemas:
        body += '<h2 id="schemas">Schemas</h2>' + "".join(
            _schema_section(name, schema, document) for name, schema in schemas.items()
        )
    title = f"{info.get('title', 'API')} {info.get('version', '')}".strip()
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1></header><main>"
        f"<nav><strong>Contents</strong><ul>{toc}</ul>"
        '<p><a href="/api/openapi.json">openapi.json</a></p></nav>'
        f"<div>{_text(info.get('description', ''))}{body}</div>"
        "</main></body></html>"
    )


def _by_tag(document: dict[str, Any]) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    # Tags in the order they first appear, so the page follows the routers' order.
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for tag in document.get("tags", []):
        groups.setdefault(tag["name"], [])
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                op = item[method]
                tag = (op.get("tags") or ["other"])[0]
                groups.setdefault(tag, []).append((method, path, op))
    return {tag: ops for tag, ops in groups.items() if ops}


def _operation(method: str, path: str, op: dict[str, Any], document: dict[str, Any]) -> str:
    parts = [
        f'<section class="op" id="{_anchor(method, path, op)}">',
        f'<h3><span class="m {_e(method)}">{_e(method.upper())}</span>'
        f'<span class="path">{_e(path)}</span></h3>',
    ]
    if op.get("summary"):
        parts.append(f"<p><strong>{_e(op['summary'])}</strong></p>")
    parts.append(_text(op.get("description", "")))
    params = [_resolve(p, document) for p in op.get("parameters", [])]
    if params:
        rows = [
            (
                f"<code>{_e(p.get('name', ''))}</code>",
                _e(p.get("in", "")),
                _type(p.get("schema", {}), document),
                _required(p.get("required", False)),
                _describe(p, p.get("schema", {})),
            )
            for p in params
        ]
        headings = ("name", "in", "type", "use", "description")
        parts.append("<h4>Parameters</h4>" + _table(headings, rows))
    body = op.get("requestBody")
    if body:
        body = _resolve(body, document)
        for media, content in body.get("content", {}).items():
            parts.append(
                f"<h4>Request body <span class='muted'>{_e(media)}"
                f"{'' if body.get('required') else ', optional'}</span></h4>"
                + _fields(content.get("schema", {}), document)
            )
    rows = []
    for code, response in sorted(op.get("responses", {}).items()):
        response = _resolve(response, document)
        content = response.get("content", {})
        shape = "; ".join(
            f"{_e(media)}: {_type(c.get('schema', {}), document)}" if c.get("schema") else _e(media)
            for media, c in content.items()
        )
        rows.append((f"<strong>{_e(code)}</strong>", _e(response.get("description", "")), shape))
    if rows:
        parts.append("<h4>Responses</h4>" + _table(("status", "meaning", "body"), rows))
    parts.append("</section>")
    return "".join(parts)


def _schema_section(name: str, schema: dict[str, Any], document: dict[str, Any]) -> str:
    return (
        f'<section class="op" id="schema-{_slug(name)}"><h3>{_e(name)}</h3>'
        f"{_text(schema.get('description', ''))}{_fields(schema, document)}</section>"
    )


def _fields(schema: dict[str, Any], document: dict[str, Any]) -> str:
    """A table of an object's fields (following a $ref to it), or just its type."""
    target = _resolve(schema, document)
    properties = target.get("properties")
    if not properties:
        return f"<p>{_type(schema, document)}</p>"
    required = set(target.get("required", []))
    rows = [
        (
            f"<code>{_e(name)}</code>",
            _type(prop, document),
            _required(name in required),
            _describe(prop, prop),
        )
        for name, prop in properties.items()
    ]
    extra = ""
    if target.get("additionalProperties") is False:
        extra = "<p class='muted'>Other fields are refused.</p>"
    return _table(("field", "type", "use", "description"), rows) + extra


def _type(schema: dict[str, Any], document: dict[str, Any]) -> str:
    """Name a schema's type in HTML: references link to their section under Schemas."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{_slug(name)}">{_e(name)}</a>'
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_type(s, document) for s in schema[key])
    if "allOf" in schema:
        return " &amp; ".join(_type(s, document) for s in schema["allOf"])
    if "const" in schema:
        return f"<code>{_e(repr(schema['const']))}</code>"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}), document)}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'], document)}"
    shown = _e(kind if isinstance(kind, str) else " | ".join(kind))
    if "format" in schema:
        shown += f" <span class='muted'>({_e(schema['format'])})</span>"
    if "enum" in schema:
        shown += " one of " + ", ".join(f"<code>{_e(str(v))}</code>" for v in schema["enum"])
    return shown


def _describe(holder: dict[str, Any], schema: dict[str, Any]) -> str:
    """The description with constraints and default, for a parameter or field row."""
    notes = [note.format(_number(schema[key])) for key, note in CONSTRAINTS if key in schema]
    for option in schema.get("anyOf", []):
        notes += [note.format(_number(option[key])) for key, note in CONSTRAINTS if key in option]
    if "default" in schema and schema["default"] is not None:
        notes.append(f"default {schema['default']!r}")
    text = holder.get("description") or schema.get("description") or ""
    extra = f" <span class='muted'>{_e('; '.join(notes))}</span>" if notes else ""
    return _inline(text) + extra


def _number(value: Any) -> Any:
    # JSON numbers come back as floats (ge=1 is "minimum": 1.0); show whole ones as such.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _resolve(node: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s (#/components/...) to the object they name."""
    seen = set()
    while "$ref" in node and node["$ref"].startswith("#/") and node["$ref"] not in seen:
        seen.add(node["$ref"])
        target: Any = document
        for key in node["$ref"][2:].split("/"):
            target = target.get(key.replace("~1", "/").replace("~0", "~"), {})
        node = target
    return node


def _table(headings: Iterable[str], rows: Iterable[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _required(flag: bool) -> str:
    return "<span class='req'>required</span>" if flag else "<span class='muted'>optional</span>"


def _text(text: str) -> str:
    """Escape prose and keep its paragraphs and `code` spans."""
    return "".join(f"<p>{_inline(p)}</p>" for p in re.split(r"\n\s*\n", text) if p.strip())


def _inline(text: str) -> str:
    # Escaped first, so a backtick span can only wrap text that is already safe.
    return _CODE.sub(r"<code>\1</code>", _e(text))


def _anchor(method: str, path: str, op: dict[str, Any]) -> str:
    return "op-" + _slug(op.get("operationId") or f"{method}-{path}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
