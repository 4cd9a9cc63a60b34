"""issue 6: path liveness (fast failover under traffic, idle dead interval)."""

from __future__ import annotations

from braid.core.session import PathDown, SessionConfig, TunnelSession
from braid.core.wire import DataFrame, FrameType, decode_datagram

from .pairnet import udp_packet
from .test_session import SID, connected, events, exchange


def _run_cut(config: SessionConfig | None) -> float:
    """Path 1 goes silent at t=0 while DATA flows; returns when the local sees it down."""
    local, remote = connected((0, 1), config)
    now = 0.0
    index = 0
    while now < 2.0:
        now = round(now + 0.005, 6)
        for _ in range(4):
            local.send_packet(udp_packet(index, index % 7), now=now)
            index += 1
        local.handle_timer(now=now)
        for pid, data in local.datagrams_to_send(now=now):
            if pid == 0:
                remote.receive_datagram(data, now=now)
        remote.handle_timer(now=now)
        for _, data in remote.datagrams_to_send(now=now):
            local.receive_datagram(data, now=now)
        remote.packets_to_deliver()
        for event in events(local):
            if isinstance(event, PathDown) and event.path_id == 1:
                return now
    raise AssertionError("path 1 never declared down")


def test_dead_within_dead_interval_under_traffic_by_default() -> None:
    assert _run_cut(SessionConfig(scheduler="round-robin")) <= 1.0 + 0.01


def test_silence_timeout_detects_a_cut_path_fast_under_traffic() -> None:
    detected = _run_cut(SessionConfig(silence_timeout_min=0.25, scheduler="round-robin"))
    assert detected <= 0.35
    # Idle paths are not affected: with no DATA nothing is awaited. (Without fill PROBEs:
    # the remote portal's, on path 1 whose other direction is cut, would keep the local
    # portal receiving on it until their window is full: down at 1.75 s.)
    local, remote = connected(
        (0, 1),
        SessionConfig(silence_timeout_min=0.25, scheduler="round-robin", probe_rates=False),
    )
    now = 0.0
    down: list[float] = []
    while now < 3.0:
        now = local.get_timer() or now + 0.25
        local.handle_timer(now=now)
        for pid, data in local.datagrams_to_send(now=now):
            if pid == 0:
                remote.receive_datagram(data, now=now)
        exchange(remote, local, now)
        down += [now for e in events(local) if isinstance(e, PathDown)]
    assert down == [1.0]  # the idle path 1 at dead_interval, path 0 never


def test_session_config_rejects_bad_silence_timeout() -> None:
    import pytest

    with pytest.raises(ValueError, match="silence_timeout_min"):
        SessionConfig(silence_timeout_min=0.0)


def test_path_statistics_report_state() -> None:
    local, _ = connected((0, 1))
    assert [p.state for p in local.statistics().paths] == ["up", "up"]
    assert TunnelSession(role="local", session_id=1, now=0.0).statistics().paths == ()


def test_a_lossy_path_is_degraded_and_recovers() -> None:
    from braid.core.session import SessionConfig

    from .pairnet import LOCAL, UP, LinkProfile, PairNet

    net = PairNet(
        7,
        {0: LinkProfile(delay=0.010), 1: (LinkProfile(delay=0.010, loss=0.5), LinkProfile())},
        config=SessionConfig(scheduler="round-robin"),  # would use both paths equally
        rates={0: 8_000_000, 1: 8_000_000},
    )
    net.schedule_flows(LOCAL, start=0.2, stop=6.0, interval=0.002, flows=4)
    net.run_until(3.0)
    states = {p.path_id: p.state for p in net.local.statistics().paths}
    assert states == {0: "up", 1: "degraded"}
    carried = net.data_sent_on(LOCAL, 1, since=2.5)
    assert carried == 0  # no DATA on the degraded path while the other can carry it
    net.profiles[(UP, 1)] = LinkProfile(delay=0.010)  # the loss stops
    net.run_until(6.0)
    assert {p.path_id: p.state for p in net.local.statistics().paths} == {0: "up", 1: "up"}
    assert net.data_sent_on(LOCAL, 1, since=5.0) > 0


def test_a_lossy_path_of_the_remote_portal_recovers() -> None:
    """The same for a download: the remote portal's degraded path carries no DATA and
    (unlike the local portal) sends no keepalives asking for a reply, so its health can
    only be measured again if its pass PROBEs ask for one."""
    from braid.core.session import SessionConfig

    from .pairnet import DOWN, REMOTE, LinkProfile, PairNet

    net = PairNet(
        7,
        {0: LinkProfile(delay=0.010), 1: (LinkProfile(), LinkProfile(delay=0.010, loss=0.5))},
        config=SessionConfig(scheduler="round-robin"),  # would use both paths equally
        rates={0: 8_000_000, 1: 8_000_000},
    )
    net.schedule_flows(REMOTE, start=0.2, stop=12.0, interval=0.002, flows=4)
    net.run_until(3.0)
    remote = net.session(REMOTE)
    assert {p.path_id: p.state for p in remote.statistics().paths} == {0: "up", 1: "degraded"}
    net.profiles[(DOWN, 1)] = LinkProfile(delay=0.010)  # the loss stops
    net.run_until(9.0)
    assert {p.path_id: p.state for p in remote.statistics().paths} == {0: "up", 1: "up"}
    assert net.data_sent_on(REMOTE, 1, since=8.0) > 0


def test_data_sent_before_a_path_came_up_does_not_time_it_out_when_it_does() -> None:
    """The session's first packets may leave while no path is up yet (the peer is not
    there): feedback is then due on a path that is not up. When the path comes up later
    than the silence timeout, the answer is due from then on, not from the send. (Before,
    the path went down as it came up: in the lab the 40 ms link in half the runs, 10 ms
    after it came up; the session took that for a cut link's return and ran 3 s with
    early drop off and a 64-packet TUN queue, where the first flow's slow start lost
    packets and one CUBIC flow over four links got 48-57 Mbit/s instead of 67-77.)"""
    config = SessionConfig(silence_timeout_min=0.25)
    local = TunnelSession(config, role="local", session_id=SID, now=0.0)
    for path_id in (0, 1):
        local.add_path(path_id, now=0.0)
    remote = TunnelSession(config, role="remote", session_id=SID, now=0.0)
    for index in range(8):
        local.send_packet(udp_packet(index, index), now=0.0)
    early = local.datagrams_to_send(now=0.0)
    assert {pid for pid, _ in early} == {0, 1}  # DATA (and hellos) on both, none up
    # The peer shows up 0.4 s later and everything sent so far arrives; its answers are
    # lost (in the lab: sealed under keys the local portal did not have yet). A moment
    # later its DATA on the way back brings the paths up.
    for _, data in early:
        remote.receive_datagram(data, now=0.4)
    remote.datagrams_to_send(now=0.4)
    for index in range(16):
        remote.send_packet(udp_packet(index, index), now=0.45)
    back = remote.datagrams_to_send(now=0.45)
    assert {pid for pid, data in back if data[1] == FrameType.DATA} == {0, 1}
    for _, data in back:
        if type(decode_datagram(data)) is DataFrame:
            local.receive_datagram(data, now=0.46)
    assert [p.state for p in local.statistics().paths] == ["up", "up"]
    now = 0.46
    while now < 1.0:
        local.handle_timer(now=now)
        exchange(local, remote, now)
        remote.handle_timer(now=now)
        exchange(remote, local, now)
        assert not [e for e in events(local) if isinstance(e, PathDown)], now
        now = round(now + 0.01, 6)
    assert [p.state for p in local.statistics().paths] == ["up", "up"]
    assert local.statistics().early_drop_active
