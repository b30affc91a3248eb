"""Where the client finds the API, its key and the team it acts for: flags, then the environment
(`MARKETPLACE_URL`, `MARKETPLACE_API_KEY`, `MARKETPLACE_TEAM`), then a TOML file (`--config`,
`MARKETPLACE_CONFIG` or `~/.config/marketplace/config.toml`, with `url`, `api_key` and `team`)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://localhost:8000"
DEFAULT_FILE = Path("~/.config/marketplace/config.toml")


@dataclass(frozen=True)
class Config:
    url: str
    api_key: str | None
    team: str | None = None  # a team's id: the key acts for it (X-Team), with what the role allows


def load_config(
    *, url: str | None = None, api_key: str | None = None, path: str | None = None, team: str | None = None
) -> Config:
    chosen = path or os.environ.get("MARKETPLACE_CONFIG")
    file = Path(chosen or DEFAULT_FILE).expanduser()
    values: dict[str, str] = {}
    if file.is_file():
        with file.open("rb") as handle:
            values = {k: str(v) for k, v in tomllib.load(handle).items()}
    elif chosen:
        raise FileNotFoundError(f"no config file at {file}")
    return Config(
        url=url or os.environ.get("MARKETPLACE_URL") or values.get("url") or DEFAULT_URL,
        api_key=api_key or os.environ.get("MARKETPLACE_API_KEY") or values.get("api_key"),
        team=team or os.environ.get("MARKETPLACE_TEAM") or values.get("team"),
    )
