"""Settings shared by every environment. The environment is read here and only here."""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Development values. They are in the repository, so anyone knows them: production settings must
# replace every one, and the system checks refuse them there (marketplace/settings/checks.py).
DEVELOPMENT_DEFAULTS = {
    "SECRET_KEY": "insecure-local-development-key-change-me-in-production",
    "STRIPE_SECRET_KEY": "sk_test_local_development",
    "STRIPE_WEBHOOK_SECRET": "whsec_local_development",
    "ENVIRONMENT_ENCRYPTION_KEYS": "oGZN930QXoMHxXtKDDA_F9nBo1UqE-SnUwu_yAQ5fms=",
}
# Off in base, on in production.py: the production-only system checks run when it is True.
PRODUCTION = False

SECRET_KEY = env("SECRET_KEY", default=DEVELOPMENT_DEFAULTS["SECRET_KEY"])
# Fernet keys (comma-separated, newest first: it encrypts, all decrypt) for instances' secret
# environment values at rest. Make one with
# `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.
ENVIRONMENT_ENCRYPTION_KEYS = env(
    "ENVIRONMENT_ENCRYPTION_KEYS", default=DEVELOPMENT_DEFAULTS["ENVIRONMENT_ENCRYPTION_KEYS"]
)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "accounts",
    "marketplace",
    "suppliers",
    "orders",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "marketplace.middleware.DeploymentLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.ActingTeamMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a login that axes flagged as locked out into the lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "marketplace.urls"
WSGI_APPLICATION = "marketplace.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.unread_notifications",
                "accounts.context_processors.acting_team",
                "marketplace.context_processors.currency",
            ],
            # `money`, `percent` and the other display filters on every page without a load tag.
            "builtins": ["marketplace.templatetags.market"],
        },
    },
]

# --- Database: SQLite by default, PostgreSQL (with Django's connection pool) from DATABASE_URL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"]["pool"] = env.bool("DATABASE_POOL", default=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool owns connection reuse
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    # Wait for a writer rather than failing at once when web and worker share the file.
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
# Database roles (docs/database-roles.md): the app connects (DATABASE_URL) as a role that owns no
# table, so it cannot switch the ledger's triggers off; the owner runs `manage.py migrate --database
# owner` (DATABASE_OWNER_URL, set for the release job only).
if env("DATABASE_OWNER_URL", default=""):
    DATABASES["owner"] = env.db("DATABASE_OWNER_URL")
    DATABASES["owner"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["marketplace.db_routers.OwnerMigrationsRouter"]
# A read replica for searches and market pages (marketplace/databases.py); writes and locked reads stay
# on the primary.
if env("DATABASE_REPLICA_URL", default=""):
    DATABASES["replica"] = env.db("DATABASE_REPLICA_URL")
    DATABASES["replica"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        **DATABASES["replica"].get("OPTIONS", {}),
    }
    DATABASES["replica"]["CONN_MAX_AGE"] = DATABASES["default"].get("CONN_MAX_AGE", 0)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
# AxesStandaloneBackend first: it refuses a locked-out account or address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:home"
LOGOUT_REDIRECT_URL = "offers"

# The deployment's language (LANGUAGE_CODE=zh-hans for a Chinese deployment); a person may pick
# another with the switcher in the header (a cookie). marketplace.middleware.DeploymentLanguageMiddleware
# does not follow the browser's Accept-Language: the deployment decides the default.
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="en-us").lower()
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Uploaded files (supplier documents) are private: never served from a public URL.
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/private-media/"
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Cache and Celery: Redis from REDIS_URL, otherwise zero-setup local equivalents.
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    # A task taken by a worker that dies unacknowledged is delivered again after this long (acks
    # late): longer than the longest task time limit, so a slow task is never run twice at once.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=900)}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "filesystem://"
    CELERY_RESULT_BACKEND = None
    _broker_dir = Path(env("CELERY_BROKER_DIR", default=str(VAR_DIR / "celery-broker")))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(VAR_DIR / "celery-control"),
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
# A task whose worker process is killed goes back to the queue instead of being acknowledged.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_ALWAYS_EAGER = False
# Queues by kind of work, so each gets its own workers in production (scripts/production.sh): money
# (metering, settlement, balances, payouts), hosts and instances (heartbeats, expiry, spot, reliability),
# notifications (availability alerts), outgoing webhooks (a slow receiver holds a worker), calls to
# outside services (Stripe transfers), and the default queue for catalog upkeep. The development
# worker consumes them all (TASK_QUEUE_NAMES; not CELERY_QUEUES, which Celery would read as its own
# queue declarations).
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "billing.tasks.payout_transfer_task": {"queue": "external"},
    "billing.tasks.*": {"queue": "billing"},
    "orders.tasks.*": {"queue": "agents"},
    "suppliers.tasks.*": {"queue": "agents"},
    "marketplace.tasks.availability_alerts_check_task": {"queue": "notifications"},
    "marketplace.tasks.webhook_*": {"queue": "webhooks"},
}
TASK_QUEUE_NAMES = ("celery", "billing", "agents", "notifications", "webhooks", "external")
CELERY_BEAT_SCHEDULE = {
    "webhook-deliveries-prune": {"task": "marketplace.tasks.webhook_deliveries_prune_task", "schedule": 86400.0},
    "webhook-deliveries-sweep": {
        "task": "marketplace.tasks.webhook_deliveries_sweep_task",
        "schedule": env.float("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=30.0),
    },
    "offers-delist-expired": {
        "task": "marketplace.tasks.offers_delist_expired_task",
        "schedule": env.float("OFFER_EXPIRY_INTERVAL_SECONDS", default=300.0),
    },
    "availability-alerts": {"task": "marketplace.tasks.availability_alerts_check_task", "schedule": 60.0},
    "spot-resume": {"task": "orders.tasks.spot_resume_task", "schedule": 30.0},
    "instances-expire": {"task": "orders.tasks.instances_expire_task", "schedule": 60.0},
    "hosts-mark-offline": {"task": "suppliers.tasks.hosts_mark_offline_task", "schedule": 30.0},
    "hosts-release-lost": {"task": "suppliers.tasks.hosts_release_lost_task", "schedule": 120.0},
    "meter-usage": {"task": "billing.tasks.meter_usage_task", "schedule": env.float("METERING_INTERVAL_SECONDS", 60.0)},
    "settle-usage": {"task": "billing.tasks.settle_usage_task", "schedule": 60.0},
    "low-balance": {"task": "billing.tasks.low_balance_check_task", "schedule": 60.0},
    "balance-audit": {"task": "billing.tasks.balance_audit_task", "schedule": 3600.0},
    "maintenance": {"task": "suppliers.tasks.maintenance_refresh_task", "schedule": 300.0},
    "reliability": {"task": "suppliers.tasks.hosts_reliability_refresh_task", "schedule": 3600.0},
    "payouts": {"task": "billing.tasks.payouts_create_task", "schedule": env.float("PAYOUT_INTERVAL_SECONDS", 86400.0)},
}
AGENT_OFFLINE_AFTER_SECONDS = env.int("AGENT_OFFLINE_AFTER_SECONDS", default=90)
# A host silent this long is lost: its instances are terminated, their capacity released and the
# outage's SLA credit granted, whether or not it comes back.
HOST_LOST_AFTER_SECONDS = env.int("HOST_LOST_AFTER_SECONDS", default=7200)
# A running instance its host's agent has not reported running for this long is failed.
AGENT_RECONCILE_GRACE_SECONDS = env.int("AGENT_RECONCILE_GRACE_SECONDS", default=120)
# The agent's uptime counter is compared with metered compute over windows this long; a difference
# above the percentage (and above a minute) is flagged for staff.
AGENT_USAGE_WINDOW_SECONDS = env.int("AGENT_USAGE_WINDOW_SECONDS", default=3600)
# No-GPU mode (orders.lifecycle): what a stopped instance started without accelerators gets.
NO_ACCELERATOR_MODE_VCPUS = env.int("NO_ACCELERATOR_MODE_VCPUS", default=2)
NO_ACCELERATOR_MODE_RAM_GB = env.int("NO_ACCELERATOR_MODE_RAM_GB", default=8)
# An agent ships an instance's output at most this often (orders.logs).
LOG_SHIP_MIN_INTERVAL_SECONDS = env.float("LOG_SHIP_MIN_INTERVAL_SECONDS", default=5.0)
AGENT_USAGE_DISAGREEMENT_PERCENT = env.int("AGENT_USAGE_DISAGREEMENT_PERCENT", default=10)

# --- Client addresses and login throttling
# How many reverse proxies of ours stand in front of the app, each appending the address it saw to
# X-Forwarded-For. 0: the app faces clients, the address is REMOTE_ADDR and X-Forwarded-For is ignored
# (any client can write it). N: the Nth entry from the right, the one our outermost proxy wrote.
# The login throttle (accounts.views.client_ip) and DRF's throttles (NUM_PROXIES) both read it.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# django-axes: LOGIN_FAILURE_LIMIT failed logins for one account (from any address), or from one address
# (for any accounts), lock further logins of that account or address, on every way in (login page,
# admin, API key exchange), until LOGIN_LOCKOUT_SECONDS after the last counted failure.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=15 * 60)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(seconds=LOGIN_LOCKOUT_SECONDS)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks; not only the pair
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"  # shared by every web process and worker
AXES_USERNAME_FORM_FIELD = "username"  # the key Django's login forms pass to authenticate()
AXES_USERNAME_CALLABLE = "accounts.views.login_username"  # case and spaces do not make a new account
AXES_CLIENT_IP_CALLABLE = "accounts.views.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.views.login_locked_out"
# Tries made while locked are refused but not counted, so the lock lifts on time rather than being
# pushed back by every retry (the owner's included).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not wipe the failures: otherwise an attacker with one account of their own could reset
# their address's count between guesses at others.
AXES_RESET_ON_SUCCESS = False
# Staff lift a lock with `manage.py axes_reset_username EMAIL` or `axes_reset_ip ADDRESS`. The axes
# admin pages stay off: the admin tests require every registered list to grow with the real flows.
AXES_ENABLE_ADMIN = False

# --- REST API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerApiKeyAuthentication",
        "accounts.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_FILTER_BACKENDS": ["marketplace.api.filters.StrictFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "marketplace.api.pagination.PageNumberPagination",
    # Bodies with control characters or nested past 32 levels are a 400 (marketplace/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "marketplace.api.parsers.JSONParser",
        "marketplace.api.parsers.FormParser",
        "marketplace.api.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "marketplace.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_THROTTLE_RATES": {"api_key_create": "20/minute", "agent_register": "240/minute"},
    # Per API key and per account (marketplace/api/throttling.py, API_RATE_LIMITS below).
    "DEFAULT_THROTTLE_CLASSES": [
        "marketplace.api.throttling.ApiKeyRateThrottle",
        "marketplace.api.throttling.AccountRateThrottle",
        "marketplace.api.throttling.AnonymousRateThrottle",
        "marketplace.api.throttling.HostRateThrottle",
    ],
    # Throttles key anonymous clients by address: the same trusted proxy count as the login throttle.
    # (Unset, DRF would take X-Forwarded-For as the client wrote it.)
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}
# Outgoing webhooks (marketplace/webhooks.py): an endpoint is disabled after this many failed tries
# in a row; private and loopback destinations (and plain http) only where allowed (development).
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=15)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env.bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default=DEBUG)
# Request limits: 429 with Retry-After beyond them. An empty value turns a limit off.
API_RATE_LIMITS = {
    "key": env("API_RATE_PER_KEY", default="600/minute"),
    "account": env("API_RATE_PER_ACCOUNT", default="1200/minute"),
    "anonymous": env("API_RATE_ANONYMOUS", default="300/minute"),
    "host": env("API_RATE_PER_HOST", default="600/minute"),
    "refused": env("API_RATE_REFUSED_CREDENTIALS", default="60/minute"),  # per address
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Compute marketplace API",
    "DESCRIPTION": "Standardized GPU and accelerator instances from many suppliers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "marketplace.api.schema.add_error_responses",
        "marketplace.api.schema.add_examples",
    ],
    "ENUM_NAME_OVERRIDES": {
        "InstanceStatusEnum": "orders.models.InstanceStatus",
        "HostStatusEnum": "suppliers.models.Host.Status",
        "OrganizationStatusEnum": "suppliers.models.Organization.Status",
        "MemberRoleEnum": "accounts.roles.Role",
        "AccountRoleEnum": "accounts.models.User.Role",
    },
}

# --- Marketplace rules
# The platform currency, a deployment setting (marketplace.money.CURRENCIES): USD by default, CNY
# for a Chinese deployment. Every balance, price and Stripe charge is in it; it is not converted.
PLATFORM_CURRENCY = env.str("CURRENCY", default="USD").upper()
SPOT_PREEMPTION_GRACE_SECONDS = env.int("SPOT_PREEMPTION_GRACE_SECONDS", default=30)
# At zero balance a stopped instance's disk is kept this long (and billed: the most a buyer can
# owe), then released.
STOPPED_DISK_GRACE_DAYS = env.int("STOPPED_DISK_GRACE_DAYS", default=7)
PLATFORM_TAKE_RATE = Decimal(env.str("PLATFORM_TAKE_RATE", default="0.15"))

# Stripe: test-mode keys by default; STRIPE_API_BASE points the official library elsewhere (tests
# run it against a local server speaking Stripe's API).
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default=DEVELOPMENT_DEFAULTS["STRIPE_SECRET_KEY"])
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default=DEVELOPMENT_DEFAULTS["STRIPE_WEBHOOK_SECRET"])
STRIPE_API_BASE = env("STRIPE_API_BASE", default="https://api.stripe.com")
TOP_UP_MIN = Decimal(env.str("TOP_UP_MIN", default="5"))
TOP_UP_MAX = Decimal(env.str("TOP_UP_MAX", default="10000"))
RESERVED_CANCELLATION_FEE = Decimal(env.str("RESERVED_CANCELLATION_FEE", default="0.10"))
SLA_GRACE_SECONDS = env.int("SLA_GRACE_SECONDS", default=300)
SLA_CREDIT_MULTIPLE = Decimal(env.str("SLA_CREDIT_MULTIPLE", default="5"))
PAYOUT_MINIMUM = Decimal(env.str("PAYOUT_MINIMUM", default="10"))
# Staff credit notes: above CREDIT_NOTE_APPROVAL_ABOVE a second staff member approves; none above CREDIT_NOTE_MAX.
CREDIT_NOTE_APPROVAL_ABOVE = Decimal(env.str("CREDIT_NOTE_APPROVAL_ABOVE", default="100.00"))
CREDIT_NOTE_MAX = Decimal(env.str("CREDIT_NOTE_MAX", default="10000.00"))
# The approval threshold is rolling: what one staff member credited alone in this window counts.
CREDIT_NOTE_APPROVAL_WINDOW = timedelta(hours=env.int("CREDIT_NOTE_APPROVAL_WINDOW_HOURS", default=24))

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="marketplace@example.com")
# Where people reach the site: links in emails (invitations) start with it.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# How long an emailed invitation to a team or a supplier organization can be accepted.
INVITATION_TTL_DAYS = env.int("INVITATION_TTL_DAYS", default=7)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

# Where suppliers and buyers appeal a staff decision (shown with every such decision).
APPEALS_EMAIL = env("APPEALS_EMAIL", default="appeals@compute-market.example")
