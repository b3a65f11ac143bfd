"""Settings for the billing portal.

Everything that differs between a laptop, CI and production comes from the environment:
SQLite under var/ unless DATABASE_URL is set, an embedded (filesystem) Celery broker unless
REDIS_URL is set, and the simulated gateway unless PAYMENT_GATEWAY=stripe.
"""

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import cast

import dj_database_url
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

TESTING = "pytest" in sys.modules or os.environ.get("BILLING_TESTING") == "1"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DEBUG", False)
# Tooling (mypy, manage.py) may run without SECRET_KEY; the development key starts with
# "django-insecure-" so `check --deploy` rejects it, and wsgi.py refuses to serve with it when DEBUG is off.
DEV_SECRET_KEY = "django-insecure-development-only-key-never-use-it-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY") or DEV_SECRET_KEY

ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "accounts",
    "audit",
    "subscriptions",
    "billing",
    "payments",
    "gateway_sim",
    "notifications",
    "support",
    "support_requests",
    "dunning",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After sign-in and language: error pages in the shell; NUL bytes refused before any view.
    "billing_portal.errors.ErrorPageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so a locked-out sign-in never reaches the view.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "billing_portal.urls"
WSGI_APPLICATION = "billing_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "payments.context_processors.gateway",
            ],
            "builtins": ["billing_portal.templatetags.portal"],
        },
    }
]

# Database connections are kept (docs/ARCHITECTURE.md, "Database connections"): a new PostgreSQL
# connection costs 8-10 ms, more than most pages. Each gunicorn sync worker and each Celery prefork
# child is one process serving one request or task at a time, so each keeps one connection for
# CONN_MAX_AGE seconds, checked before reuse (CONN_HEALTH_CHECKS), rather than a psycopg pool per process.
# Tests open and close their own (CONN_MAX_AGE=0) unless the environment says otherwise.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0" if TESTING else "600")),
        conn_health_checks=env_bool("CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web server, worker and beat share one SQLite file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get("SQLITE_TEST_NAME") or None
elif env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # The hot compiled queries (billing_portal.compiled) run as prepared statements, each prepared once per
    # connection. Only they ask: psycopg would prepare others after this many runs, and Django's cursor binds
    # on the client and never prepares. Turn it off (0) behind a pooler that moves sessions between clients
    # (PgBouncer in transaction mode before 1.21): a prepared statement belongs to one server session.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 2**31 - 1
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend, reading a user's own and group permissions in one query.
    "accounts.backends.PermissionsInOneQueryBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "accounts:signin"
LOGIN_REDIRECT_URL = "/"  # accounts:root picks the billing account
LOGOUT_REDIRECT_URL = "accounts:signin"

# Sign-in rate limiting (django-axes): five failures per e-mail address and IP lock for 15 minutes.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_ENABLED = env_bool("AXES_ENABLED", True)

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("nl", _("Dutch"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Amsterdam"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if (DEBUG or TESTING)
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING

# Security. The strict CSP has no unsafe-inline: scripts and styles come from our own static files.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "billing_portal.errors.csrf_failure"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEBUG and not TESTING:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(60 * 60 * 24 * 365)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# E-mail (Django 6.1 MAILERS): the console backend for local runs; SMTP when EMAIL_HOST is set.
# The test runner swaps every mailer for the in-memory one (mail.outbox).
_email_host = os.environ.get("EMAIL_HOST", "")
if _email_host:
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": _email_host,
                "port": int(os.environ.get("EMAIL_PORT", "587")),
                "username": os.environ.get("EMAIL_HOST_USER", ""),
                "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
                "use_tls": env_bool("EMAIL_USE_TLS", True),
                "timeout": 20,
            },
        }
    }
else:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Billing <billing@billing.example>")

# Celery: Redis when REDIS_URL is set, otherwise kombu's filesystem transport under var/ so that
# `make run` needs no service. The filesystem broker is for one machine only.
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object]
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    _broker_dir = VAR_DIR / "broker"
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # kombu's default is ./control in the current directory: everything written at run time is under var/.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Celery's Django fix-up closes the database connection around every task unless DB_REUSE_MAX is set;
# with it set, billing_portal/celery.py treats tasks like requests instead (close_old_connections()
# before and after each: CONN_MAX_AGE, health checks, and a connection that errored is dropped).
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "1000"))
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    # The dunning sweep: due work lives in the database; this only hands it to workers. A sweep
    # message older than its period is dropped, so a stopped worker does not find a pile of them.
    "dunning-sweep": {"task": "dunning.tasks.dunning_sweep", "schedule": 60.0, "options": {"expires": 55}},
    # 3-D Secure challenges nobody finished are canceled at the gateway, so they block no retry.
    # (Unknown and stale pending attempts are looked up by the dunning sweep, per account.)
    "payments-abandon-stale": {
        "task": "payments.tasks.attempts_abandon_stale",
        "schedule": 300.0,
        "options": {"expires": 290},
    },
}
# A broker that does not answer must not hang a web request: give up quickly, the work stays in the DB.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Tests run tasks inline unless a test starts a real worker.
CELERY_TASK_ALWAYS_EAGER = TESTING and env_bool("CELERY_TASK_ALWAYS_EAGER", True)

# Payments.
PAYMENT_GATEWAY = os.environ.get("PAYMENT_GATEWAY", "simulated")
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")  # tests point the SDK at a local server
STRIPE_WEBHOOK_TOLERANCE = 300  # seconds
# Simulated gateway fault switches (card numbers), for tests and demos of reconciliation:
# TIMEOUT: the bank takes the charge but the answer is lost; UNREACHABLE: the request never arrives.
SIMULATED_GATEWAY_TIMEOUT_CARDS = [
    n for n in os.environ.get("SIMULATED_GATEWAY_TIMEOUT_CARDS", "").split(",") if n
]
SIMULATED_GATEWAY_UNREACHABLE_CARDS = [
    n for n in os.environ.get("SIMULATED_GATEWAY_UNREACHABLE_CARDS", "").split(",") if n
]
if PAYMENT_GATEWAY == "stripe":
    # Stripe.js and Elements (card fields in Stripe's iframes) and the 3-D Secure redirect, in stripe mode only.
    for _directive, _sources in {
        "script-src": ["https://js.stripe.com"],
        "frame-src": ["https://js.stripe.com", "https://hooks.stripe.com"],
        "connect-src": ["https://api.stripe.com"],
        "form-action": ["https://hooks.stripe.com"],
    }.items():
        SECURE_CSP[_directive] = list(cast("list[str]", SECURE_CSP.get(_directive, []))) + _sources
# Payments whose gateway answer was lost are looked up again (payments.tasks).
CELERY_BEAT_SCHEDULE["payments-reconcile-due"] = {
    "task": "payments.tasks.attempts_reconcile_due",
    "schedule": 15.0,
}
CELERY_BEAT_SCHEDULE["payments-abandon-stale-challenges"] = {
    "task": "payments.tasks.attempts_abandon_stale",
    "schedule": 3600.0,
}
CELERY_BEAT_SCHEDULE["payments-refunds-reconcile-due"] = {
    "task": "payments.tasks.refunds_reconcile_due",
    "schedule": 60.0,
}
# Deleted cards whose detach at the gateway failed are tried again with back-off (payments/detach.py).
CELERY_BEAT_SCHEDULE["payments-methods-detach-due"] = {
    "task": "payments.tasks.methods_detach_due",
    "schedule": 300.0,
    "options": {"expires": 290},
}

# Lifecycle of an unpaid subscription (PRODUCT.md flow 7).
BILLING_GRACE_PERIOD = timedelta(days=int(os.environ.get("BILLING_GRACE_DAYS", "30")))
BILLING_DISABLED_PERIOD = timedelta(days=int(os.environ.get("BILLING_DISABLED_DAYS", "90")))
BILLING_DATA_RETENTION_AFTER_CANCEL = timedelta(days=int(os.environ.get("BILLING_RETENTION_DAYS", "90")))
BILLING_PAYMENT_TERMS_DAYS = 30

# Invoice documents (issue 9). The seller block printed on every invoice; PDFs are cached per invoice version.
BILLING_SELLER = {
    "name": os.environ.get("BILLING_SELLER_NAME", "Billing Example B.V."),
    # The seller's address as fields, printed by billing_portal.addresses in the country's order and the
    # reader's language ("Netherlands" / "Nederland").
    "address_line1": os.environ.get("BILLING_SELLER_STREET", "Herengracht 100"),
    "postal_code": os.environ.get("BILLING_SELLER_POSTAL_CODE", "1015 BS"),
    "city": os.environ.get("BILLING_SELLER_CITY", "Amsterdam"),
    "region": os.environ.get("BILLING_SELLER_REGION", ""),
    "country": os.environ.get("BILLING_SELLER_COUNTRY", "NL"),
    "vat_id": os.environ.get("BILLING_SELLER_VAT_ID", "NL859123456B01"),
    "email": os.environ.get("BILLING_SELLER_EMAIL", "billing@billing.example"),
}
INVOICE_PDF_CACHE_DIR = Path(os.environ.get("INVOICE_PDF_CACHE_DIR", VAR_DIR / "invoice-pdfs"))

# Dunning (issue 4). Defaults for the RetryPolicy rows, which admins edit in the Django admin.
# Retry days count from the invoice's first failed charge.
DUNNING_SOFT_RETRY_DAYS = [1, 3, 5, 7]
# Declines with a code we do not know.
DUNNING_UNKNOWN_RETRY_DAYS = [1, 3, 5, 7]
DUNNING_FINAL_WARNING_DAYS = 3  # days before disabling
# Which policy schedules retries (docs/RECOVERY.md): "smart" (per decline code + timing), "per_code",
# or "fixed" (the days of RetryPolicy per decline category). Every attempt records the one that chose it.
DUNNING_RETRY_POLICY = os.environ.get("DUNNING_RETRY_POLICY", "smart")
# Timing policy: no retries in these local hours of the card's country (declines are likelier at
# night: Recurly), retries at this local hour, and the days salaries land per country (-1 = last
# day of the month; "" = every other country). Paydays are an assumption (RECOVERY-DATA.md).
DUNNING_QUIET_HOURS = (0, 5)
DUNNING_RETRY_HOUR = 10
DUNNING_PAYDAYS: dict[str, tuple[int, ...]] = {"": (-1, 1), "US": (1, 15)}
DUNNING_COUNTRY_TIMEZONES = {
    "NL": "Europe/Amsterdam",
    "BE": "Europe/Brussels",
    "DE": "Europe/Berlin",
    "FR": "Europe/Paris",
    "ES": "Europe/Madrid",
    "IT": "Europe/Rome",
    "IE": "Europe/Dublin",
    "GB": "Europe/London",
    "PT": "Europe/Lisbon",
    "PL": "Europe/Warsaw",
    "SE": "Europe/Stockholm",
    "US": "America/New_York",
    "CA": "America/Toronto",
    "AU": "Australia/Sydney",
}
# The support dashboard's figures are computed by this task, not per page view.
CELERY_BEAT_SCHEDULE["support-dashboard-snapshot"] = {
    "task": "support.tasks.dashboard_snapshot",
    "schedule": 300.0,
    "options": {"expires": 290},
}
# Reconciliation of unanswered charges backs off 15 s, 1 min, 3 min, 1 h, then daily
# (payments.services.RECONCILE_BACKOFF); after this many look-ups the timeline says support has it.
DUNNING_UNKNOWN_SUPPORT_AFTER = 5
DUNNING_SWEEP_BATCH = int(os.environ.get("DUNNING_SWEEP_BATCH", "500"))
# An account handed to a worker is not handed out again for this long; a worker that died is covered
# by the next sweep after it.
DUNNING_ENQUEUE_LEASE = timedelta(seconds=int(os.environ.get("DUNNING_ENQUEUE_LEASE_SECONDS", "300")))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# Invitations to join a billing account (accounts.services.invitation_create): the signed link
# stops working after this many days.
INVITATION_MAX_AGE_DAYS = int(os.environ.get("INVITATION_MAX_AGE_DAYS", "7"))
# Support requests customers open from the billing pages (support_requests/).
SUPPORT_REQUEST_MAX_LENGTH = 2000
