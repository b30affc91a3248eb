"""HTTP(S) to the platform: JSON in and out, retries with exponential backoff."""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request

log = logging.getLogger("agent.client")

RETRY_STATUSES = {429, 500, 502, 503, 504}


def printable(value):
    """The payload with control characters (other than tab and newline) in its strings replaced:
    error text from a runtime may carry terminal escapes, which the platform refuses."""
    if isinstance(value, str):
        return "".join(ch if ch.isprintable() or ch in "\n\t" else "\ufffd" for ch in value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value


class PlatformError(Exception):
    """The platform refused the call (a 4xx other than 429): retrying would not help."""

    def __init__(self, status: int, body: dict):
        super().__init__(f"{status}: {body.get('code')} {body.get('detail')}")
        self.status = status
        self.body = body


class PlatformClient:
    def __init__(
        self,
        base_url: str,
        credential: str | None = None,
        *,
        timeout: float = 15.0,
        max_attempts: int = 8,
        max_backoff: float = 30.0,
        sleep=time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.credential = credential
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_backoff = max_backoff
        self._sleep = sleep

    def post(self, path: str, body: dict | None = None, *, max_attempts: int | None = None) -> dict:
        """POST JSON; retries connection failures and 429/5xx (the platform may be restarting), up to
        `max_attempts` tries (default: the client's). With one try, a 429 is a PlatformError."""
        attempts = max_attempts or self.max_attempts
        data = json.dumps(printable(body or {})).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.credential:
            headers["Authorization"] = f"Bearer {self.credential}"
        url = f"{self.base_url}/api/v1/agent/{path.lstrip('/')}"
        delay = 0.5
        for attempt in range(1, attempts + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as error:
                payload = _json(error.read())
                if error.code not in RETRY_STATUSES or attempts == 1:
                    raise PlatformError(error.code, payload) from None
                reason = f"HTTP {error.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                reason = str(getattr(error, "reason", error))
            if attempt == attempts:
                raise ConnectionError(f"platform unreachable after {attempt} attempts: {reason}")
            wait = min(self.max_backoff, delay) * (0.5 + random.random() / 2)
            log.warning("POST %s failed (%s); retrying in %.1f s", path, reason, wait)
            self._sleep(wait)
            delay *= 2
        raise AssertionError("unreachable")


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
        return value if isinstance(value, dict) else {"detail": str(value)}
    except ValueError:
        return {"detail": raw[:200].decode(errors="replace")}
