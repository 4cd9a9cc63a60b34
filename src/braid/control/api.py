"""The portal's REST API (aiohttp, on the portal's own event loop), dashboard and /metrics.

    GET  /openapi.json                                 the OpenAPI 3 schema (no token)
    GET  /  /dashboard/*                               the live dashboard (static; no token)
    GET  /metrics                                      Prometheus text format
    GET  /api/v1/portal | /statistics | /policies      reads
    PATCH /api/v1/policies                             {"scheduler": ...}
    GET  /api/v1/sessions[/{session_id}]               the session table
    DELETE /api/v1/sessions/{session_id}               close a session
    GET|PATCH|DELETE /api/v1/sessions/{sid}/paths/{path_id}
    GET|POST /api/v1/links, GET|PATCH|DELETE /api/v1/links/{name}   (local portal)

Everything but the schema and the dashboard's static files needs
`Authorization: Bearer TOKEN`. Errors are JSON `{"error": {"status", "message"}}` with
the matching status code; a handler never lets a traceback out. Handlers run on the
portal's loop, so they read and change the portal directly through `PortalService`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from braid.control.service import RUNTIME_PARAMETERS, LinkSpec, PortalService, ServiceError

log = logging.getLogger("braid.api")

DEFAULT_API_ADDRESS = "127.0.0.1"
DEFAULT_API_PORT = 7180
DASHBOARD_DIR = Path(__file__).with_name("dashboard")
MAX_BODY_BYTES = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- the schema ----------------------------------------------------------------------------


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_ERROR_RESPONSE = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _json(ref: str, description: str = "ok") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR_RESPONSE for code in (401, *codes)}


_SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "session id, 8 lowercase hex digits",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{8}$"},
}
_PATH_ID = {
    "name": "path_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0, "maximum": 255},
}
_LINK_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"},
}
_PORT = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ENDPOINT_PATTERN = rf"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):{_PORT}$"
_METRIC = {"type": "integer", "minimum": 0, "maximum": 65535}
_RATE = {"type": "integer", "minimum": 1000, "maximum": 10**12}


def _body(ref: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


_PATH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["path_id", "state", "enabled", "metric"],
    "properties": {
        "path_id": {"type": "integer"},
        "name": _nullable({"type": "string"}),
        "endpoint": _nullable({"type": "string"}),
        "state": {"type": "string", "enum": ["up", "degraded", "probation", "down", "disabled"]},
        "enabled": {"type": "boolean"},
        "rate_bps": _nullable({"type": "integer"}),
        "download_bps": _nullable(
            {
                "type": "integer",
                "description": "local portal: the link's download rate, told to the remote",
            }
        ),
        "metric": {"type": "integer"},
        "datagrams_sent": {"type": "integer"},
        "bytes_sent": {"type": "integer"},
        "datagrams_received": {"type": "integer"},
        "bytes_received": {"type": "integer"},
        "delivered": {"type": "integer"},
        "lost": {"type": "integer"},
        "loss_rate": _nullable({"type": "number"}),
        "srtt": _nullable({"type": "number"}),
        "min_rtt": _nullable({"type": "number"}),
        "rttvar": _nullable({"type": "number"}),
        "jitter": _nullable({"type": "number"}),
        "congestion": {"type": "string", "description": "congestion controller state"},
        "pacing_rate_bps": {"type": "integer", "description": "current pacing rate, bit/s"},
        "estimated_rate_bps": {"type": "integer", "description": "estimated capacity, bit/s"},
        "cwnd_bytes": {"type": "integer"},
        "inflight_bytes": {"type": "integer"},
        "queued_bytes": {"type": "integer", "description": "waiting in braid's pacer"},
        "standby": {"type": "boolean", "description": "bandwidth-on-demand standby"},
        "estimate_restarts": {
            "type": "integer",
            "description": "times the estimate was lowered: the link's queue stood or overflowed",
        },
        "reprobes": {
            "type": "integer",
            "description": "times the path probed again, after idle, for the rate it had",
        },
        "fill_bytes": {
            "type": "integer",
            "description": "bytes of fill PROBEs sent to find the path's rate (probe_rates)",
        },
    },
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
            }
        },
    },
    "Portal": {
        "type": "object",
        "required": ["role", "tunnel", "version", "uptime", "scheduler", "sessions", "counters"],
        "properties": {
            "role": {"type": "string", "enum": ["local", "remote"]},
            "tunnel": {"type": "string"},
            "version": {"type": "string"},
            "started": {"type": "number"},
            "uptime": {"type": "number"},
            "scheduler": {"type": "string"},
            "sessions": {"type": "integer"},
            "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
            "tun_queue_length": {
                "type": "integer",
                "description": "packets the kernel may queue for the TUN device now",
            },
        },
    },
    "Path": _PATH_SCHEMA,
    "Session": {
        "type": "object",
        "required": ["session_id", "role", "up_since", "parameters", "counters", "paths"],
        "properties": {
            "session_id": {"type": "string", "pattern": "^[0-9a-f]{8}$"},
            "role": {"type": "string", "enum": ["local", "remote"]},
            "peer": _nullable({"type": "string"}),
            "up_since": {"type": "number"},
            "closed": {"type": "boolean"},
            "early_drop_active": {
                "type": "boolean",
                "description": "early drop on (off while a path is down or just returned)",
            },
            "parameters": {"type": "object"},
            "egress": {"type": "array", "items": {"type": "string"}},
            "counters": {"type": "object"},
            "paths": {"type": "array", "items": {"$ref": "#/components/schemas/Path"}},
        },
    },
    "SessionList": {
        "type": "object",
        "required": ["sessions"],
        "properties": {
            "sessions": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}}
        },
    },
    "PathUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "metric": _METRIC,
            "rate_bps": _nullable(_RATE),
            "download_bps": _nullable(_RATE),
            "enabled": {"type": "boolean"},
        },
    },
    "Link": {
        "type": "object",
        "required": ["name", "path_id", "enabled", "state", "metric"],
        "properties": {
            "name": {"type": "string"},
            "path_id": {"type": "integer"},
            "enabled": {"type": "boolean"},
            "state": {
                "type": "string",
                "enum": ["up", "degraded", "probation", "down", "disabled"],
            },
            "endpoint": _nullable({"type": "string"}),
            "rate_bps": _nullable({"type": "integer"}),
            "download_bps": _nullable({"type": "integer"}),
            "metric": {"type": "integer"},
        },
    },
    "LinkList": {
        "type": "object",
        "required": ["links"],
        "properties": {"links": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}}},
    },
    "LinkCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "remote"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"},
            "remote": {
                "type": "string",
                "description": "HOST:PORT or [V6]:PORT",
                "pattern": ENDPOINT_PATTERN,
            },
            "interface": _nullable({"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,15}$"}),
            "source": _nullable({"type": "string", "pattern": "^[0-9A-Fa-f:.]{2,45}$"}),
            "rate_bps": _nullable(_RATE),
            "download_bps": _nullable(_RATE),
            "metric": _METRIC,
        },
    },
    "Policies": {
        "type": "object",
        "required": ["scheduler", "schedulers", "links"],
        "properties": {
            "scheduler": {"type": "string"},
            "schedulers": {"type": "array", "items": {"type": "string"}},
            "keepalive_interval": {"type": "number"},
            "dead_interval": {"type": "number"},
            "links": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}},
        },
    },
    "PolicyUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "scheduler": {"type": "string", "enum": []},
            "parameters": {"$ref": "#/components/schemas/Parameters"},
            "classes": {"$ref": "#/components/schemas/ClassUpdates"},
        },
    },
    "ClassUpdates": {
        "type": "object",
        "description": "traffic class name -> its new scheduler (null: the session's);"
        " an unknown class is 404",
        "additionalProperties": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scheduler"],
            "properties": {"scheduler": {"type": "string", "nullable": True, "enum": []}},
        },
    },
    "Parameters": {
        "type": "object",
        "description": "run-time session parameters (thresholds); a combination the session"
        " refuses (dead_interval <= keepalive_interval, bod_lower >= bod_upper) is 409",
        "additionalProperties": False,
        "properties": {},
    },
    "SessionUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "scheduler": {"type": "string", "enum": []},
            "parameters": {"$ref": "#/components/schemas/Parameters"},
            "classes": {"$ref": "#/components/schemas/ClassUpdates"},
        },
    },
    "Statistics": {"type": "object", "required": ["role", "counters", "sessions"]},
}


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3.0 description of this API."""
    from braid import __version__
    from braid.core.scheduler import SCHEDULERS

    schemas = json.loads(json.dumps(_SCHEMAS))
    for name in ("PolicyUpdate", "SessionUpdate"):
        schemas[name]["properties"]["scheduler"]["enum"] = list(SCHEDULERS)
    class_scheduler = schemas["ClassUpdates"]["additionalProperties"]["properties"]["scheduler"]
    class_scheduler["enum"] = [*SCHEDULERS, None]
    schemas["Parameters"]["properties"] = {
        name: {
            "type": "integer" if kind is int else "number",
            "minimum": low,
            "maximum": high,
        }
        for name, (low, high, kind) in RUNTIME_PARAMETERS.items()
    }
    no_content = {"204": {"description": "done"}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "braid portal API",
            "version": __version__,
            "description": "Sessions, paths, links, statistics and policies of a braid portal;"
            " changes apply at run time.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "paths": {
            "/api/v1/portal": {
                "get": {
                    "operationId": "getPortal",
                    "summary": "the portal, its counters",
                    "responses": {"200": _json("Portal"), **_errors()},
                }
            },
            "/api/v1/statistics": {
                "get": {
                    "operationId": "getStatistics",
                    "summary": "the full statistics snapshot",
                    "responses": {"200": _json("Statistics"), **_errors()},
                }
            },
            "/api/v1/policies": {
                "get": {
                    "operationId": "getPolicies",
                    "responses": {"200": _json("Policies"), **_errors()},
                },
                "patch": {
                    "operationId": "setPolicies",
                    "summary": "scheduler, class schedulers and thresholds of every session"
                    " (and new ones)",
                    "requestBody": _body("PolicyUpdate"),
                    "responses": {"200": _json("Policies"), **_errors(400, 404, 409, 422)},
                },
            },
            "/api/v1/sessions": {
                "get": {
                    "operationId": "listSessions",
                    "summary": "the session table",
                    "responses": {"200": _json("SessionList"), **_errors()},
                }
            },
            "/api/v1/sessions/{session_id}": {
                "parameters": [_SESSION_ID],
                "get": {
                    "operationId": "getSession",
                    "responses": {"200": _json("Session"), **_errors(404)},
                },
                "patch": {
                    "operationId": "updateSession",
                    "summary": "this session's scheduler, class schedulers and thresholds",
                    "requestBody": _body("SessionUpdate"),
                    "responses": {"200": _json("Session"), **_errors(400, 404, 409, 422)},
                },
                "delete": {
                    "operationId": "closeSession",
                    "summary": "close the session (a local portal starts a new one)",
                    "responses": {**no_content, **_errors(404)},
                },
            },
            "/api/v1/sessions/{session_id}/paths/{path_id}": {
                "parameters": [_SESSION_ID, _PATH_ID],
                "get": {
                    "operationId": "getPath",
                    "responses": {"200": _json("Path"), **_errors(400, 404)},
                },
                "patch": {
                    "operationId": "updatePath",
                    "summary": "change a path's metric, rate hint, enable/disable it",
                    "requestBody": _body("PathUpdate"),
                    "responses": {"200": _json("Path"), **_errors(400, 404, 409, 422)},
                },
                "delete": {
                    "operationId": "removePath",
                    "responses": {**no_content, **_errors(400, 404, 409)},
                },
            },
            "/api/v1/links": {
                "get": {
                    "operationId": "listLinks",
                    "summary": "the local portal's links (empty on a remote portal)",
                    "responses": {"200": _json("LinkList"), **_errors()},
                },
                "post": {
                    "operationId": "addLink",
                    "summary": "open a new link and add it to the session",
                    "requestBody": _body("LinkCreate"),
                    "responses": {"201": _json("Link"), **_errors(400, 409, 422)},
                },
            },
            "/api/v1/links/{name}": {
                "parameters": [_LINK_NAME],
                "get": {
                    "operationId": "getLink",
                    "responses": {"200": _json("Link"), **_errors(404, 409)},
                },
                "patch": {
                    "operationId": "updateLink",
                    "requestBody": _body("PathUpdate"),
                    "responses": {"200": _json("Link"), **_errors(400, 404, 409, 422)},
                },
                "delete": {
                    "operationId": "removeLink",
                    "responses": {**no_content, **_errors(404, 409)},
                },
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format)",
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(),
                    },
                }
            },
        },
    }


# -- request helpers -----------------------------------------------------------------------


def error_response(status: int, message: str) -> web.Response:
    """A JSON error document with `status`."""
    headers = {"WWW-Authenticate": 'Bearer realm="braid"'} if status == 401 else None
    return web.json_response(
        {"error": {"status": status, "message": message}}, status=status, headers=headers
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _ok(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=_dumps)


async def _read_object(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ServiceError(413, f"body: larger than {MAX_BODY_BYTES} bytes")
    raw = await request.read()
    if not raw:
        raise ServiceError(400, "body: missing; expected a JSON object")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError(400, f"body: not valid JSON ({exc}); expected a JSON object") from None
    if not isinstance(value, dict):
        raise ServiceError(400, f"body: a JSON {type(value).__name__}; expected a JSON object")
    return value


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise ServiceError(422, f"{key}: unknown field; expected one of {', '.join(allowed)}")


def _int_field(
    body: dict[str, Any], key: str, low: int, high: int, *, nullable: bool = False
) -> int | None:
    value = body.get(key)
    if value is None:
        if key in body and not nullable:
            raise ServiceError(422, f"{key}: null; expected an integer {low}..{high}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ServiceError(422, f"{key}: {value!r} is not an integer; expected {low}..{high}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ServiceError(422, f"{key}: {value!r} is not an integer; expected {low}..{high}")
        value = int(value)
    if not low <= value <= high:
        raise ServiceError(422, f"{key}: {value} is out of range; expected {low}..{high}")
    return value


def _str_field(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ServiceError(422, f"{key}: missing; expected a string")
        return None
    if not isinstance(value, str):
        raise ServiceError(422, f"{key}: {value!r} is not a string")
    return value


def _update_fields(body: dict[str, Any]) -> dict[str, Any]:
    _only(body, ("metric", "rate_bps", "download_bps", "enabled"))
    enabled = body.get("enabled")
    if "enabled" in body and not isinstance(enabled, bool):
        raise ServiceError(422, f"enabled: {enabled!r} is not a boolean; expected true or false")
    return {
        "metric": _int_field(body, "metric", 0, 65535),
        "rate_bps": _int_field(body, "rate_bps", 1000, 10**12, nullable=True),
        "clear_rate": "rate_bps" in body and body["rate_bps"] is None,
        "download_bps": _int_field(body, "download_bps", 1000, 10**12, nullable=True),
        "clear_download": "download_bps" in body and body["download_bps"] is None,
        "enabled": enabled,
    }


def _class_fields(body: dict[str, Any]) -> dict[str, str | None]:
    """{class name: scheduler or None} of a policy/session update's "classes" object."""
    classes = body.get("classes", {})
    if not isinstance(classes, dict):
        raise ServiceError(
            422, 'classes: expected an object like {"voice": {"scheduler": "redundant"}}'
        )
    out: dict[str, str | None] = {}
    for name, change in classes.items():
        if not isinstance(change, dict) or set(change) != {"scheduler"}:
            raise ServiceError(
                422, f'classes.{name}: expected {{"scheduler": NAME}} (null: the session\'s)'
            )
        value = change["scheduler"]
        if value is not None and not isinstance(value, str):
            raise ServiceError(422, f"classes.{name}.scheduler: expected a string or null")
        out[str(name)] = value
    return out


def _policy_fields(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(scheduler, parameters) of a policy/session update; both optional."""
    _only(body, ("scheduler", "parameters", "classes"))
    scheduler = _str_field(body, "scheduler")
    if scheduler is not None and scheduler not in _schedulers():
        raise ServiceError(
            422, f"scheduler: {scheduler!r} is unknown; expected one of {', '.join(_schedulers())}"
        )
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ServiceError(422, 'parameters: expected an object like {"dead_interval": 2}')
    return scheduler, parameters


def _schedulers() -> tuple[str, ...]:
    from braid.core.scheduler import SCHEDULERS

    return tuple(SCHEDULERS)


def _path_id(request: web.Request) -> int:
    text = request.match_info["path_id"]
    if not text.isdigit() or not 0 <= int(text) <= 255:
        raise ServiceError(400, f"path_id: {text!r} is not a path id; expected an integer 0..255")
    return int(text)


def parse_endpoint(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` as (host, port); ServiceError(422) if malformed."""
    if not re.fullmatch(ENDPOINT_PATTERN, text):
        raise ServiceError(
            422, f"remote: {text!r} is not an endpoint; expected HOST:PORT or [IPV6]:PORT"
        )
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ServiceError(
            422, f"remote: {text!r} is not an endpoint; expected HOST:PORT or [IPV6]:PORT"
        )
    return host, int(port)


# -- the application -----------------------------------------------------------------------


class Api:
    """The aiohttp application over a `PortalService`, with bearer-token auth."""

    def __init__(self, service: PortalService, *, token: str) -> None:
        if not token:
            raise ValueError("token: empty; the API needs a bearer token")
        self.service = service
        self.token = token
        self._expected = token.encode()
        from braid.control.metrics import MetricsExporter

        self.metrics = MetricsExporter(service)
        self.app = web.Application(
            middlewares=[self._errors, self._auth], client_max_size=MAX_BODY_BYTES
        )
        self._routes(self.app.router)

    def _routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/openapi.json", self.get_schema)
        r.add_get("/", self.get_index)
        if DASHBOARD_DIR.is_dir():
            r.add_static("/dashboard/", DASHBOARD_DIR, show_index=False)
        r.add_get("/metrics", self.get_metrics)
        r.add_get("/api/v1/portal", self.get_portal)
        r.add_get("/api/v1/statistics", self.get_statistics)
        r.add_get("/api/v1/policies", self.get_policies)
        r.add_patch("/api/v1/policies", self.patch_policies)
        r.add_get("/api/v1/sessions", self.list_sessions)
        r.add_get("/api/v1/sessions/{session_id}", self.get_session)
        r.add_patch("/api/v1/sessions/{session_id}", self.patch_session)
        r.add_delete("/api/v1/sessions/{session_id}", self.delete_session)
        r.add_get("/api/v1/sessions/{session_id}/paths/{path_id}", self.get_path)
        r.add_patch("/api/v1/sessions/{session_id}/paths/{path_id}", self.patch_path)
        r.add_delete("/api/v1/sessions/{session_id}/paths/{path_id}", self.delete_path)
        r.add_get("/api/v1/links", self.list_links)
        r.add_post("/api/v1/links", self.post_link)
        r.add_get("/api/v1/links/{name}", self.get_link)
        r.add_patch("/api/v1/links/{name}", self.patch_link)
        r.add_delete("/api/v1/links/{name}", self.delete_link)

    # -- middlewares --

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ServiceError as exc:
            return error_response(exc.status, exc.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = {
                404: f"{request.path}: not found; see /openapi.json",
                405: f"{request.method} {request.path}: method not allowed",
                413: f"body: larger than {MAX_BODY_BYTES} bytes",
            }.get(exc.status, exc.reason)
            return error_response(exc.status, message)
        except Exception as exc:  # a bug: answer 500, log one line
            log.error("api: internal error on %s %s: %s", request.method, request.path, exc)
            log.debug("details", exc_info=exc)
            return error_response(500, f"internal error: {type(exc).__name__}")

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in ("/", "/openapi.json") or path.startswith("/dashboard/"):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if not header:
            return error_response(
                401, "authorization: missing; send 'Authorization: Bearer TOKEN' (see [api])"
            )
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), self._expected
        ):
            return error_response(401, "authorization: wrong token")
        return await handler(request)

    # -- handlers --

    async def get_schema(self, request: web.Request) -> web.Response:
        return _ok(openapi_schema())

    async def get_index(self, request: web.Request) -> web.StreamResponse:
        index = DASHBOARD_DIR / "index.html"
        if not index.is_file():
            raise ServiceError(404, "dashboard: not installed")
        return web.FileResponse(index, headers={"Cache-Control": "no-store"})

    async def get_metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def get_portal(self, request: web.Request) -> web.Response:
        return _ok(self.service.info())

    async def get_statistics(self, request: web.Request) -> web.Response:
        return _ok(self.service.statistics())

    async def get_policies(self, request: web.Request) -> web.Response:
        return _ok(self.service.policies())

    async def patch_policies(self, request: web.Request) -> web.Response:
        body = await _read_object(request)
        scheduler, parameters = _policy_fields(body)
        classes = _class_fields(body)
        for name, class_scheduler in classes.items():  # check all before changing any
            self.service.check_class(name, class_scheduler)
        if parameters:
            self.service.set_parameters(parameters)
        if scheduler is not None:
            self.service.set_scheduler(scheduler)
        for name, class_scheduler in classes.items():
            self.service.set_class_scheduler(name, class_scheduler)
        return _ok(self.service.policies())

    async def list_sessions(self, request: web.Request) -> web.Response:
        return _ok({"sessions": self.service.sessions()})

    async def get_session(self, request: web.Request) -> web.Response:
        return _ok(self.service.session(request.match_info["session_id"]))

    async def patch_session(self, request: web.Request) -> web.Response:
        body = await _read_object(request)
        scheduler, parameters = _policy_fields(body)
        classes = _class_fields(body)
        key = request.match_info["session_id"]
        self.service.session(key)  # 404 first
        for name, class_scheduler in classes.items():  # check all before changing any
            self.service.check_class(name, class_scheduler)
        if parameters:
            self.service.set_parameters(parameters, session=key)
        if scheduler is not None:
            self.service.set_scheduler(scheduler, session=key)
        for name, class_scheduler in classes.items():
            self.service.set_class_scheduler(name, class_scheduler, session=key)
        return _ok(self.service.session(key))

    async def delete_session(self, request: web.Request) -> web.Response:
        self.service.close_session(request.match_info["session_id"])
        return web.Response(status=204)

    async def get_path(self, request: web.Request) -> web.Response:
        path_id = _path_id(request)
        return _ok(self.service.path(request.match_info["session_id"], path_id))

    async def patch_path(self, request: web.Request) -> web.Response:
        path_id = _path_id(request)
        fields = _update_fields(await _read_object(request))
        return _ok(self.service.update_path(request.match_info["session_id"], path_id, **fields))

    async def delete_path(self, request: web.Request) -> web.Response:
        path_id = _path_id(request)
        self.service.remove_path(request.match_info["session_id"], path_id)
        return web.Response(status=204)

    async def list_links(self, request: web.Request) -> web.Response:
        return _ok({"links": self.service.links()})

    async def post_link(self, request: web.Request) -> web.Response:
        body = await _read_object(request)
        _only(body, ("name", "remote", "interface", "source", "rate_bps", "download_bps", "metric"))
        name = _str_field(body, "name", required=True)
        remote = _str_field(body, "remote", required=True)
        assert name is not None and remote is not None
        interface = _str_field(body, "interface")
        if interface is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,15}", interface):
            raise ServiceError(422, f"interface: {interface!r} is not an interface name")
        source = _str_field(body, "source")
        if source is not None and not re.fullmatch(r"[0-9A-Fa-f:.]{2,45}", source):
            raise ServiceError(422, f"source: {source!r} is not an IP address")
        spec = LinkSpec(
            name=name,
            remote=parse_endpoint(remote),
            interface=interface,
            source=source,
            rate_bps=_int_field(body, "rate_bps", 1000, 10**12, nullable=True),
            metric=_int_field(body, "metric", 0, 65535) or 0,
            download_bps=_int_field(body, "download_bps", 1000, 10**12, nullable=True),
        )
        return _ok(self.service.add_link(spec), status=201)

    async def get_link(self, request: web.Request) -> web.Response:
        return _ok(self.service.link(request.match_info["name"]))

    async def patch_link(self, request: web.Request) -> web.Response:
        fields = _update_fields(await _read_object(request))
        return _ok(self.service.update_link(request.match_info["name"], **fields))

    async def delete_link(self, request: web.Request) -> web.Response:
        self.service.remove_link(request.match_info["name"])
        return web.Response(status=204)


class ApiServer:
    """Serves an `Api` on `host:port` on the running loop (the portal's)."""

    def __init__(self, api: Api, *, host: str = DEFAULT_API_ADDRESS, port: int = DEFAULT_API_PORT):
        self.api = api
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Listen; raises OSError if the address is taken (nothing is left open)."""
        runner = web.AppRunner(self.api.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._tick()
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self.port = int(address[1])
                break

    @property
    def url(self) -> str:
        """The base URL (`http://HOST:PORT`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _tick(self) -> None:
        """Once a second: let the service note new sessions (their `up_since`)."""
        self.api.service.track()
        self._ticker = asyncio.get_running_loop().call_later(1.0, self._tick)

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
