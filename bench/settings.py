"""Settings for the load test only (bench/load.py): production settings plus two floor views.

Never used to serve customers: the floor views exist in bench/urls.py and nowhere else.
"""

from billing_portal.settings import *  # noqa: F403
from billing_portal.settings import BASE_DIR, TEMPLATES

ROOT_URLCONF = "bench.urls"
TEMPLATES[0]["DIRS"] = [*TEMPLATES[0]["DIRS"], BASE_DIR / "bench" / "templates"]
