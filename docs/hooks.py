"""MkDocs hooks: pages generated from the code, so the docs cannot drift from it.

``<!-- zoo:openapi -->`` in a page becomes the HTTP API as the server declares it: every route of
``zoo serve``'s OpenAPI document, its request body and its responses, read from the same app that
serves ``/openapi.json``. (The CLI page uses the ``mkdocs-click`` extension for the same reason.)
"""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache

MARKER = "<!-- zoo:openapi -->"


@lru_cache(maxsize=1)
def _openapi() -> dict:
    from zoo.service.server import ServeSettings, create_app

    with tempfile.TemporaryDirectory() as home:
        return create_app(ServeSettings(home=home)).openapi()


def _ref(schema: dict) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[`{name}`](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_ref(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_ref(schema.get('items', {}))}"
    return f"`{schema.get('type', 'any')}`"


def _body(op: dict) -> str:
    content = (op.get("requestBody") or {}).get("content") or {}
    return ", ".join(f"{_ref(c.get('schema', {}))} (`{kind}`)" for kind, c in content.items()) or "none"


def render(spec: dict) -> str:
    out = [f"OpenAPI {spec.get('openapi', '')}, `{spec['info']['title']}` {spec['info']['version']}.", ""]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            out += [f"### `{method.upper()} {path}`", ""]
            if op.get("summary") or op.get("description"):
                out += [(op.get("description") or op.get("summary")).strip(), ""]
            params = op.get("parameters") or []
            if params:
                out += ["| parameter | in | required | type |", "|---|---|---|---|"]
                out += [f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | "
                        f"{_ref(p.get('schema', {}))} |" for p in params]
                out.append("")
            out += [f"**Request body:** {_body(op)}", "", "| status | meaning | body |", "|---|---|---|"]
            for status, resp in op.get("responses", {}).items():
                content = resp.get("content") or {}
                body = ", ".join(_ref(c.get("schema", {})) for c in content.values()) or "-"
                out.append(f"| {status} | {resp.get('description', '').strip()} | {body} |")
            out.append("")
    out += ["## Schemas", ""]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        out += [f"### {name}", ""]
        if schema.get("description"):
            out += [schema["description"].strip(), ""]
        props = schema.get("properties") or {}
        if props:
            required = set(schema.get("required") or [])
            out += ["| field | type | required | description |", "|---|---|---|---|"]
            for field, s in props.items():
                desc = (s.get("description") or "").replace("\n", " ").replace("|", "\\|")
                out.append(f"| `{field}` | {_ref(s)} | {'yes' if field in required else 'no'} | {desc} |")
            out.append("")
        elif "enum" in schema:
            out += ["One of: " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"]), ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, render(_openapi()))
    return markdown
