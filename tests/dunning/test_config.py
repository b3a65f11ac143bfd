"""The sweep is scheduled by beat every minute, and tasks survive a dead worker."""

from __future__ import annotations

from django.conf import settings

from billing_portal.celery import app
from dunning import tasks


def test_beat_starts_the_sweep_every_minute_and_drops_stale_sweeps():
    entry = settings.CELERY_BEAT_SCHEDULE["dunning-sweep"]
    assert entry["task"] == tasks.dunning_sweep.name
    assert entry["schedule"] == 60.0
    assert entry["options"]["expires"] < 60


def test_tasks_ack_late_and_are_redelivered_when_the_worker_dies():
    for task in (tasks.dunning_sweep, tasks.dunning_account):
        registered = app.tasks[task.name]
        assert registered.acks_late is True
        assert registered.reject_on_worker_lost is True


def test_no_dunning_code_waits_with_an_eta_or_countdown():
    import inspect

    import dunning.services
    import dunning.tasks

    for module in (dunning.services, dunning.tasks):
        source = inspect.getsource(module)
        assert "countdown=" not in source
        assert "eta=" not in source
