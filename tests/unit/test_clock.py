"""The clock probe against this machine's own clock (the local transport runs the real
``date``): its offset is zero within the error it claims; a node whose ``date`` fails or
lies is read as such."""

from __future__ import annotations

from pytest_hpcvalidate.cluster import Node
from pytest_hpcvalidate.probes import clock
from pytest_hpcvalidate.transport.local import LocalTransport


def here(name: str = "h") -> Node:
    return Node(name, "compute", "127.0.0.1", LocalTransport(name))


def test_this_machine_agrees_with_itself_within_the_claimed_error():
    r = clock.read(here(), samples=5)
    assert r.offset_s is not None and not r.error
    assert abs(r.offset_s) <= r.uncertainty_s + 0.005  # date's own start-up is inside the round trip
    skew, bound = r.skew_to(clock.read(here("k")))
    assert abs(skew) <= bound + 0.01


def test_a_failing_or_garbled_date_is_no_reading():
    class Lying(LocalTransport):
        def __init__(self, command):
            super().__init__("x")
            self._cmd = command

        def run(self, command, timeout=None):
            return super().run(self._cmd, timeout=timeout)

    broken = clock.read(Node("x", "compute", "127.0.0.1", Lying("exit 3")), samples=2)
    assert broken.offset_s is None and "exit" in broken.error
    garbled = clock.read(Node("x", "compute", "127.0.0.1", Lying("echo soon")), samples=2)
    assert garbled.offset_s is None and "'soon'" in garbled.error
    ahead = clock.read(Node("x", "compute", "127.0.0.1", Lying("echo $(( $(date +%s) + 90 )).0")), samples=2)
    assert 88 < ahead.offset_s < 92


def test_parse_epoch():
    assert clock.parse_epoch("1796298857.672283788\n") == 1796298857.672283788
    assert clock.parse_epoch("") is None and clock.parse_epoch("x") is None
