import pytest

from tests.payments.scenario import build_contoso


@pytest.fixture
def contoso(db):
    return build_contoso()
