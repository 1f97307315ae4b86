"""What the HTTP layer checks before a request reaches validation and its handler, the same on
Lambda and locally: the path parameters (percent-decoded once, each by its grammar), and the body
(size, media type, UTF-8, nesting, JSON syntax). Also the answer for a request no route takes:
405 with ``Allow`` for a known path, 400 naming a path parameter outside its grammar, else 404.

Every refusal is the one error envelope with a 4xx: nothing here lets a request through to fail
later with a 500 (``RecursionError`` on deep JSON, ``UnicodeDecodeError`` on a non-UTF-8 body,
Powertools' unsupported-content-type error)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from meterbill.api.errors import RequestRejected
from meterbill.domain.errors import InvalidField
from meterbill.domain.json_body import strict_loads

JSON = "application/json"
CLOUDEVENT = "application/cloudevents+json"
CLOUDEVENTS = "application/cloudevents-batch+json"
EVENTS_MEDIA = (JSON, CLOUDEVENT, CLOUDEVENTS)
MAX_BODY = 256 * 1024              # any JSON body but a batch of events: far above a real plan or customer
MAX_EVENTS_BODY = 5 * 1024 * 1024  # 1,000 events; below Lambda's 6 MB request payload limit
MAX_DEPTH = 32                     # no documented body nests deeper than 6


@dataclass(frozen=True, slots=True)
class PathParameter:
    """A path parameter's grammar: ``check(value, name)`` raises ``InvalidField``; ``schema`` is the
    same rule for the OpenAPI document."""

    check: Callable[[Any, str], Any]
    schema: dict[str, Any]
    description: str
    example: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BodyRule:
    media: tuple[str, ...]
    max_bytes: int
    parse_json: bool  # parsed here (cached for Powertools' validation); ingest parses its own


def body_rule(method: str, path: str, has_body_model: bool) -> BodyRule | None:
    if method == "POST" and path == "/v1/events":
        return BodyRule(EVENTS_MEDIA, MAX_EVENTS_BODY, parse_json=False)
    return BodyRule((JSON,), MAX_BODY, parse_json=True) if has_body_model else None


# -- path parameters ----------------------------------------------------------------------------
def decode_segment(value: str, name: str) -> str:
    """A path segment as the client meant it. API Gateway may pass the path percent-encoded
    (and the local adapter passes it so, like ``rawPath``): ``%XX`` is decoded here, once. No id or
    code may contain ``%``, so a value that still holds one after a proxy decoded it is decoded
    again without ambiguity, and a value that decodes to something outside its grammar is refused."""
    if "%" not in value:
        return value
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise InvalidField(name, "is not UTF-8 once percent-decoded", "invalid_encoding") from None


def check_query(params: Mapping[str, list[str]] | None, rules: Mapping[str, PathParameter]) -> None:
    for name, values in (params or {}).items():
        rule = rules.get(name)
        if rule is not None:
            for value in values:
                rule.check(value, name)


def check_path(args: dict[str, str], rules: Mapping[str, PathParameter]) -> None:
    """Decode and check every path parameter in place (before Powertools validates them)."""
    for name, raw in list(args.items()):
        value = decode_segment(raw, name)
        rule = rules.get(name)
        if rule is not None:
            rule.check(value, name)
        args[name] = value


# -- body -----------------------------------------------------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON ``text`` nests arrays/objects deeper than about ``limit`` (strings ignored), so
    deep that parsing it could exhaust Python's recursion. Peels the innermost pairs at most
    ``limit`` times with C-speed replaces: what is then left nests deeper. Brackets that stop
    pairing up are not JSON: the parser may say why, unless they could make it recurse too far."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(limit):
        if not brackets:
            return False
        peeled = brackets.replace("[]", "").replace("{}", "")
        if peeled == brackets:
            return len(brackets) > limit
        brackets = peeled
    return bool(brackets)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def check_body(event: Any, rule: BodyRule | None) -> None:
    """Raise ``RequestRejected`` (413, 415) or ``InvalidField('body')`` for a body the route
    cannot take; on success a JSON body is parsed and cached on the event."""
    body = event.body
    if rule is None or not body:
        return
    if event.is_base64_encoded:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidField("body", "is not valid base64", "invalid_encoding") from None
    else:
        data = body.encode("utf-8", "surrogatepass")
    if len(data) > rule.max_bytes:
        raise RequestRejected(413, "payload_too_large",
                              f"the body holds {len(data)} bytes; this operation takes at most {rule.max_bytes}",
                              "body")
    media = media_type(event.headers.get("content-type"))
    if media and media not in rule.media:
        raise RequestRejected(415, "unsupported_media_type",
                              f"Content-Type '{media}' is not supported here; send the JSON body with "
                              f"Content-Type: {' or '.join(rule.media)} (curl: -H 'Content-Type: {JSON}')",
                              "content-type")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidField("body", f"is not UTF-8 text (byte {exc.start})", "invalid_encoding") from None
    if too_deep(text):
        raise InvalidField("body", f"nests arrays or objects more than {MAX_DEPTH} levels deep", "too_deep")
    if rule.parse_json:
        _plain_json_media_type(event)
        event._json_deserializer = strict_loads   # a key repeated in one object is a 400, never "last wins"
        try:
            doc = event.json_body  # parsed once, here; Powertools' validation reads the cache
        except ValueError as exc:  # JSONDecodeError, and an integer of more than 4,300 digits
            raise InvalidField("body", f"is not valid JSON ({str(exc)[:80]})", "invalid_json") from None
        where = not_unicode(doc)
        if where is not None:
            raise InvalidField(where or "body", "holds an unpaired surrogate (\\ud800-\\udfff): not Unicode text",
                               "invalid_unicode")


def not_unicode(value: Any, path: str = "") -> str | None:
    """The path of the first string (or key) of parsed JSON that is not Unicode text: JSON's
    ``"\\ud800"`` escapes parse to lone surrogates, which UTF-8, and so DynamoDB, cannot store."""
    if type(value) is str:
        return None if value.isascii() or _encodes(value) else path
    if type(value) is dict:
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if not _encodes(key):
                return path or "body"
            found = not_unicode(item, inner)
            if found is not None:
                return found
    elif type(value) is list:
        for i, item in enumerate(value):
            found = not_unicode(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain_json_media_type(event: Any) -> None:
    """Powertools' validation reads a body as JSON only if Content-Type starts with exactly
    'application/json' (media types are case-insensitive: RFC 9110, 8.3.1)."""
    headers = event.raw_event.get("headers") or {}
    for name in list(headers):
        if name.lower() == "content-type":
            headers[name] = JSON


# -- no route -------------------------------------------------------------------------------------
_PARAM = re.compile(r"<(\w+)>")


@dataclass(frozen=True, slots=True)
class Template:
    method: str
    path: str
    pattern: re.Pattern[str]  # any segment text in place of each parameter


def templates(routes: list[Any]) -> list[Template]:
    out = []
    for route in routes:
        parts = re.split(r"(<\w+>)", route.path)
        loose = "".join(f"(?P<{p[1:-1]}>[^/]+)" if _PARAM.fullmatch(p) else re.escape(p) for p in parts)
        out.append(Template(route.method, route.path, re.compile(f"^{loose}$")))
    return out


def no_route(method: str, path: str, routes: list[Template], rules: Mapping[str, PathParameter]) -> Exception:
    """Why no route takes ``method path``: a route of another method takes the path, its parameters
    valid (405, ``Allow``); a route of this method would, but for a path parameter outside its
    grammar (400 naming it); otherwise 404."""
    allowed: set[str] = set()
    faults: list[InvalidField] = []
    for template in routes:
        match = template.pattern.match(path)
        if match is None:
            continue
        try:
            check_path(dict(match.groupdict()), rules)
        except InvalidField as exc:
            if template.method == method:
                faults.append(exc)
            continue
        if template.method != method:
            allowed.add(template.method)
    if allowed:
        methods = ", ".join(sorted(allowed))
        return RequestRejected(405, "method_not_allowed", f"{method} is not allowed here; allowed: {methods}",
                               "method", headers={"Allow": methods})
    if faults:
        return faults[0]
    return RequestRejected(404, "not_found", "no such route")
