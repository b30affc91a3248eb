"""Local development: the zero-setup default (SQLite, filesystem Celery broker)."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env.bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default=True)  # a receiver on localhost
WHITENOISE_AUTOREFRESH = DEBUG  # pick up CSS edits without collectstatic
