"""``manage.py broker_check`` against the machine's Mosquitto: everything the link needs."""

import json

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.services


def test_mosquitto_has_everything(capsys):
    call_command("broker_check", "--json")
    assert json.loads(capsys.readouterr().out) == {
        "qos1": True,
        "persistent_session": True,
        "retained": True,
        "last_will": True,
        "shared_subscription": True,
        "retained_wildcard": True,
    }


def test_a_broker_that_does_not_answer_fails_the_check(capsys):
    from django.core.management.base import CommandError

    from tests.gateway.portal_double import free_port

    with pytest.raises(CommandError, match="lacks what Fleetgate needs: qos1"):
        call_command("broker_check", "--url", f"mqtt://127.0.0.1:{free_port()}")
