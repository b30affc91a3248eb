"""`cm`: the marketplace from a terminal.

    cm offers search 'accelerator_model in [h100-80g,a100-80g] num_accelerators>=2 price_per_hour<3'
    cm order --type h100-80g.1x --image pytorch/pytorch:2.5.1 && cm instances wait 7 && cm instances ssh 7

`--json` prints the API's JSON; `--explain` prints each HTTP request and its answer (to stderr).
Configuration: `--url`/`--key`, else MARKETPLACE_URL / MARKETPLACE_API_KEY, else a config file.
Exit status: 0 done, 1 the API refused (its `code` is printed), 2 bad usage or query.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .client import ApiError, Client
from .config import load_config
from .query import QueryError, parse_query

OFFER_COLUMNS = (
    "id",
    "instance_type",
    "accelerator_model",
    "region",
    "price_per_hour",
    "price_per_tflop_hour",
    "reliability",
    "available_count",
)
INSTANCE_COLUMNS = ("id", "instance_type", "status", "pricing", "price_per_hour", "region", "created_at")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [list(columns)] + [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells)


def _order_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"count": args.count, "pricing": args.pricing}
    if args.type:
        body["instance_type"] = args.type
    elif args.min_memory is not None or args.min_tflops is not None:
        body["requirements"] = {
            k: v for k, v in (("min_memory_gb", args.min_memory), ("min_tflops", args.min_tflops)) if v is not None
        }
    else:
        raise SystemExit("cm: give --type or --min-memory/--min-tflops")
    for name, value in (
        ("max_price_per_hour", args.max_price),
        ("region", args.region),
        ("term_hours", args.term_hours),
    ):
        if value is not None:
            body[name] = value
    for name in ("image", "template", "command"):
        if getattr(args, name, None):
            body[name] = getattr(args, name)
    if getattr(args, "ssh_key", None):
        body["ssh_keys"] = args.ssh_key
    return body


def _add_order_arguments(parser: argparse.ArgumentParser, *, launch: bool) -> None:
    parser.add_argument("--type", help="instance type, e.g. h100-80g.1x")
    parser.add_argument("--min-memory", type=int, help="capability order: accelerator memory, GB")
    parser.add_argument("--min-tflops", type=int, help="capability order: TFLOPS")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--pricing", choices=("on_demand", "spot", "reserved"), default="on_demand")
    parser.add_argument("--max-price", help="a price ceiling per instance-hour (spot: the bid)")
    parser.add_argument("--region")
    parser.add_argument("--term-hours", type=int, help="reserved: the term")
    if launch:
        parser.add_argument("--image")
        parser.add_argument("--template")
        parser.add_argument("--command")
        parser.add_argument("--ssh-key", type=int, action="append", help="an SSH key id to install (repeat)")
        parser.add_argument("--idempotency-key", help="default: a new one (a retried create is placed once)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the marketplace, e.g. https://market.example.com")
    parser.add_argument("--key", help="an API key (default: MARKETPLACE_API_KEY)")
    parser.add_argument("--config", help="a TOML file with url, api_key and team")
    parser.add_argument("--team", help="act for this team (its id; default: MARKETPLACE_TEAM), as your role allows")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.add_argument("--explain", action="store_true", help="print each HTTP request to stderr")
    groups = parser.add_subparsers(dest="group", required=True)

    offers = groups.add_parser("offers", help="search offers").add_subparsers(dest="command", required=True)
    search = offers.add_parser("search", help="offers matching a query, e.g. 'region=eu-west price_per_hour<3'")
    search.add_argument("query", nargs="*", help="terms: field operator value")
    search.add_argument("--sort", default="price_per_hour", help="price_per_hour, -reliability, ...")
    search.add_argument("--limit", type=int, default=20)

    _add_order_arguments(groups.add_parser("quote", help="price an order without placing it"), launch=False)
    _add_order_arguments(groups.add_parser("order", help="place an order"), launch=True)

    instances = groups.add_parser("instances", help="your instances").add_subparsers(dest="command", required=True)
    instances.add_parser("list").add_argument("--limit", type=int, default=50)
    for action in ("show", "start", "stop", "terminate", "ssh"):
        instances.add_parser(action).add_argument("id", type=int)
    wait = instances.add_parser("wait", help="until the instance reaches a status")
    wait.add_argument("id", type=int)
    wait.add_argument("--status", default="running")
    wait.add_argument("--timeout", type=float, default=600)
    wait.add_argument("--poll", type=float, default=2.0)
    logs = instances.add_parser("logs")
    logs.add_argument("id", type=int)
    logs.add_argument("--tail", type=int, default=100)
    instances.choices["ssh"].add_argument("--exec", action="store_true", help="run ssh instead of printing it")

    keys = groups.add_parser("ssh-keys", help="your SSH public keys").add_subparsers(dest="command", required=True)
    keys.add_parser("list")
    add = keys.add_parser("add")
    add.add_argument("file", help="a .pub file")
    add.add_argument("--name", default="")
    keys.add_parser("delete").add_argument("id", type=int)

    groups.add_parser("templates", help="launch templates").add_subparsers(dest="command", required=True).add_parser(
        "list"
    )

    billing = groups.add_parser("billing", help="balance and usage").add_subparsers(dest="command", required=True)
    billing.add_parser("balance")
    billing.add_parser("usage").add_argument("--limit", type=int, default=50)

    hosts = groups.add_parser("hosts", help="your hosts (suppliers)").add_subparsers(dest="command", required=True)
    hosts.add_parser("list")
    hosts.add_parser("add").add_argument("file", help="a JSON file with the host's declaration")
    hosts.add_parser("token", help="a registration token for the host's agent").add_argument("id", type=int)

    teams = groups.add_parser("teams", help="your teams (act for one with --team ID)")
    teams.add_subparsers(dest="command", required=True).add_parser("list")

    api_keys = groups.add_parser("keys", help="API keys").add_subparsers(dest="command", required=True)
    api_keys.add_parser("list")
    api_keys.add_parser("revoke").add_argument("id", type=int)
    create = api_keys.add_parser("create", help="exchange email and password for a key (shown once)")
    create.add_argument("--email", required=True)
    create.add_argument("--password", help="default: MARKETPLACE_PASSWORD")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", action="append", help="read, orders, instances, billing, supplier (repeat)")
    create.add_argument("--expires-at", help="ISO 8601, e.g. 2027-01-31T00:00:00Z")
    return parser


def run(args: argparse.Namespace, client: Client) -> tuple[Any, str | None]:
    """The command's result: what --json prints, and the text printed otherwise (None: the JSON)."""
    group, command = args.group, getattr(args, "command", None)
    if group == "offers":
        rows = client.offers(parse_query(" ".join(args.query)), sort=args.sort, limit=args.limit)
        return rows, table(rows, OFFER_COLUMNS) if rows else "No offers match."
    if group in ("quote", "order"):
        body = _order_body(args)
        if group == "quote":
            return client.quote(**body), None
        order = client.order(idempotency_key=args.idempotency_key, **body)
        return order, f"order {order['id']}: " + ", ".join(
            f"instance {i['id']} {i['status']}" for i in order["instances"]
        )
    if group == "instances":
        if command == "list":
            rows = client.instances(limit=args.limit)
            return rows, table(rows, INSTANCE_COLUMNS) if rows else "No instances."
        if command == "show":
            return client.instance(args.id), None
        if command in ("start", "stop", "terminate"):
            instance = client.instance_action(args.id, command)
            return instance, f"instance {instance['id']}: {instance['status']}"
        if command == "wait":
            instance = client.wait(args.id, args.status, timeout=args.timeout, poll=args.poll)
            return instance, f"instance {instance['id']}: {instance['status']}"
        if command == "logs":
            logs = client.logs(args.id, tail=args.tail)
            return logs, logs.get("text") or "(no output yet)"
        if command == "ssh":
            argv = client.ssh_argv(args.id)
            if args.exec:
                os.execvp("ssh", argv)
            return {"command": shlex.join(argv)}, shlex.join(argv)
    if group == "ssh-keys":
        if command == "list":
            rows = client.ssh_keys()
            return rows, table(rows, ("id", "name", "key_type", "fingerprint", "created_at"))
        if command == "add":
            key = client.ssh_key_add(Path(args.file).expanduser().read_text().strip(), args.name)
            return key, f"ssh key {key['id']}: {key['fingerprint']}"
        client.ssh_key_delete(args.id)
        return {"deleted": args.id}, f"ssh key {args.id} deleted"
    if group == "templates":
        rows = client.templates()
        return rows, table(rows, ("id", "name", "image", "ports"))
    if group == "billing":
        if command == "balance":
            return client.balance(), None
        rows = client.usage(limit=args.limit)
        return rows, table(rows, ("id", "instance", "kind", "window_start", "seconds", "charge"))
    if group == "hosts":
        if command == "list":
            rows = client.hosts()
            return rows, table(rows, ("id", "name", "status", "accelerator_model", "accelerator_count", "region"))
        if command == "add":
            host = client.host_add(**json.loads(Path(args.file).read_text()))
            return host, f"host {host['id']}: {host.get('status', '')}"
        return client.host_token(args.id), None
    if group == "teams":
        rows = client.teams()
        return rows, table(rows, ("id", "name", "role", "joined_at"))
    if group == "keys":
        if command == "list":
            rows = client.keys()
            return rows, table(rows, ("id", "name", "prefix", "scopes", "expires_at", "last_used_at", "revoked_at"))
        if command == "revoke":
            client.key_revoke(args.id)
            return {"revoked": args.id}, f"key {args.id} revoked"
        password = args.password or os.environ.get("MARKETPLACE_PASSWORD")
        if not password:
            raise SystemExit("cm: give --password or set MARKETPLACE_PASSWORD")
        key = client.key_create(
            email=args.email, password=password, name=args.name, scopes=args.scope, expires_at=args.expires_at
        )
        return key, f"key {key['id']} ({', '.join(key['scopes'])}): {key['key']}\nShown once: store it now."
    raise SystemExit(f"cm: unknown command {group} {command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(url=args.url, api_key=args.key, path=args.config, team=args.team)
    except FileNotFoundError as error:
        print(f"cm: {error}", file=sys.stderr)
        return 2
    explain = (lambda line: print(line, file=sys.stderr)) if args.explain else None
    client = Client(config.url, config.api_key, explain=explain, team=config.team)
    try:
        result, text = run(args, client)
    except QueryError as error:
        print(f"cm: query: {error}", file=sys.stderr)
        return 2
    except ApiError as error:
        print(f"error: {error.code}: {error.detail}", file=sys.stderr)
        for field, messages in error.fields.items():
            print(f"  {field}: {messages}", file=sys.stderr)
        return 1
    except TimeoutError as error:
        print(f"cm: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json or text is None else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
