"""People and their credentials. Logging in is by email; roles come from organizations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .roles import Role

TEAM_ACCOUNT_DOMAIN = "teams.invalid"  # team accounts' addresses: a reserved name, no mail is delivered there


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("an email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    class Role(models.TextChoices):
        BUYER = "buyer", _("Buyer")
        SUPPLIER = "supplier", _("Supplier")

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    role = models.CharField(
        max_length=16,
        choices=Role.choices,
        default=Role.BUYER,
        help_text="What the person signed up to do; staff is the is_staff flag.",
    )
    spend_limit_per_hour = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal("100.00"),
        help_text="Ceiling on the total hourly price of this buyer's live instances (USD).",
    )
    is_active = models.BooleanField(default=True)
    suspended_at = models.DateTimeField(null=True, blank=True, help_text="Suspended buyers cannot order.")
    suspension_reason = models.CharField(max_length=500, blank=True)
    is_staff = models.BooleanField(default=False)
    is_team = models.BooleanField(
        default=False,
        editable=False,
        help_text="The account of a team (accounts.Team): it owns the team's wallet, orders, keys and webhooks; "
        "nobody logs in as it, members act for it by their role.",
    )
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def is_supplier(self) -> bool:
        return self.role == self.Role.SUPPLIER

    def withhold_staff_powers(self) -> None:
        """For one request (an API key without the staff scope): this object acts as an ordinary
        account. It must never be saved with the flags it then holds."""
        self._staff_withheld = True
        self.is_staff = self.is_superuser = False

    def save(self, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_staff_withheld", False):
            fields = kwargs.get("update_fields")
            if fields is None or {"is_staff", "is_superuser"} & set(fields):
                raise RuntimeError("An account whose staff powers are withheld for a request cannot save them.")
        super().save(*args, **kwargs)


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        """Keys that have not been revoked."""
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A bearer credential. Only the SHA-256 of the secret is stored; the key is shown once."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part, shown to identify the key.")
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    scopes = models.JSONField(default=list, help_text="What the key may do: accounts.scopes.Scope values.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: the key does not expire.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())


class SshKey(models.Model):
    """A public SSH key of an account, installed into the `authorized_keys` of the instances its owner
    chooses. Stored as the parser wrote it back (`type base64 [comment]`), never as typed."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100)
    key_type = models.CharField(max_length=32, help_text="ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...")
    public_key = models.TextField(help_text="One OpenSSH authorized_keys line.")
    fingerprint = models.CharField(max_length=64, help_text="SHA256:..., as ssh-keygen -lf prints it.")
    bits = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "SSH key"
        constraints = [models.UniqueConstraint(fields=["user", "fingerprint"], name="ssh_key_once_per_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"


class Notification(models.Model):
    """An in-app message (also emailed). `dedupe_key` stops the same alert being sent twice."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    dedupe_key = models.CharField(max_length=128, unique=True, null=True, blank=True)
    link = models.CharField(max_length=300, blank=True, help_text="The object it is about: a path on this site.")
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user}"


class Team(models.Model):
    """A buyer organization. Its `account` (a User with `is_team`) is what pays and owns: the shared
    wallet and spend ceiling, the orders and instances, team API keys and webhooks. People act for
    it by their membership's role (`accounts.roles`)."""

    name = models.CharField(max_length=100)
    account = models.OneToOneField(User, on_delete=models.PROTECT, related_name="team")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="team_memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team", "user"]
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="team_membership_once")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.team} ({self.role})"


class Invitation(models.Model):
    """An invitation by email to join a team or a supplier organization with a role. Only the
    SHA-256 of its token is stored; the link is emailed once. Accepted by a logged-in person whose
    email is the invited one, once, before it expires."""

    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    def is_open(self, now: datetime | None = None) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > (now or timezone.now())


class TeamInvitation(Invitation):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")

    class Meta(Invitation.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["team", "email"],
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="team_invitation_open_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.team} ({self.role})"
