from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo data (`manage.py seed_demo`, `seed_large`): the top layer, it may use every app."""

    name = "demo"
    verbose_name = "Demo data"
