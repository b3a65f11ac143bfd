from django.urls import path

from . import views

app_name = "gateway_sim"

urlpatterns = [
    path("3ds/<key:reference>/", views.challenge, name="challenge"),
]
