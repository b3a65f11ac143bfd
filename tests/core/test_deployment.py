"""The deployment files say what they do: checked by running and parsing them, since no Docker engine runs here."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    drop = {"DEBUG", "DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    environment = {k: v for k, v in os.environ.items() if k not in drop}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deploy_check():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="x" * 20 + "a-long-random-secret-value-for-tests-0123456789",
        ALLOWED_HOSTS="billing.example",
        EMAIL_HOST="smtp.billing.example",
        **PRODUCTION_GATEWAY,
    )
    assert result.returncode == 0, result.stdout + result.stderr


PRODUCTION_GATEWAY = {
    "PAYMENT_GATEWAY": "stripe",
    "STRIPE_SECRET_KEY": "sk_live_x",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
}
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "a-long-random-secret-value-for-tests-0123456789-abcdefghij",
    "ALLOWED_HOSTS": "billing.example",
    "EMAIL_HOST": "smtp.billing.example",
}


def test_deploy_check_warns_that_the_simulated_gateway_moves_no_money():
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION, PAYMENT_GATEWAY="simulated"
    )
    assert result.returncode != 0
    assert "payments.W001" in result.stdout + result.stderr


def test_deploy_check_requires_the_stripe_keys():
    result = _manage(
        "check", "--deploy", **PRODUCTION, PAYMENT_GATEWAY="stripe", STRIPE_SECRET_KEY="sk_live_x"
    )
    assert result.returncode != 0
    assert "payments.E001" in result.stdout + result.stderr
    assert "STRIPE_WEBHOOK_SECRET" in result.stdout + result.stderr


def test_deploy_check_rejects_the_development_secret_key():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0", SECRET_KEY="")
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


def test_wsgi_refuses_the_development_key_without_debug():
    environment = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    environment.update({"DEBUG": "0", "DJANGO_SETTINGS_MODULE": "billing_portal.settings"})
    result = subprocess.run(
        [sys.executable, "-c", "import billing_portal.wsgi"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


def test_compose_runs_postgres_redis_web_worker_and_beat():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "beat"}
    assert "gunicorn billing_portal.wsgi:application" in " ".join(services["web"]["command"])
    assert services["worker"]["command"][:4] == ["celery", "-A", "billing_portal", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "billing_portal", "beat"]
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["REDIS_URL"].startswith("redis://redis:6379")


def test_the_compose_commands_start_against_the_real_code():
    """gunicorn and celery as compose names them: both must at least load the project."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["DEBUG"] = "1"
    bin_dir = Path(sys.executable).parent
    celery = subprocess.run(
        [str(bin_dir / "celery"), "-A", "billing_portal", "inspect", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert celery.returncode == 0, celery.stderr
    gunicorn = subprocess.run(
        [
            str(bin_dir / "gunicorn"),
            "--check-config",
            "--no-control-socket",
            "billing_portal.wsgi:application",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gunicorn.returncode == 0, gunicorn.stderr
