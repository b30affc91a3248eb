"""The host agent as the platform serves it: one zipapp (`agent.pyz`, run with `python3 agent.pyz`)
built from the `agent/` package (standard library only), and the install script that fetches it,
checks its SHA-256, registers the host and installs a service. Built once per process; the hash
changes only when the agent's code does."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

AGENT_SOURCE = Path(__file__).resolve().parent.parent / "agent"
# The zipapp's entry point: the package's own command line.
ZIPAPP_MAIN = "from agent.cli import main\n\nraise SystemExit(main())\n"
FIXED_TIME = (2026, 1, 1, 0, 0, 0)  # every entry gets the same time: the same code gives the same bytes


@dataclass(frozen=True)
class AgentArchive:
    content: bytes
    sha256: str


@lru_cache(maxsize=1)
def agent_archive() -> AgentArchive:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("__main__.py", FIXED_TIME), ZIPAPP_MAIN)
        for path in sorted(AGENT_SOURCE.glob("*.py")):
            archive.writestr(zipfile.ZipInfo(f"agent/{path.name}", FIXED_TIME), path.read_bytes())
    content = b"#!/usr/bin/env python3\n" + buffer.getvalue()
    return AgentArchive(content=content, sha256=hashlib.sha256(content).hexdigest())
