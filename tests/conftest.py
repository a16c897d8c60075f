from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.brokers import Mosquitto


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A fresh mosquitto on a free loopback port, stopped after the test."""
    with Mosquitto() as broker:
        yield broker
