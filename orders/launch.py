"""What an instance runs and how it is reached: image, command, container ports, environment
(secret values encrypted at rest, never shown again) and disk size, given at order or taken from a
launch template (staff-curated, or the buyer's own)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from accounts.models import User
from marketplace.errors import Conflict, InvalidInput, NotFound
from marketplace.models import validate_clean_text
from marketplace.secrets import secret_decrypt, secret_encrypt

from .errors import OrderErrorCode
from .models import LaunchTemplate
from .ports import MAX_PORTS_PER_INSTANCE

MAX_COMMAND_LENGTH = 4000  # Order.command; it is sent to the host agent as is
MAX_ENVIRONMENT_VARIABLES = 64
MAX_ENVIRONMENT_VALUE_LENGTH = 32 * 1024
MAX_DISK_GB = 100_000
MAX_TEMPLATES_PER_BUYER = 100
ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Set by the agent for every instance, or read by its tools: an order may not set them.
RESERVED_ENVIRONMENT_NAMES = frozenset(
    {"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "SSH_AUTHORIZED_KEYS_FILE", "PATH", "HOME"}
)
RESERVED_ENVIRONMENT_PREFIXES = ("INSTANCE_", "PORT_", "DOCKER_", "LD_")  # the last two steer the agent's tools


@dataclass(frozen=True)
class Launch:
    """What each instance of an order runs, validated. `environment` is in its stored form:
    [{"name", "value"}] or [{"name", "secret": True, "ciphertext"}]."""

    image: str = ""
    command: str = ""
    ports: tuple[int, ...] = ()
    environment: list[dict[str, Any]] = field(default_factory=list)
    disk_gb: int | None = None  # None: each instance type's default
    template: LaunchTemplate | None = None


def launch_template_for(*, name: str, buyer: User | None) -> LaunchTemplate | None:
    """The template an order names: the buyer's own of that name, else the curated one."""
    templates = LaunchTemplate.objects.filter(name=name)
    if buyer is not None and buyer.is_authenticated:
        own = templates.filter(owner=buyer).first()
        if own is not None:
            return own
    return templates.filter(owner__isnull=True).first()


def launch_templates_visible(user: User | None) -> QuerySet[LaunchTemplate]:
    """Curated templates and the user's own (staff see every one)."""
    templates = LaunchTemplate.objects.all()
    if user is not None and user.is_authenticated and user.is_staff:
        return templates
    if user is not None and user.is_authenticated:
        return templates.filter(Q(owner__isnull=True) | Q(owner=user))
    return templates.filter(owner__isnull=True)


def launch_resolve(
    raw: dict[str, Any], *, buyer: User | None, errors: dict[str, list[str]], for_quote: bool = False
) -> Launch:
    """Merge the named template (if any) with what the order gives (the order wins; environment by
    name) and validate. Adds to `errors` by field; the image is required unless quoting."""
    template = None
    if raw.get("template") not in (None, ""):
        template = launch_template_for(name=str(raw["template"]), buyer=buyer)
        if template is None:
            errors["template"] = [_("No template named %(name)s.") % {"name": repr(raw["template"])}]
    image = raw.get("image") or (template.image if template else "")
    command = raw.get("command") or (template.command if template else "")
    ports_raw = raw.get("ports") if raw.get("ports") is not None else (template.ports if template else [])
    disk_raw = raw.get("disk_gb") if raw.get("disk_gb") is not None else (template.disk_gb if template else None)
    environment_raw = list(template.environment if template else []) + list(raw.get("environment") or [])

    if not for_quote or image:
        image = str(image).strip()
        if not image or len(image) > 255 or not all(ch.isprintable() and not ch.isspace() for ch in image):
            errors["image"] = [_("A container image reference such as pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime.")]
    try:
        validate_clean_text(command or "", max_length=MAX_COMMAND_LENGTH)
    except ValidationError as error:
        errors["command"] = list(error.messages)
    ports = ports_parse(ports_raw, errors)
    disk_gb = None
    if disk_raw is not None:
        if isinstance(disk_raw, bool) or not isinstance(disk_raw, int) or not 1 <= disk_raw <= MAX_DISK_GB:
            errors["disk_gb"] = [_("Whole gigabytes, 1 to %(maximum)s.") % {"maximum": MAX_DISK_GB}]
        else:
            disk_gb = disk_raw
    environment = environment_parse(environment_raw, errors)
    return Launch(
        image=image,
        command=command or "",
        ports=ports,
        environment=environment if "environment" not in errors else [],
        disk_gb=disk_gb,
        template=template,
    )


def ports_parse(raw: object, errors: dict[str, list[str]]) -> tuple[int, ...]:
    """Container ports: whole numbers 1-65535, each once, at most MAX_PORTS_PER_INSTANCE."""
    if not isinstance(raw, list | tuple) or len(raw) > MAX_PORTS_PER_INSTANCE:
        errors["ports"] = [_("A list of at most %(limit)s container ports.") % {"limit": MAX_PORTS_PER_INSTANCE}]
        return ()
    if any(isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535 for p in raw):
        errors["ports"] = [_("Container ports are whole numbers from 1 to 65535.")]
        return ()
    if len(set(raw)) != len(raw):
        errors["ports"] = [_("Each container port once.")]
        return ()
    return tuple(sorted(raw))


def environment_parse(raw: object, errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    """[{name, value, secret?}] validated and in stored form (secret values encrypted). A later
    entry of the same name replaces an earlier one (an order's value replaces its template's)."""
    if not isinstance(raw, list) or len(raw) > 2 * MAX_ENVIRONMENT_VARIABLES:
        errors["environment"] = [
            _("A list of at most %(limit)s {name, value, secret} objects.") % {"limit": MAX_ENVIRONMENT_VARIABLES}
        ]
        return []
    by_name: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) - {"name", "value", "secret"} or "name" not in entry:
            problems.append(_("Each variable is an object with name, value and optionally secret."))
            continue
        name, value, secret = entry["name"], entry.get("value", ""), entry.get("secret", False)
        if not isinstance(name, str) or not ENVIRONMENT_NAME.fullmatch(name):
            problems.append(
                _("%(name)s: names are letters, digits and _, not starting with a digit.")
                % {"name": repr(str(name)[:40])}
            )
            continue
        if name in RESERVED_ENVIRONMENT_NAMES or name.startswith(RESERVED_ENVIRONMENT_PREFIXES):
            problems.append(_("%(name)s: set by the platform for every instance.") % {"name": name})
            continue
        if not isinstance(secret, bool):
            problems.append(_("%(name)s: secret is true or false.") % {"name": name})
            continue
        if "ciphertext" in entry or not isinstance(value, str):
            problems.append(_("%(name)s: the value is a string.") % {"name": name})
            continue
        try:
            validate_clean_text(value, max_length=MAX_ENVIRONMENT_VALUE_LENGTH)
        except ValidationError as error:
            problems.append(f"{name}: {' '.join(error.messages)}")
            continue
        by_name[name] = (
            {"name": name, "secret": True, "ciphertext": secret_encrypt(value)}
            if secret
            else {
                "name": name,
                "value": value,
            }
        )
    if len(by_name) > MAX_ENVIRONMENT_VARIABLES:
        problems.append(_("At most %(limit)s variables.") % {"limit": MAX_ENVIRONMENT_VARIABLES})
    if problems:
        errors["environment"] = problems
        return []
    return list(by_name.values())


def environment_shown(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the buyer sees again: secret variables by name only, never their value."""
    return [
        {"name": e["name"], "secret": True}
        if e.get("secret")
        else {"name": e["name"], "value": e["value"], "secret": False}
        for e in stored
    ]


def environment_value(entry: dict[str, Any]) -> str:
    """One stored variable's value, decrypted if secret: only for the start command handed to the
    instance's host. Raises SecretUnreadable when its key is no longer configured."""
    return secret_decrypt(entry["ciphertext"]) if entry.get("secret") else str(entry["value"])


# -- templates ------------------------------------------------------------------------------------


def launch_template_create(*, owner: User | None, data: dict[str, Any]) -> LaunchTemplate:
    """A buyer's own template (or a curated one when `owner` is None: staff only, checked by the
    caller). Templates carry no secrets: a secret variable is refused."""
    errors: dict[str, list[str]] = {}
    unknown = set(data) - {"name", "title", "description", "image", "command", "ports", "environment", "disk_gb"}
    if unknown:
        raise InvalidInput(
            _("Unknown field(s): %(fields)s.") % {"fields": ", ".join(sorted(unknown))},
            fields={f: [_("Unknown.")] for f in unknown},
        )
    launch = launch_resolve(
        {k: data.get(k) for k in ("image", "command", "ports", "disk_gb", "environment")}, buyer=owner, errors=errors
    )
    if any(e.get("secret") for e in launch.environment):
        errors["environment"] = [_("Templates carry no secrets: give secret values at order.")]
    template = LaunchTemplate(
        owner=owner,
        name=str(data.get("name") or ""),
        title=str(data.get("title") or data.get("name") or ""),
        description=str(data.get("description") or ""),
        image=launch.image,
        command=launch.command,
        ports=list(launch.ports),
        environment=launch.environment,
        disk_gb=launch.disk_gb,
    )
    try:
        template.full_clean(exclude=["owner", "image", "command", "ports", "environment", "disk_gb"])
        validate_clean_text(template.description, max_length=2000)
    except ValidationError as error:
        for name, messages in (
            error.message_dict.items() if hasattr(error, "error_dict") else [("description", error.messages)]
        ):
            errors.setdefault(name, []).extend(messages)
    if errors:
        raise InvalidInput(_("The template is not valid."), fields=errors)
    if owner is not None and LaunchTemplate.objects.filter(owner=owner).count() >= MAX_TEMPLATES_PER_BUYER:
        raise Conflict(
            _("At most %(limit)s templates per account: delete one first.") % {"limit": MAX_TEMPLATES_PER_BUYER},
            code=OrderErrorCode.TEMPLATE_LIMIT,
        )
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:
        raise Conflict(
            _("You already have a template named %(name)s.") % {"name": repr(template.name)},
            code=OrderErrorCode.TEMPLATE_EXISTS,
            fields={"name": [_("Already used.")]},
        ) from None
    return template


def launch_template_delete(*, template: LaunchTemplate, user: User) -> None:
    """Owners delete their own templates; curated ones are staff's."""
    if template.owner_id != user.pk and not (template.owner_id is None and user.is_staff):
        raise NotFound(_("No such template."))
    template.delete()
