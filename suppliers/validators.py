"""Validators of what suppliers declare (kept beside the models that use them)."""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def validate_public_address(value: str) -> None:
    """An IP address or a DNS name (RFC 1123 labels), as buyers will type it after `ssh root@`."""
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    valid = 0 < len(value) <= 253 and len(labels) >= 2 and not labels[-1].isdigit()
    for label in labels:
        valid = valid and 0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-"
        valid = valid and all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in label)
    if not valid:
        raise ValidationError(_("An IP address (203.0.113.5) or a DNS name (gpu1.example.com)."))
