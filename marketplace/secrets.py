"""Secrets kept at rest (instances' secret environment values): Fernet with the keys of
`settings.ENVIRONMENT_ENCRYPTION_KEYS`, newest first (it encrypts; every key decrypts, so keys can
be rotated by putting a new one in front)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """The ciphertext was made with a key no longer configured (or was altered)."""


def _cipher() -> MultiFernet:
    keys = [key.strip() for key in str(settings.ENVIRONMENT_ENCRYPTION_KEYS).split(",") if key.strip()]
    return MultiFernet([Fernet(key) for key in keys])


def secret_encrypt(plaintext: str) -> str:
    return _cipher().encrypt(plaintext.encode()).decode()


def secret_decrypt(ciphertext: str) -> str:
    try:
        return _cipher().decrypt(ciphertext.encode()).decode()
    except (InvalidToken, ValueError) as error:
        raise SecretUnreadable("A secret cannot be decrypted with the configured keys.") from error
