from django.urls import path

from . import views

app_name = "dunning"

urlpatterns = [
    path("products/<id:subscription_id>/timeline/", views.subscription_timeline, name="timeline"),
]
