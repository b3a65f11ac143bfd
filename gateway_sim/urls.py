app_name = "gateway_sim"

urlpatterns: list = []
