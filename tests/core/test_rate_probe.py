"""Fill PROBEs (`probe_rates`): a path without a configured rate finds it at the start,
whatever the flows send (fake time, `RateNet`: no I/O).

Without them a path's estimate starts at 1 Mbit/s and grows only when the scheduler feeds
it beyond that, which earliest arrival does not while other paths take the traffic: a
BBR download over four links without rates ran at 29 % in the lab (docs/evaluation.md).
"""

from __future__ import annotations

import pytest

from braid.core.congestion.base import DeliveryTracker
from braid.core.session import SessionConfig
from braid.core.wire import FEATURE_FILL

from .ratenet import RateNet

LINKS = {
    0: (1_250_000.0, 0.005),
    1: (2_500_000.0, 0.010),
    2: (3_750_000.0, 0.020),
    3: (5_000_000.0, 0.040),
}
"""The lab's four links (10/20/30/40 Mbit/s, 5/10/20/40 ms), in bytes/s and one-way s."""


def _idle_net(config: SessionConfig | None = None, *, hints: bool = False) -> RateNet:
    net = RateNet(LINKS, config=config or SessionConfig(early_drop=0.0, nack=False), hints=hints)
    net.stop_source()
    return net


def _estimates(net: RateNet, side: str = "local") -> dict[int, float]:
    session = net.local if side == "local" else net.remote
    return {p.path_id: p.btl_bw for p in session.statistics().paths}


@pytest.mark.parametrize("side", ["local", "remote"])
def test_an_idle_session_finds_every_paths_rate_with_fill_probes(side: str) -> None:
    """No traffic at all, no rates configured: each portal fills its paths until its
    controller leaves startup, and the estimates land at the links' rates (in link bytes:
    the datagrams' UDP/IP/Ethernet headers, which RateNet's links do not count, make them
    3-5 % higher). Then the fill stops for good."""
    net = _idle_net()
    net.run_until(2.0)
    session = net.local if side == "local" else net.remote
    paths = session.statistics().paths
    for path in paths:
        rate = LINKS[path.path_id][0]
        assert path.congestion != "bbr startup", path
        assert 0.85 * rate <= path.btl_bw <= 1.15 * rate, (path.path_id, path.btl_bw, rate)
        assert path.fill_bytes > 0
    filled = {p.path_id: p.fill_bytes for p in paths}
    net.run_until(6.0)
    assert {p.path_id: p.fill_bytes for p in session.statistics().paths} == filled
    # A few round trips of each link's rate, not seconds of it.
    for path_id, sent in filled.items():
        assert sent < 1.0 * LINKS[path_id][0], (path_id, sent)


def test_without_fill_probes_an_idle_session_learns_nothing() -> None:
    """The same with `probe_rates = false`: the estimates stay near the 1 Mbit/s start (what
    the fill probes are for), and nothing is sent beyond keepalives."""
    net = _idle_net(SessionConfig(early_drop=0.0, nack=False, probe_rates=False))
    net.run_until(2.0)
    for path in net.local.statistics().paths:
        assert path.fill_bytes == 0
        assert path.btl_bw < 0.2 * LINKS[path.path_id][0], path


def test_paths_with_a_configured_rate_are_not_filled() -> None:
    net = _idle_net(hints=True)
    net.run_until(2.0)
    assert all(p.fill_bytes == 0 for p in net.local.statistics().paths)


def test_no_fill_probes_toward_a_peer_that_does_not_answer_them() -> None:
    """A peer whose FEATURES lack bit 4 (an earlier revision) would not answer fill PROBEs
    with feedback: they would sit in flight. None are sent to it."""
    net = _idle_net()
    net.remote._features &= ~FEATURE_FILL  # (as an earlier revision says)
    net.run_until(2.0)
    assert all(p.fill_bytes == 0 for p in net.local.statistics().paths)
    assert any(p.fill_bytes > 0 for p in net.remote.statistics().paths)  # (the local answers)


def test_a_window_limited_flow_after_the_start_gets_the_paths_it_could_not_find() -> None:
    """A BBR-like flow (`WindowSender`) that starts once the portals are up: with fill
    PROBEs it gets what it gets with the links' rates configured (this model's window,
    fitted to the shortest path's RTT, caps it near 7 of 12.5 MB/s either way); without,
    the paths it never fed stay near their 1 Mbit/s start and it gets much less."""
    goodput = {}
    for case in ("rates", "fill", "neither"):
        config = SessionConfig(early_drop=0.0, nack=False, probe_rates=case == "fill")
        net = _idle_net(config, hints=case == "rates")
        net.run_until(1.5)
        net.start_window_flow()
        net.run_until(6.5)
        goodput[case] = net.goodput(2.5, 6.5)
    assert goodput["fill"] >= 0.9 * goodput["rates"], goodput
    assert goodput["neither"] <= 0.7 * goodput["rates"], goodput


@pytest.mark.parametrize(
    ("hold_a", "queue_a", "backdated_b"),
    [(0.010, 0.0, 0.0), (0.0, 0.010, 0.0), (0.0, 0.0, 0.010)],
    ids=["held", "queued-back", "backdated"],
)
def test_a_late_feedback_does_not_make_the_next_look_like_a_burst(
    hold_a: float, queue_a: float, backdated_b: float
) -> None:
    """Datagrams sent at 2 MB/s into a 1 MB/s link (a startup), 1 ms each way. The
    feedback for the first 32 comes back 10 ms late: held by the receiver (its echo_hold
    says so), or queued on the way back (its one-way delay says so); the next, prompt,
    covers up to the 96th. Delivery times are taken where the peer received what each
    reports, so the sample is the link's 1 MB/s, not 64 kB over the 54 ms between the two
    feedbacks' arrivals (1.19 MB/s, what the sample was without). A stamp backdated behind
    the peer's queued DATA makes a feedback look queued when it was not (`backdated_b`):
    the interval is the longer of the two readings, so that does not shorten it either."""
    size = 1000

    def received(seq: int) -> float:
        return 0.002 + seq * 0.001  # (the link delivers one datagram a millisecond)

    def sample_rate(corrected: bool) -> float:
        tracker = DeliveryTracker(0.0)
        back_a = received(31) + hold_a + 0.001 + queue_a
        fed = False
        for seq in range(96):
            sent = seq * 0.0005
            if not fed and sent >= back_a:
                hold, queue = (hold_a, queue_a) if corrected else (0.0, 0.0)
                tracker.on_feedback(31, 0, None, None, back_a, queue, hold)
                fed = True
            tracker.on_sent(seq, size, sent, False)
        queue_b = backdated_b if corrected else 0.0  # (measured, though nothing waited)
        sample = tracker.on_feedback(95, 0, None, None, received(95) + 0.001, queue_b, 0.0)
        assert sample.delivery_rate is not None
        return sample.delivery_rate

    assert sample_rate(True) == pytest.approx(1_000_000, rel=0.02)
    if hold_a or queue_a:
        assert sample_rate(False) > 1.15 * 1_000_000  # (what the correction removes)
