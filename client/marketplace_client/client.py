"""A typed client of the marketplace API: retries with backoff (honouring Retry-After), an
idempotency key on every create, pagination followed for you, errors as `ApiError` with the API's
stable `code`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

RETRY_STATUSES = frozenset({429, 502, 503, 504})
Explain = Callable[[str], None]


class ApiError(Exception):
    """The API refused a request: `status`, its stable `code`, a `detail` for people, `fields`."""

    def __init__(self, status: int, code: str, detail: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.fields = status, code, detail, fields or {}


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _redacted(body: Any) -> Any:
    """What --explain prints of a request body: no passwords."""
    if isinstance(body, dict):
        return {k: "***" if k == "password" else v for k, v in body.items()}
    return body


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(502, "unexpected_response", f"Expected a JSON object, got {type(body).__name__}.")
    return body


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        explain: Explain | None = None,
        session: requests.Session | None = None,
        team: str | int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.team = str(team) if team is not None else None
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.explain = explain
        self.session = session or requests.Session()

    # --- transport ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """One API call, retried on 429/502/503/504 and connection errors (a create keeps its
        idempotency key across retries, so it is placed once). Returns the decoded body."""
        if path.startswith(("http://", "https://")):
            if _origin(path) != _origin(self.base_url):  # never send the key elsewhere
                raise ApiError(502, "foreign_link", f"Refusing to follow a link away from {self.base_url}: {path}")
            url = path
        else:
            url = f"{self.base_url}/api/v1/{path.lstrip('/')}"
        # Retried after any failure only when a retry cannot do it twice: reads, and writes that carry
        # an idempotency key; other writes only when the API said it did not do them (429).
        safe_to_repeat = method in ("GET", "HEAD", "PUT", "DELETE") or idempotency_key is not None
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.team:
            headers["X-Team"] = self.team
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        for attempt in range(self.retries + 1):
            started = time.monotonic()
            shown = requests.Request(method, url, params=params).prepare().url
            self._explain(f"-> {method} {shown}" + (f" {_redacted(json)}" if json is not None else ""))
            try:
                response = self.session.request(
                    method, url, params=params, json=json, headers=headers, timeout=self.timeout
                )
            except requests.ConnectionError as error:
                if attempt == self.retries or not safe_to_repeat:
                    raise
                self._explain(f"<- connection failed ({error.__class__.__name__}), retrying")
                time.sleep(self._delay(attempt, None))
                continue
            self._explain(f"<- {response.status_code} ({(time.monotonic() - started) * 1000:.0f} ms)")
            retry = response.status_code == 429 or (response.status_code in RETRY_STATUSES and safe_to_repeat)
            if retry and attempt < self.retries:
                time.sleep(self._delay(attempt, response.headers.get("Retry-After")))
                continue
            if method == "DELETE" and attempt > 0 and response.status_code == 404:
                return None  # an earlier try, whose answer was lost, deleted it
            return self._decode(response)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            return min(60.0, float(retry_after))
        return float(min(30.0, self.backoff * 2.0**attempt))

    def _explain(self, line: str) -> None:
        if self.explain:
            self.explain(line)

    @staticmethod
    def _decode(response: requests.Response) -> Any:
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:500]}
        if response.status_code >= 400:
            body = body if isinstance(body, dict) else {}
            raise ApiError(
                response.status_code,
                str(body.get("code", "error")),
                str(body.get("detail", response.reason)),
                body.get("fields"),
            )
        return body

    def paginate(self, path: str, params: dict[str, Any] | None = None, *, limit: int | None = None) -> Iterator[Any]:
        """Every row of a list, following `next` (page numbers or cursors alike), up to `limit`."""
        url: str | None = path
        seen = 0
        while url:
            body = self.request("GET", url, params=params)
            params = None  # `next` carries them
            for row in body["results"]:
                yield row
                seen += 1
                if limit is not None and seen >= limit:
                    return
            url = body.get("next")

    def create(self, path: str, body: dict[str, Any], *, idempotency_key: str | None = None) -> Any:
        return self.request("POST", path, json=body, idempotency_key=idempotency_key or str(uuid.uuid4()))

    # --- the market -----------------------------------------------------------------------------

    def offers(
        self, params: dict[str, str] | None = None, *, sort: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        query = dict(params or {})
        if sort:
            query["ordering"] = sort
        query.setdefault("page_size", str(min(200, limit)))
        return list(self.paginate("offers/", query, limit=limit))

    def quote(self, **body: Any) -> dict[str, Any]:
        return _object(self.request("POST", "quotes/", json=body))

    def order(self, *, idempotency_key: str | None = None, **body: Any) -> dict[str, Any]:
        return _object(self.create("orders/", body, idempotency_key=idempotency_key))

    # --- instances ------------------------------------------------------------------------------

    def instances(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        return list(self.paginate("instances/", limit=limit))

    def instance(self, instance_id: int) -> dict[str, Any]:
        return _object(self.request("GET", f"instances/{instance_id}/"))

    def instance_action(self, instance_id: int, action: str) -> dict[str, Any]:
        if action not in ("start", "stop", "terminate"):
            raise ValueError(f"unknown action {action!r}")
        return _object(self.request("POST", f"instances/{instance_id}/{action}/", json={}))

    def wait(
        self, instance_id: int, status: str = "running", *, timeout: float = 600, poll: float = 2.0
    ) -> dict[str, Any]:
        """Poll until the instance reaches `status`; TimeoutError after `timeout` seconds, ApiError
        code `instance_ended` if it ends (terminated, failed) on the way."""
        deadline = time.monotonic() + timeout
        while True:
            instance = self.instance(instance_id)
            if instance["status"] == status:
                return instance
            if instance["status"] in ("terminated", "failed") and status not in ("terminated", "failed"):
                raise ApiError(409, "instance_ended", f"Instance {instance_id} is {instance['status']}.")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"instance {instance_id} is {instance['status']} after {timeout:.0f} s")
            time.sleep(poll)

    def logs(self, instance_id: int, *, tail: int = 100) -> dict[str, Any]:
        return _object(self.request("GET", f"instances/{instance_id}/logs/", params={"tail": tail}))

    def ssh_command(self, instance_id: int) -> str:
        return " ".join(self.ssh_argv(instance_id))

    def ssh_argv(self, instance_id: int) -> list[str]:
        """`ssh` and its arguments, built from the connection's port and address (never by parsing a
        command line the server sent)."""
        for connection in self.instance(instance_id)["connections"]:
            if connection["kind"] == "ssh":
                port, address = int(connection["host_port"]), str(connection["address"])
                if address.startswith("-") or any(c.isspace() for c in address):
                    raise ApiError(502, "bad_address", f"Refusing an SSH address {address!r}.")
                return ["ssh", "-p", str(port), f"root@{address}"]
        raise ApiError(409, "no_ssh", f"Instance {instance_id} has no SSH port open (order it with port 22).")

    # --- account --------------------------------------------------------------------------------

    def ssh_keys(self) -> list[dict[str, Any]]:
        return list(self.paginate("ssh-keys/"))

    def ssh_key_add(self, public_key: str, name: str = "") -> dict[str, Any]:
        return _object(self.create("ssh-keys/", {"public_key": public_key, "name": name}))

    def ssh_key_delete(self, key_id: int) -> None:
        self.request("DELETE", f"ssh-keys/{key_id}/")

    def templates(self) -> list[dict[str, Any]]:
        return list(self.paginate("templates/"))

    def balance(self) -> dict[str, Any]:
        return _object(self.request("GET", "billing/balance/"))

    def usage(self, *, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.paginate("billing/usage/", limit=limit))

    def teams(self) -> list[dict[str, Any]]:
        """The caller's teams and their role in each."""
        found: list[dict[str, Any]] = self.request("GET", "teams/")
        return found

    def keys(self) -> list[dict[str, Any]]:
        return list(self.paginate("api-keys/"))

    def key_revoke(self, key_id: int) -> None:
        self.request("DELETE", f"api-keys/{key_id}/")

    def key_create(
        self, *, email: str, password: str, name: str, scopes: list[str] | None = None, expires_at: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"email": email, "password": password, "name": name}
        if scopes:
            body["scopes"] = scopes
        if expires_at:
            body["expires_at"] = expires_at
        return _object(self.request("POST", "auth/keys/", json=body))

    # --- suppliers ------------------------------------------------------------------------------

    def hosts(self) -> list[dict[str, Any]]:
        return list(self.paginate("hosts/"))

    def host_add(self, **body: Any) -> dict[str, Any]:
        return _object(self.create("hosts/", body))

    def host_token(self, host_id: int) -> dict[str, Any]:
        return _object(self.request("POST", f"hosts/{host_id}/registration-token/", json={}))
