from django.apps import AppConfig


class GatewaySimConfig(AppConfig):
    name = "gateway_sim"
