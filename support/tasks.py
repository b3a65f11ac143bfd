"""Thin tasks of the support console."""

from celery import shared_task

from .services import dashboard_snapshot_refresh


@shared_task(name="support.tasks.dashboard_snapshot", ignore_result=True)
def dashboard_snapshot() -> int:
    """Recompute the recovery dashboard's figures (beat: CELERY_BEAT_SCHEDULE in settings)."""
    return dashboard_snapshot_refresh().duration_ms
