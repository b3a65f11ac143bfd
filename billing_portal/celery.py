import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")

app = Celery("billing_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _connections_like_a_request(**kwargs: object) -> None:
    """Before and after each task, what Django does before and after each request: close a database
    connection that is older than CONN_MAX_AGE, failed, or was left broken; keep a good one (the next
    use health-checks it). Celery's own fix-up only recycles it every CELERY_DB_REUSE_MAX tasks.
    Eager tasks (tests) run inside the caller's transaction and are left alone."""
    task = kwargs.get("task")
    request = getattr(task, "request", None)
    if getattr(request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
