import pytest

from tests.factories import PASSWORD


@pytest.fixture
def login(client):
    """Log ``user`` in on the test client and return the client."""

    def _login(user):
        assert client.login(username=user.username, password=PASSWORD)
        return client

    return _login
