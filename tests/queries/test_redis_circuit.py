"""The circuit shared by a process's Redis users: closed while Redis answers, open for
a cool-down after an outage, then one probe per cool-down until Redis answers again."""

from __future__ import annotations

import redis

from queries.redis_circuit import RedisCircuit


class HandClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_opens_the_circuit_for_a_cool_down_then_one_probe_goes_through() -> None:
    clock = HandClock()
    circuit = RedisCircuit(5.0, clock=clock)
    assert circuit.allows()
    circuit.failed(redis.TimeoutError("Timeout reading from socket"))
    assert circuit.is_open
    assert not circuit.allows()
    clock.now += 4.9
    assert not circuit.allows()

    clock.now += 0.2
    assert circuit.allows()  # the probe
    assert not circuit.allows()  # nobody else while it is out
    circuit.failed(redis.ConnectionError("Connection refused"))
    clock.now += 4.9
    assert not circuit.allows()
    clock.now += 0.2
    assert circuit.allows()
    circuit.succeeded()
    assert not circuit.is_open
    assert all(circuit.allows() for _ in range(3))


def test_a_probe_that_never_reports_is_followed_by_another() -> None:
    clock = HandClock()
    circuit = RedisCircuit(5.0, clock=clock)
    circuit.failed(redis.ConnectionError("Connection reset"))
    clock.now += 5.0
    assert circuit.allows()
    clock.now += 5.0
    assert circuit.allows()


def test_an_error_redis_answered_does_not_open_the_circuit() -> None:
    circuit = RedisCircuit(5.0)
    circuit.failed(redis.ResponseError("OOM command not allowed"))
    assert not circuit.is_open
    assert circuit.allows()
