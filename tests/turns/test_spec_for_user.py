"""Whom a turn works for (``for_user``): set from the message, kept in the ledger,
handed to the backend."""

from __future__ import annotations

import json

from tests.gateway.helpers import ALICE, CODER, CODER_USER, event

from salon.gateway.messages import message_turn
from salon.turns.spec import TurnSpec, turn_request


def test_a_persons_message_is_worked_on_for_that_person() -> None:
    spec = message_turn(event("!room:localhost", ALICE, "notes"), CODER)
    assert spec.for_user == ALICE
    assert turn_request(spec).for_user == ALICE


def test_an_agents_message_is_for_nobody_in_particular() -> None:
    spec = message_turn(event("!room:localhost", CODER_USER, "notes"), CODER, by_agent=True)
    assert spec.for_user is None
    assert turn_request(spec).for_user is None


def test_for_user_is_kept_in_the_ledger_for_a_rerun() -> None:
    spec = message_turn(event("!room:localhost", ALICE, "notes"), CODER)
    again = TurnSpec.from_json(spec.to_json())
    assert again == spec and again.for_user == ALICE
    # A spec stored before the field existed reads as for nobody.
    old = json.loads(spec.to_json())
    del old["for_user"]
    assert TurnSpec.from_json(json.dumps(old)).for_user is None
