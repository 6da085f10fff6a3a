"""The settings tab's "Test connection": is an OpenAI-compatible endpoint answering, in one line?

A GET of `{base}/models` is the cheapest request every OpenAI-compatible server (vLLM, llama.cpp,
Ollama, LM Studio, the hosted APIs) answers, it costs no tokens, and its status code separates
"not running" from "running but refusing us" (401/403: the key) from "wrong path" (404: the base
URL usually needs its `/v1`). The console has no LLM client yet; this only checks the address.

Uses urllib so the check needs no extra package; loopback addresses bypass any configured proxy
(a proxy cannot reach this machine's 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
BASE_URL_ENVS = ("AVATAR_LLM_BASE_URL", "OPENAI_BASE_URL")
DEFAULT_TIMEOUT_S = 3.0
MAX_BODY_BYTES = 1 << 20


def default_base_url() -> str:
    """The endpoint the settings tab starts with: `AVATAR_LLM_BASE_URL`, `OPENAI_BASE_URL`, or a local one."""
    for name in BASE_URL_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return DEFAULT_BASE_URL


@dataclass(frozen=True)
class ConnectionReport:
    reachable: bool  # the server answered HTTP at all (any status)
    ok: bool  # it answered 2xx
    status: int | None
    message: str  # one line for the page


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _model_names(body: bytes) -> list[str] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    return [str(item.get("id")) for item in items if isinstance(item, dict) and item.get("id")]


def _describe_error(reason: object, timeout_s: float) -> str:
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout_s:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the server running on that port?)"
    if isinstance(reason, socket.gaierror):
        return "unknown host name"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or reason.__class__.__name__


def check_llm_endpoint(
    base_url: str, api_key: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ConnectionReport:
    """GET `{base_url}/models` once; never raises (every failure becomes the report's message)."""
    base = (base_url or "").strip().rstrip("/")
    parsed = urllib.parse.urlsplit(base)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return ConnectionReport(
            False, False, None, f"not an http(s) URL: {base_url!r} (e.g. http://127.0.0.1:8000/v1)"
        )
    url = f"{base}/models"
    headers = {"Accept": "application/json"}
    if api_key and api_key.strip():
        headers["Authorization"] = f"Bearer {api_key.strip()}"
    request = urllib.request.Request(url, headers=headers, method="GET")
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(parsed.hostname) else []
    opener = urllib.request.build_opener(*handlers)
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = response.read(MAX_BODY_BYTES)
            status = response.status
    except urllib.error.HTTPError as error:
        reason = f" {error.reason}" if error.reason else ""
        hint = {401: ": check the API key", 403: ": check the API key", 404: ": does the base URL need /v1?"}
        return ConnectionReport(
            True,
            False,
            error.code,
            f"reachable, but GET {url} answered HTTP {error.code}{reason}{hint.get(error.code, '')}",
        )
    except urllib.error.URLError as error:
        return ConnectionReport(
            False, False, None, f"unreachable: {url}: {_describe_error(error.reason, timeout_s)}"
        )
    except (TimeoutError, OSError) as error:  # a timeout while reading the body, a reset connection
        return ConnectionReport(
            False, False, None, f"unreachable: {url}: {_describe_error(error, timeout_s)}"
        )
    except ValueError as error:  # e.g. a port that is not a number
        return ConnectionReport(False, False, None, f"not a usable URL: {base_url!r} ({error})")
    elapsed_ms = (time.perf_counter() - started) * 1000
    names = _model_names(body)
    if names is None:
        models = "but the answer is not an OpenAI model list"
    elif not names:
        models = "no models listed"
    else:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        models = f"{len(names)} model{'s' if len(names) != 1 else ''}: {shown}"
    return ConnectionReport(True, True, status, f"reachable: HTTP {status} in {elapsed_ms:.0f} ms, {models}")
