"""Account operations: sign-up, API keys, buyer settings and notifications."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from django.conf import settings
from django.contrib.auth import authenticate, password_validation
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace.currency import money_text
from marketplace.errors import InvalidInput, NotFound, validation_fields

from .errors import (
    AccountErrorCode,
    ApiKeyRefused,
    InvalidCredentials,
    InvalidSshKey,
    LoginLocked,
    SshKeyExists,
    login_locked_detail,
)
from .locks import user_lock
from .models import TEAM_ACCOUNT_DOMAIN, ApiKey, Notification, SshKey, TeamMembership, User
from .roles import MANAGERS
from .scopes import DEFAULT_SCOPES, Scope

API_KEY_PREFIX = "cmk"


def hash_api_secret(secret: str) -> str:
    """Keys are 256-bit random strings, so a plain SHA-256 is a sufficient one-way hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def user_create(*, email: str, password: str, role: str = User.Role.BUYER, full_name: str = "") -> User:
    """Create a person who logs in by email. Raises InvalidInput on a taken email or weak password."""
    email = User.objects.normalize_email(email).lower()
    if role not in User.Role.values:
        raise InvalidInput(
            _("Unknown role."),
            fields={"role": [_("Choose one of %(roles)s.") % {"roles": ", ".join(User.Role.values)}]},
        )
    if User.objects.filter(email__iexact=email).exists():
        raise InvalidInput(
            _("An account with this email already exists."),
            code=AccountErrorCode.EMAIL_TAKEN,
            fields={"email": [_("An account with this email already exists.")]},
        )
    if email.endswith("@" + TEAM_ACCOUNT_DOMAIN):
        raise InvalidInput(_("Use an email address you can receive mail at."), fields={"email": [_("Not a mailbox.")]})
    user = User(email=email, role=role, full_name=full_name)
    try:
        user.full_clean(exclude=["password"])
        password_validation.validate_password(password, user)
    except ValidationError as error:
        fields = validation_fields(error)
        if "non_field_errors" in fields:
            fields["password"] = fields.pop("non_field_errors")
        raise InvalidInput(_("The account details are not valid."), fields=fields) from error
    user.set_password(password)
    user.save()
    return user


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    key: str  # the full secret, returned once and never stored


def api_key_issue(
    *, user: User, name: str, scopes: Iterable[str] | None = None, expires_at: datetime | None = None
) -> IssuedApiKey:
    """Create a key for `user` with `scopes` (default: all but staff) and an optional expiry. The
    full key is only in the return value."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput(_("A key needs a name."), fields={"name": [_("This field is required.")]})
    granted = api_key_scopes_check(user=user, scopes=DEFAULT_SCOPES if scopes is None else scopes)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput(_("The expiry must be in the future."), fields={"expires_at": [_("Must be in the future.")]})
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = f"{API_KEY_PREFIX}_{prefix}_{secret}"
    api_key = ApiKey.objects.create(
        user=user,
        name=name[:100],
        prefix=prefix,
        secret_hash=hash_api_secret(key),
        scopes=granted,
        expires_at=expires_at,
    )
    return IssuedApiKey(api_key=api_key, key=key)


def api_key_scopes_check(*, user: User, scopes: Iterable[str]) -> list[str]:
    """The scopes, validated and in their canonical order: known ones, at least one, and `staff`
    only for staff accounts."""
    wanted = list(scopes)
    unknown = sorted({s for s in wanted if s not in {scope.value for scope in Scope}})
    if unknown:
        raise InvalidInput(
            _("Unknown scope: %(scopes)s.") % {"scopes": ", ".join(unknown)},
            fields={"scopes": [_("Choose from %(scopes)s.") % {"scopes": ", ".join(s.value for s in Scope)}]},
        )
    if not wanted:
        raise InvalidInput(_("A key needs at least one scope."), fields={"scopes": [_("Choose at least one scope.")]})
    if Scope.STAFF in wanted and not user.is_staff:
        raise InvalidInput(
            _("Only staff accounts can give a key the staff scope."),
            fields={"scopes": [_("staff: not a staff account.")]},
        )
    return [scope.value for scope in Scope if scope.value in wanted]


def api_key_issue_with_password(
    *,
    email: str,
    password: str,
    name: str,
    request: HttpRequest,
    scopes: Iterable[str] | None = None,
    expires_at: datetime | None = None,
) -> IssuedApiKey:
    """Exchange an email and password for a new API key.

    `request` is the login throttle's view of the client (django-axes, see AUTHENTICATION_BACKENDS): a
    failure counts against the account and the client address, and a locked account or address raises
    LoginLocked (429); while locked the password is not even compared."""
    user = authenticate(request, username=(email or "").strip().lower(), password=password or "")
    if user is None or not user.is_active:
        if getattr(request, "axes_locked_out", False):
            raise LoginLocked(login_locked_detail(lockout_seconds=settings.LOGIN_LOCKOUT_SECONDS))
        raise InvalidCredentials(_("The email or password is wrong."))
    return api_key_issue(user=user, name=name, scopes=scopes, expires_at=expires_at)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_authenticate(*, key: str, client_ip: str | None = None) -> ApiKey:
    """The key matching `key`, or ApiKeyRefused saying why not (unknown, revoked, expired; an
    inactive account's key is unknown). Records when and from where it was last used: at most once a
    minute per key unless the address changes, so a busy key is not a write per request."""
    api_key = None
    if key.startswith(f"{API_KEY_PREFIX}_"):
        api_key = ApiKey.objects.select_related("user").filter(secret_hash=hash_api_secret(key)).first()
    if api_key is None or not api_key.user.is_active:
        raise ApiKeyRefused(_("Invalid API key."))
    if api_key.revoked_at is not None:
        raise ApiKeyRefused(_("This API key was revoked."), code=AccountErrorCode.API_KEY_REVOKED)
    now = timezone.now()
    if api_key.is_expired(now):
        raise ApiKeyRefused(
            _("This API key expired at %(time)s UTC.") % {"time": f"{api_key.expires_at:%Y-%m-%d %H:%M}"},
            code=AccountErrorCode.API_KEY_EXPIRED,
        )
    stale = api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60
    if stale or (client_ip and client_ip != api_key.last_used_ip):
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now, last_used_ip=client_ip)
        api_key.last_used_at, api_key.last_used_ip = now, client_ip
    return api_key


def notify(
    *, user: User, kind: str, title: str, body: str = "", dedupe_key: str | None = None, link: str = ""
) -> Notification | None:
    """Record an in-app notification and email it after commit; `link` is the path of the object it
    is about (the page and the email point there). With a `dedupe_key` seen before, nothing happens
    (returns None)."""
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                user=user, kind=kind, title=title, body=body, dedupe_key=dedupe_key, link=link
            )
    except IntegrityError:
        return None
    recipients = [user.email]
    if user.is_team:  # nobody reads a team account's address: its owners and admins are told
        recipients = list(
            TeamMembership.objects.filter(team__account=user, role__in=MANAGERS).values_list("user__email", flat=True)
        )
    text = body or title
    if link:
        text = f"{text}\n\n{settings.SITE_URL}{link}"
    if recipients:
        transaction.on_commit(lambda: send_mail(title, text, None, recipients, fail_silently=True))
    return notification


def notify_all(users: Iterable[User], *, kind: str, title: str, body: str = "", link: str = "") -> int:
    """`notify` each user once (a user appearing twice is told once)."""
    told = 0
    for user in {u.pk: u for u in users}.values():
        notify(user=user, kind=kind, title=title, body=body, link=link)
        told += 1
    return told


@transaction.atomic
def buyer_set_spend_limit(*, buyer: User, limit_per_hour: Decimal | None) -> User:
    """The buyer's ceiling on the total hourly price of their live instances (locks the user row)."""
    if limit_per_hour is None or limit_per_hour < 0 or limit_per_hour > Decimal("1000000"):
        raise InvalidInput(
            _("The limit is between 0 and %(max)s per hour.") % {"max": money_text(Decimal("1000000"))},
            fields={"spend_limit_per_hour": [_("Out of range.")]},
        )
    buyer = user_lock(user_id=buyer.pk)
    buyer.spend_limit_per_hour = limit_per_hour.quantize(Decimal("0.01"))
    buyer.save(update_fields=["spend_limit_per_hour"])
    return buyer


# --- SSH keys -----------------------------------------------------------------------------------------

MAX_SSH_KEY_LENGTH = 16_384
MAX_SSH_KEYS_PER_USER = 50
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class ParsedSshKey:
    key_type: str
    line: str  # `type base64 [comment]`, as written back by the parser
    fingerprint: str  # SHA256:<base64 without padding>, as `ssh-keygen -lf` prints it
    bits: int


def _ssh_key_refused(message: str) -> InvalidSshKey:
    return InvalidSshKey(message, fields={"public_key": [message]})


def ssh_public_key_parse(text: str | None) -> ParsedSshKey:
    """One OpenSSH public key line, parsed by `cryptography`'s SSH loader and written back by it (so
    nothing but the key and a plain comment reaches an authorized_keys file). Ed25519, ECDSA and RSA
    of at least 2048 bits; InvalidSshKey (400) otherwise, saying what is wrong."""
    raw = (text or "").strip()
    if not raw or len(raw) > MAX_SSH_KEY_LENGTH:
        raise _ssh_key_refused(_("An OpenSSH public key line is required (at most 16 KiB)."))
    if "PRIVATE KEY" in raw:
        raise _ssh_key_refused(
            _("That is a private key: never paste it anywhere. Paste the public key (the .pub file) instead.")
        )
    if "\n" in raw or "\r" in raw:
        raise _ssh_key_refused(_("One key per entry: the text has several lines."))
    parts = raw.split(None, 2)
    try:
        key = serialization.load_ssh_public_key(" ".join(parts[:2]).encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError):
        raise _ssh_key_refused(_("Not an OpenSSH public key (expected e.g. 'ssh-ed25519 AAAA... you@host')."))
    if isinstance(key, Ed25519PublicKey):
        bits = 256
    elif isinstance(key, RSAPublicKey):
        bits = key.key_size
        if bits < MIN_RSA_BITS:
            raise _ssh_key_refused(
                _("RSA keys need at least %(minimum)s bits (this one has %(bits)s).")
                % {"minimum": MIN_RSA_BITS, "bits": bits}
            )
    elif isinstance(key, EllipticCurvePublicKey):
        bits = key.curve.key_size
    else:
        raise _ssh_key_refused(_("Use an Ed25519, ECDSA or RSA (2048+ bits) key; DSA keys are not accepted."))
    written = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode("ascii")
    key_type, blob = written.split()[:2]
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    fingerprint = "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")
    comment = parts[2] if len(parts) > 2 else ""
    if comment and (len(comment) > 100 or not comment.isprintable()):
        comment = ""  # only a plain label survives into authorized_keys
    return ParsedSshKey(key_type=key_type, line=f"{written} {comment}".strip(), fingerprint=fingerprint, bits=bits)


def ssh_key_add(*, user: User, public_key: str | None, name: str | None = None) -> SshKey:
    """Add a public key to the account: parsed, fingerprinted, once per account (409 otherwise)."""
    parsed = ssh_public_key_parse(public_key)
    comment = parsed.line.split(" ", 2)[2] if parsed.line.count(" ") >= 2 else ""
    label = (name or "").strip() or comment or parsed.key_type
    if len(label) > 100 or not label.isprintable():
        raise InvalidInput(_("A name of at most 100 printable characters."), fields={"name": [_("Invalid name.")]})
    with transaction.atomic():
        user_lock(user_id=user.pk)  # the per-account limit is decided under the user's row
        if SshKey.objects.filter(user=user).count() >= MAX_SSH_KEYS_PER_USER:
            raise InvalidInput(
                _("An account holds at most %(limit)s SSH keys; delete one first.") % {"limit": MAX_SSH_KEYS_PER_USER},
                fields={"public_key": [_("Too many keys.")]},
            )
        if SshKey.objects.filter(user=user, fingerprint=parsed.fingerprint).exists():
            raise SshKeyExists(
                _("This key is already on your account (%(fingerprint)s).") % {"fingerprint": parsed.fingerprint},
                fields={"public_key": [_("Already added.")]},
                extra={"fingerprint": parsed.fingerprint},
            )
        return SshKey.objects.create(
            user=user,
            name=label or parsed.key_type,
            key_type=parsed.key_type,
            public_key=parsed.line,
            fingerprint=parsed.fingerprint,
            bits=parsed.bits,
        )


def ssh_key_delete(*, user: User, key_id: int) -> None:
    """Remove one of the account's keys (instances already started keep theirs). 404 if not theirs."""
    deleted, _by_model = SshKey.objects.filter(user=user, pk=key_id).delete()
    if not deleted:
        raise NotFound(_("No such SSH key."))


def ssh_keys_authorized(*, user: User, key_ids: list[int] | None) -> str:
    """The authorized_keys text for an order: the chosen keys of `user` (all of them when None).
    An id that is not one of theirs is an InvalidInput naming it: another user's key is never used."""
    keys = SshKey.objects.filter(user=user).order_by("pk")
    if key_ids is not None:
        chosen = list(keys.filter(pk__in=key_ids))
        unknown = sorted(set(key_ids) - {k.pk for k in chosen})
        if unknown:
            raise InvalidInput(
                _("Unknown SSH key: %(ids)s.") % {"ids": ", ".join(map(str, unknown))},
                fields={"ssh_keys": [_("Not one of your keys: %(ids)s.") % {"ids": ", ".join(map(str, unknown))}]},
            )
        keys = chosen  # type: ignore[assignment]
    return "".join(f"{key.public_key}\n" for key in keys)
