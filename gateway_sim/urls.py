from django.urls import path

from . import views

app_name = "gateway_sim"

urlpatterns: list = []
