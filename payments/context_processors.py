from django.http import HttpRequest

from .gateways.base import CardCollection, get_gateway


def gateway(request: HttpRequest) -> dict[str, object]:
    """Whether pages load the gateway's card script: only when cards are collected in its Elements."""
    return {"card_elements": get_gateway().card_collection == CardCollection.ELEMENTS}
