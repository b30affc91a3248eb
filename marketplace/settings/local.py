"""Local development: the zero-setup default (SQLite, filesystem Celery broker)."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
WHITENOISE_AUTOREFRESH = DEBUG  # pick up CSS edits without collectstatic
