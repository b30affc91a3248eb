"""The production profile as a child process of bench/concurrent_orders.py: free ports, its
environment (generated secrets, the throwaway database), start, wait until both web processes answer,
and stop its whole process group."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from raw_orders import Market

ROOT = Path(__file__).resolve().parents[1]
READY_PATH = "/api/v1/offers/?page_size=1"
WORKER_QUEUES = "billing;agents,notifications,external,celery"


def free_port_pair(start: int) -> int:
    """The first port from `start` such that it and the next are free on 127.0.0.1."""
    for port in range(start, start + 2000, 2):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no two free ports from {start}")


def profile_environment(db_url: str, redis_url: str, port: int) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {**os.environ}
    for name in ("DATABASE_REPLICA_URL", "DATABASE_OWNER_URL", "DEBUG"):
        env.pop(name, None)  # this run's database only
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="marketplace.settings.production",
        ROLES="web workers",
        WEB_PROCESSES="2",
        WEB_PORT=str(port),
        WORKER_QUEUES=WORKER_QUEUES,
        # Secrets generated for this run; values of the shape the production checks accept.
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        STRIPE_SECRET_KEY=f"sk_live_bench{secrets.token_hex(16)}",
        STRIPE_WEBHOOK_SECRET=f"whsec_bench{secrets.token_hex(16)}",
        ENVIRONMENT_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        SECURE_SSL_REDIRECT="false",  # plain HTTP on 127.0.0.1, no TLS proxy in front
    )
    return env


def profile_start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            ["bash", "scripts/production.sh"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole at the end
        )


def request(port: int, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> int:
    """One request with a fresh connection; returns the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def profile_wait(profile: subprocess.Popen[bytes], ports: list[int], market: Market, log: Path) -> None:
    """Until every web process answers an authenticated offer search with 200; then a few quotes on
    each, so that the first measured orders do not pay for loading the code they run."""
    deadline = time.monotonic() + 180
    key = market.buyers[0].key
    for port in ports:
        while True:
            if profile.poll() is not None:
                raise RuntimeError(f"the production profile stopped; see {log} and var/log/web-{port}.err")
            if time.monotonic() > deadline:
                raise RuntimeError(f"web :{port} did not answer in time; see var/log/web-{port}.err")
            try:
                status = request(port, "GET", READY_PATH, key)
            except OSError:
                time.sleep(0.5)
                continue
            if status != 200:
                raise RuntimeError(f"web :{port} answers {status}; see var/log/web-{port}.err")
            break
        for itype in market.types[:4]:
            request(port, "POST", "/api/v1/quotes/", key, {"instance_type": itype.name})


def profile_stop(profile: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the profile's process group, then wait for all of it (SIGKILL after 60 s)."""
    pgid = profile.pid  # start_new_session: the group this script started, led by the shell
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        profile.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        profile.wait(timeout=10)


# --- The run --------------------------------------------------------------------------------------
