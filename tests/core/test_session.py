"""TunnelSession driven by hand with fake time: exact datagrams, timers and events."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from braid.core.session import (
    Event,
    PathDown,
    PathUp,
    SessionClosed,
    SessionConfig,
    TunnelSession,
)
from braid.core.wire import (
    DROP_REASONS,
    FEATURE_COMPACT,
    FEATURE_FILL,
    FEATURE_HOLD,
    FEATURE_PACK,
    FEATURE_TRIM,
    ControlFrame,
    ControlKind,
    DataFrame,
    FeedbackFrame,
    ProbeFrame,
    decode_datagram,
    encode,
    encode_data,
    is_hello,
)

from .pairnet import parse_packet, udp_packet

SID = 0xABCD0001


def frames(session: TunnelSession, now: float) -> list[tuple[int, object]]:
    return [(pid, decode_datagram(data)) for pid, data in session.datagrams_to_send(now=now)]


def events(session: TunnelSession) -> list[Event]:
    out: list[Event] = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def exchange(a: TunnelSession, b: TunnelSession, now: float) -> int:
    """Deliver everything `a` has queued to `b` at once; returns how many datagrams."""
    out = a.datagrams_to_send(now=now)
    for _, data in out:
        b.receive_datagram(data, now=now)
    return len(out)


HAND = SessionConfig(probe_rates=False)
"""The default config without fill PROBEs: they look for a link's capacity, which these
hand-driven exchanges do not have (tests/core/test_rate_probe.py covers them)."""


def connected(
    paths: tuple[int, ...] = (0, 1), config: SessionConfig | None = None
) -> tuple[TunnelSession, TunnelSession]:
    config = config or HAND
    local = TunnelSession(config, role="local", session_id=SID, now=0.0)
    for path_id in paths:
        local.add_path(path_id, now=0.0)
    remote = TunnelSession(config, role="remote", session_id=SID, now=0.0)
    exchange(local, remote, 0.0)
    exchange(remote, local, 0.0)
    events(local)
    events(remote)
    return local, remote


QUIET = SessionConfig(equalize="off", compress_headers=False, probe_rates=False)
"""For the tests that count every datagram on a path: a portal with `equalize = "off"`,
`compress_headers = false` and `probe_rates = false` sends no FEATURES
(`test_features_go_three_times_at_path_up_and_ask_nothing`)."""


def test_features_go_three_times_at_path_up_and_ask_nothing() -> None:
    """Each portal with `equalize = "bulk"` and `compress_headers` (the defaults) sends
    FEATURES (bit 0 *hold*, bits 1-3 *compact*, *trim*, *pack*; bit 4 *fill* with
    `probe_rates`, also a default) on a path as it comes up, 3 times `hello_interval` apart. It asks for no answer: the idle
    path's keepalive PROBEs go at the same times as between portals that send none."""
    runs = {}
    for config in (HAND, QUIET):
        local, remote = connected((0,), config)
        features: dict[str, list[float]] = {"local": [], "remote": []}
        keepalives = []
        now = 0.0
        while now < 1.2:
            for name, a, b in (("local", local, remote), ("remote", remote, local)):
                a.handle_timer(now=now)
                for _, data in a.datagrams_to_send(now=now):
                    frame = decode_datagram(data)
                    if isinstance(frame, ControlFrame) and frame.kind == ControlKind.FEATURES:
                        features[name].append(now)
                    elif name == "local" and isinstance(frame, ProbeFrame):
                        keepalives.append(now)
                    b.receive_datagram(data, now=now)
            now = round(now + 0.01, 6)
        runs[config.equalize] = (features, keepalives, local, remote)
    features, keepalives, local, remote = runs["bulk"]
    assert features == {"local": [0.0, 0.25, 0.5], "remote": [0.0, 0.25, 0.5]}
    assert (
        local.statistics().peer_features
        == FEATURE_HOLD | FEATURE_COMPACT | FEATURE_TRIM | FEATURE_PACK
    )
    assert (
        remote.statistics().peer_features
        == FEATURE_HOLD | FEATURE_COMPACT | FEATURE_TRIM | FEATURE_PACK
    )
    quiet_features, quiet_keepalives, quiet_local, _ = runs["off"]
    assert quiet_features == {"local": [], "remote": []}
    assert quiet_local.statistics().peer_features is None
    assert len(keepalives) >= 4 and keepalives == quiet_keepalives
    # With `probe_rates` (the default) a portal also says bit 4 *fill*: it answers fill
    # PROBEs (tests/core/test_rate_probe.py).
    local, remote = connected((0,), SessionConfig())
    for now in (0.0, 0.25):
        for a, b in ((local, remote), (remote, local)):
            a.handle_timer(now=now)
            exchange(a, b, now)
    assert (
        local.statistics().peer_features
        == remote.statistics().peer_features
        == (FEATURE_HOLD | FEATURE_COMPACT | FEATURE_TRIM | FEATURE_PACK | FEATURE_FILL)
    )


def test_local_sends_hello_until_feedback() -> None:
    local = TunnelSession(QUIET, role="local", session_id=SID, now=10.0)
    local.add_path(3, now=10.0)
    out = local.datagrams_to_send(now=10.0)
    assert [(pid, is_hello(data)) for pid, data in out] == [(3, True)]
    assert local.get_timer() == 10.25
    local.handle_timer(now=10.25)
    out = local.datagrams_to_send(now=10.25)
    assert [(pid, is_hello(data)) for pid, data in out] == [(3, True)]
    remote = TunnelSession(QUIET, role="remote", session_id=SID, now=10.3)
    assert remote.receive_datagram(out[0][1], now=10.3) == 3
    assert events(remote) == [PathUp(3)]
    reply = remote.datagrams_to_send(now=10.3)
    assert len(reply) == 1 and isinstance(decode_datagram(reply[0][1]), FeedbackFrame)
    assert local.receive_datagram(reply[0][1], now=10.35) == 3
    assert events(local) == [PathUp(3)]
    path = local.statistics().paths[0]
    assert path.up and path.srtt == pytest.approx(0.1)  # HELLO sent at 10.25, answered 10.35
    # No more HELLO: the next thing on the idle path is a keepalive PROBE.
    assert local.get_timer() == pytest.approx(10.5)
    local.handle_timer(now=10.5)
    [(pid, probe)] = frames(local, 10.5)
    assert pid == 3 and isinstance(probe, ProbeFrame) and probe.reply_requested


def test_remote_creates_paths_and_checks_ids() -> None:
    remote = TunnelSession(HAND, role="remote", session_id=SID, now=0.0)
    probe = encode(ProbeFrame(7, SID, 0, 0, reply_requested=False))
    assert remote.receive_datagram(probe, now=0.0) == 7  # any valid datagram creates a path
    assert remote.path_ids() == (7,)
    assert events(remote) == [PathUp(7)]
    assert frames(remote, 0.0) == []  # no reply requested
    assert remote.receive_datagram(encode(ProbeFrame(7, SID + 1, 1, 0, False)), now=0.0) is None
    assert remote.receive_datagram(encode(ProbeFrame(255, SID, 0, 0, False)), now=0.0) is None
    drops = remote.statistics().drops
    assert (drops["unknown_session"], drops["unknown_path"]) == (1, 1)
    local = TunnelSession(HAND, role="local", session_id=SID, now=0.0)
    assert local.receive_datagram(probe, now=0.0) is None  # the local portal knows its paths
    assert local.statistics().drops["unknown_path"] == 1


def test_feedback_every_n_datagrams_and_every_interval() -> None:
    config = SessionConfig(
        feedback_every=4,
        feedback_interval=0.02,
        equalize="off",
        compress_headers=False,
        probe_rates=False,
    )
    local, remote = connected((0,), config)
    for index in range(4):
        assert local.send_packet(udp_packet(1, index), now=0.1)
    exchange(local, remote, 0.1)
    [(_, feedback)] = frames(remote, 0.1)  # the 4th datagram triggered it at once
    assert isinstance(feedback, FeedbackFrame)
    entry = feedback.entries[0]
    assert (entry.path_id, entry.received, entry.echo_hold_us) == (0, 5, 0)  # HELLO + 4 DATA
    local.send_packet(udp_packet(1, 4), now=0.11)
    exchange(local, remote, 0.11)
    assert frames(remote, 0.11) == []
    # The timer may fire early for a deadline that went away (the feedback due at 0.12
    # was sent at once); it never fires late.
    assert remote.get_timer() == pytest.approx(0.12)
    remote.handle_timer(now=0.12)
    assert frames(remote, 0.12) == []
    assert remote.get_timer() == pytest.approx(0.13)
    remote.handle_timer(now=0.13)
    [(_, feedback)] = frames(remote, 0.13)
    assert isinstance(feedback, FeedbackFrame)
    assert feedback.entries[0].received == 6
    assert feedback.entries[0].echo_hold_us == 20_000
    local.receive_datagram(encode(feedback), now=0.15)
    path = local.statistics().paths[0]
    assert (path.delivered, path.lost) == (6, 0)
    assert path.latest_rtt == pytest.approx(0.02)  # 40 ms since sent, 20 ms held


def test_probe_with_reply_answered_at_once() -> None:
    _local, remote = connected((0,))
    remote.receive_datagram(encode(ProbeFrame(0, SID, 1, 0, reply_requested=True)), now=0.5)
    [(pid, feedback)] = frames(remote, 0.5)
    assert pid == 0 and isinstance(feedback, FeedbackFrame)
    assert feedback.entries[0].highest_seq == 1


def test_keepalive_and_dead_interval_exact() -> None:
    local, remote = connected((0, 1))
    # From t=0 nothing arrives on path 1 any more; path 0 stays healthy.
    now = 0.0
    down_at = None
    while now < 2.0:
        now = local.get_timer() or 0.0
        local.handle_timer(now=now)
        for pid, data in local.datagrams_to_send(now=now):
            if pid == 0:
                remote.receive_datagram(data, now=now)
                exchange(remote, local, now)
        for event in events(local):
            if isinstance(event, PathDown):
                assert event == PathDown(1, "timeout")
                down_at = now
    assert down_at == 1.0  # last receive at t=0 + dead_interval
    stats = local.statistics()
    assert [p.up for p in stats.paths] == [True, False]
    # Path 1 is down: data goes to path 0 only, and path 1 gets HELLOs to revive it.
    for index in range(10):
        local.send_packet(udp_packet(index, 0), now=now)
    assert {pid for pid, _ in local.datagrams_to_send(now=now)} == {0}
    local.handle_timer(now=now + 0.25)
    sent = frames(local, now + 0.25)
    assert [(pid, frame.kind) for pid, frame in sent if isinstance(frame, ControlFrame)] == [
        (1, ControlKind.HELLO)
    ]
    # Anything valid on path 1 brings it back.
    remote_probe = encode(ProbeFrame(1, SID, 1000, 0, reply_requested=False))
    assert local.receive_datagram(remote_probe, now=now + 0.3) == 1
    assert events(local) == [PathUp(1)]


def test_keepalive_probes_only_on_idle_paths() -> None:
    local = TunnelSession(QUIET, role="local", session_id=SID, now=0.0)
    local.add_path(0, now=0.0)
    local.add_path(1, metric=5, now=0.0)  # a backup: up but idle
    remote = TunnelSession(QUIET, role="remote", session_id=SID, now=0.0)
    exchange(local, remote, 0.0)
    exchange(remote, local, 0.0)
    probes: list[tuple[float, int]] = []
    passes: list[tuple[float, int]] = []
    mtu_probes: list[tuple[float, int]] = []
    now = 0.0
    for step in range(1, 101):  # 1 s of data every 10 ms, all on path 0
        now = step / 100
        if (timer := local.get_timer()) is not None and timer <= now:
            local.handle_timer(now=now)
        local.send_packet(udp_packet(0, step), now=now)
        for pid, data in local.datagrams_to_send(now=now):
            frame = decode_datagram(data)
            if isinstance(frame, ProbeFrame) and frame.padding:
                mtu_probes.append((now, pid))
            elif isinstance(frame, ProbeFrame):
                if frame.reply_requested:
                    probes.append((now, pid))
                else:
                    passes.append((now, pid))
            remote.receive_datagram(data, now=now)
        remote.handle_timer(now=now)
        exchange(remote, local, now)
    # The first DATA had both paths' MTU probed, the idle backup's too (issue 7) ...
    assert sorted(pid for _, pid in mtu_probes) == [0, 1]
    # Keepalives (asking for a reply) every keepalive_interval on the idle path only ...
    assert [pid for _, pid in probes] == [1] * len(probes) and len(probes) >= 3
    assert all(0.25 <= b - a <= 0.27 for (a, _), (b, _) in itertools.pairwise(probes))
    # ... and in between, pass probes every pass_interval (gap proofs at the egress).
    assert all(pid == 1 for _, pid in passes) and 30 <= len(passes) <= 50
    assert [p.up for p in local.statistics().paths] == [True, True]


def test_close_both_ways() -> None:
    local, remote = connected((0, 1))
    local.close(now=1.0)
    assert events(local) == [SessionClosed("local")]
    sent = frames(local, 1.0)
    assert [(pid, f.kind) for pid, f in sent if isinstance(f, ControlFrame)] == [
        (0, ControlKind.CLOSE),
        (1, ControlKind.CLOSE),
    ]
    assert local.get_timer() is None
    assert not local.send_packet(udp_packet(0, 0), now=1.0)
    assert local.statistics().send_rejected == 1
    remote.receive_datagram(encode(sent[0][1]), now=1.01)  # type: ignore[arg-type]
    assert events(remote) == [SessionClosed("peer")]
    assert remote.closed and remote.get_timer() is None
    assert remote.receive_datagram(encode(sent[1][1]), now=1.02) is None  # type: ignore[arg-type]
    assert remote.statistics().drops["unknown_session"] == 1


def test_remove_path_tells_the_peer() -> None:
    local, remote = connected((0, 1, 2))
    local.remove_path(1, now=1.0)
    assert events(local) == [PathDown(1, "removed")]
    sent = frames(local, 1.0)
    assert [(pid, f.kind, f.value) for pid, f in sent if isinstance(f, ControlFrame)] == [
        (0, ControlKind.PATH_DOWN, b"\x01"),
        (2, ControlKind.PATH_DOWN, b"\x01"),
    ]
    assert local.path_ids() == (0, 2)
    remote.receive_datagram(encode(sent[0][1]), now=1.01)  # type: ignore[arg-type]
    assert events(remote) == [PathDown(1, "peer")]
    assert remote.path_ids() == (0, 2)
    with pytest.raises(ValueError, match="no path 1"):
        local.remove_path(1, now=1.0)


def test_send_refusals_are_counted() -> None:
    local = TunnelSession(HAND, role="local", session_id=SID, now=0.0)
    assert not local.send_packet(udp_packet(0, 0), now=0.0)
    assert local.statistics().send_no_path == 1
    local.add_path(0, now=0.0)
    assert local.send_packet(udp_packet(0, 0), now=0.0)  # not up yet: still tried
    assert not local.send_packet(b"", now=0.0)
    small = TunnelSession(
        SessionConfig(max_queued_datagrams=3), role="local", session_id=1, now=0.0
    )
    small.add_path(0, now=0.0)  # the HELLO is queued
    assert small.send_packet(b"\x45" * 20, now=0.1)  # (paced: time passes in between)
    assert small.send_packet(b"\x45" * 20, now=0.2)
    assert not small.send_packet(b"\x45" * 20, now=0.3)
    stats = small.statistics()
    assert (stats.send_queue_full, stats.packets_sent) == (1, 2)
    small.datagrams_to_send(now=0.3)
    assert small.send_packet(b"\x45" * 20, now=0.4)


def test_backup_metric_path_used_only_while_primary_down() -> None:
    local = TunnelSession(HAND, role="local", session_id=SID, now=0.0)
    local.add_path(0, metric=0, now=0.0)
    local.add_path(1, metric=10, now=0.0)
    remote = TunnelSession(HAND, role="remote", session_id=SID, now=0.0)
    exchange(local, remote, 0.0)
    exchange(remote, local, 0.0)
    for index in range(6):
        local.send_packet(udp_packet(index, 0), now=0.1)
    assert {pid for pid, _ in local.datagrams_to_send(now=0.1)} == {0}
    # The primary goes silent; only the backup answers.
    now = 0.0
    while now < 1.5:
        now = local.get_timer() or 0.0
        local.handle_timer(now=now)
        for pid, data in local.datagrams_to_send(now=now):
            if pid == 1:
                remote.receive_datagram(data, now=now)
        exchange(remote, local, now)
    assert [p.up for p in local.statistics().paths] == [False, True]
    for index in range(6):
        local.send_packet(udp_packet(index, 1), now=now)
    assert {pid for pid, _ in local.datagrams_to_send(now=now)} == {1}


def test_duplicates_on_a_path_and_across_paths() -> None:
    _local, remote = connected((0, 1))
    data = encode_data(0, SID, 5, 0, 0, 9, 0, b"\x45inner")
    assert remote.receive_datagram(data, now=0.1) == 0
    assert remote.receive_datagram(data, now=0.1) is None  # same path_seq on the path
    copy = encode_data(1, SID, 5, 0, 0, 9, 0, b"\x45inner")  # same session_seq, path 1
    assert remote.receive_datagram(copy, now=0.1) is None
    assert remote.packets_to_deliver() == [b"\x45inner"]
    stats = remote.statistics()
    assert stats.drops["duplicate"] == 2
    assert stats.packets_received == 1 and stats.packets_delivered == 1
    assert stats.paths[1].datagrams_received == 2  # the copy did arrive on path 1


def test_malformed_datagrams_counted_never_raised() -> None:
    _local, remote = connected((0,))
    samples = {
        b"": "truncated",
        b"\x02" + bytes(30): "bad_version",
        b"\x01\x0b" + bytes(30): "bad_type",
        encode_data(0, SID, 1, 0, 1, 0, 0, b"x")[:26]: "empty_payload",
        b"\x01\x01\x01\x00" + bytes(30): "bad_flags",
    }
    for data, reason in samples.items():
        before = remote.statistics().drops[reason]
        assert remote.receive_datagram(data, now=0.2) is None
        assert remote.statistics().drops[reason] == before + 1
    assert set(remote.statistics().drops) == set(DROP_REASONS)


def test_data_round_trip_between_sessions_and_memoryview_input() -> None:
    local, remote = connected((0, 1))
    packets = [udp_packet(flow, seq) for seq in range(5) for flow in range(3)]
    for packet in packets:
        assert local.send_packet(packet, now=0.5)
    out = local.datagrams_to_send(now=0.5)
    for index, (_, data) in enumerate(out):
        view = memoryview(data) if index % 2 else data
        remote.receive_datagram(view, now=0.51)
    delivered = remote.packets_to_deliver()
    assert delivered == packets
    assert all(type(packet) is bytes for packet in delivered)
    decoded = [decode_datagram(data) for _, data in out]
    assert all(isinstance(f, DataFrame) for f in decoded)
    assert [f.session_seq for f in decoded if isinstance(f, DataFrame)] == list(range(15))
    by_bucket: dict[int, list[int]] = {}
    for frame in decoded:
        assert isinstance(frame, DataFrame)
        by_bucket.setdefault(frame.bucket, []).append(frame.bucket_seq)
    assert all(seqs == list(range(5)) for seqs in by_bucket.values())
    assert parse_packet(packets[4]) == (1, 1)


def test_adaptive_reorder_timeout_from_delay_spread() -> None:
    config = SessionConfig(reorder_timeout_min=0.005, reorder_timeout_max=0.3, nack=False)
    remote = TunnelSession(config, role="remote", session_id=SID, now=0.0)
    assert remote.statistics().reorder_timeout == 0.3  # before any measurement: the max
    # Path 1 is 40 ms slower than path 0, no jitter: the spread is exactly 40 ms; the
    # timeout is a quarter more (pacer queues drain within ~12 % of the predicted rate).
    for index in range(40):
        now = 1.0 + index * 0.01
        for path_id, delay in ((0, 0.010), (1, 0.050)):
            data = encode_data(
                path_id, SID, index, int(now * 1e6), 2 * index + path_id, path_id, index, b"x"
            )
            remote.receive_datagram(data, now=now + delay)
    remote.handle_timer(now=1.5)
    assert remote.statistics().reorder_timeout == pytest.approx(0.050, abs=1e-5)
    # Jitter on path 1 (alternating +-5 ms) widens it by 4 x the jitter.
    jittery = TunnelSession(config, role="remote", session_id=SID, now=0.0)
    for index in range(400):
        now = 1.0 + index * 0.01
        for path_id, delay in ((0, 0.010), (1, 0.050 + (0.005 if index % 2 else -0.005))):
            data = encode_data(
                path_id, SID, index, int(now * 1e6), 2 * index + path_id, path_id, index, b"x"
            )
            jittery.receive_datagram(data, now=now + delay)
    jittery.handle_timer(now=5.0)
    path0, path1 = jittery.statistics().paths
    assert path0.owd_min == pytest.approx(0.0, abs=2e-6)  # relative to the first datagram
    assert path1.jitter > 0.003 and path0.jitter < 1e-6
    expected = (path1.owd - path0.owd_min) * 1.25 + 4 * path1.jitter  # type: ignore[operator]
    assert jittery.statistics().reorder_timeout == pytest.approx(expected, abs=1e-5)
    only_fast = TunnelSession(config, role="remote", session_id=SID, now=0.0)
    for index in range(10):
        now = 1.0 + index * 0.01
        data = encode_data(0, SID, index, int(now * 1e6), index, 0, index, b"x")
        only_fast.receive_datagram(data, now=now + 0.01)
    only_fast.handle_timer(now=1.2)
    assert only_fast.statistics().reorder_timeout == 0.005  # clamped to the minimum


def test_timer_is_always_in_the_future_after_handle_timer() -> None:
    local, remote = connected((0, 1, 2))
    now = 0.0
    for step in range(2000):
        timer = local.get_timer()
        assert timer is not None
        now = max(now, timer)
        local.handle_timer(now=now)
        assert (local.get_timer() or 0) > now, step
        for pid, data in local.datagrams_to_send(now=now):
            if pid != 2 or now < 3.0:
                remote.receive_datagram(data, now=now)
        remote.handle_timer(now=now)
        assert (remote.get_timer() or now + 1) > now
        exchange(remote, local, now)
        events(local)
    assert now > 5.0


def test_config_errors_name_the_field() -> None:
    with pytest.raises(
        ValueError, match=r"^scheduler: unknown scheduler 'x'; valid: earliest-arrival, hash"
    ):
        SessionConfig(scheduler="x")
    with pytest.raises(ValueError, match=r"^dead_interval: must be a positive number"):
        SessionConfig(dead_interval=0)
    with pytest.raises(ValueError, match=r"^feedback_every: must be a positive integer"):
        SessionConfig(feedback_every=0)
    with pytest.raises(ValueError, match=r"^reorder_timeout_min"):
        SessionConfig(reorder_timeout_min=1.0, reorder_timeout_max=0.5)
    with pytest.raises(ValueError, match=r"^idle_timeout"):
        SessionConfig(idle_timeout=-1)
    with pytest.raises(ValueError, match=r"^role"):
        TunnelSession(HAND, role="middle", session_id=1, now=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^session_id"):
        TunnelSession(HAND, role="local", session_id=2**32, now=0.0)
    local = TunnelSession(HAND, role="local", session_id=1, now=0.0)
    with pytest.raises(ValueError, match=r"^path_id"):
        local.add_path(255, now=0.0)
    with pytest.raises(ValueError, match=r"^rate_bps"):
        local.add_path(1, rate_bps=0, now=0.0)


def test_idle_timeout_closes_the_session() -> None:
    remote = TunnelSession(SessionConfig(idle_timeout=5.0), role="remote", session_id=SID, now=0.0)
    remote.receive_datagram(encode(ControlFrame(0, SID, 0, 0, ControlKind.HELLO)), now=1.0)
    events(remote)
    now = 1.0
    while (timer := remote.get_timer()) is not None:
        now = timer
        remote.handle_timer(now=now)
    assert now == 6.0
    assert events(remote) == [PathDown(0, "timeout"), SessionClosed("idle")]


def test_statistics_are_frozen_snapshots() -> None:
    local, _ = connected((0,))
    stats = local.statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.packets_sent = 5  # type: ignore[misc]
    local.send_packet(udp_packet(0, 0), now=0.1)
    assert stats.packets_sent == 0 and local.statistics().packets_sent == 1
    assert stats.scheduler == "earliest-arrival" and stats.role == "local"
    local.set_scheduler("hash")
    assert local.statistics().scheduler == "hash"


def test_idle_path_proves_gaps_with_its_keepalives() -> None:
    remote = TunnelSession(HAND, role="remote", session_id=SID, now=0.0)
    hello = encode(ControlFrame(1, SID, 0, 0, ControlKind.HELLO))
    remote.receive_datagram(hello, now=0.0)  # path 1: up, idle
    # Path 0 carries bucket 7: seq 0 lost, seq 1 (session seq 1, sent at 100 ms) arrives.
    remote.receive_datagram(encode_data(0, SID, 0, 100_000, 1, 7, 1, b"one"), now=0.11)
    assert remote.packets_to_deliver() == []  # path 1 might still carry seq 0
    # A probe on path 1 sent at 99 ms proves nothing; one sent at 101 ms proves the gap.
    remote.receive_datagram(encode(ProbeFrame(1, SID, 1, 99_000, False)), now=0.12)
    assert remote.packets_to_deliver() == []
    remote.receive_datagram(encode(ProbeFrame(1, SID, 2, 101_000, False)), now=0.13)
    assert remote.packets_to_deliver() == [b"one"]
    assert remote.statistics().reorder.gaps_skipped_proof == 1


def test_resync_after_a_corrupt_sequence_number_far_ahead() -> None:
    remote = TunnelSession(HAND, role="remote", session_id=SID, now=0.0)

    def data(path_seq: int, session_seq: int) -> bytes:
        return encode_data(0, SID, path_seq, 0, session_seq, 3, session_seq, b"\x45")

    assert remote.receive_datagram(data(0, 0), now=0.0) == 0
    # One corrupt datagram: session_seq 1_000_000 ahead (within 2**31, so "newer").
    assert remote.receive_datagram(data(1, 1_000_000), now=0.0) == 0
    accepted = [remote.receive_datagram(data(2 + i, 1 + i), now=0.0) for i in range(70)]
    # 63 too-old drops, then the window follows the real numbering again.
    assert accepted == [None] * 63 + [0] * 7
    assert remote.statistics().drops["duplicate"] == 63
    # The same for a path_seq far ahead.
    assert remote.receive_datagram(data(5_000_000, 100), now=0.0) == 0
    accepted = [remote.receive_datagram(data(80 + i, 200 + i), now=0.0) for i in range(70)]
    assert accepted == [None] * 63 + [0] * 7


def test_update_path_changes_only_what_is_given() -> None:
    local = TunnelSession(HAND, role="local", session_id=SID, now=0.0)
    local.add_path(0, rate_bps=10_000_000, metric=1, now=0.0)
    local.add_path(1, rate_bps=30_000_000, metric=1, now=0.0)
    local.update_path(0, metric=2, now=0.0)  # path 0 becomes the backup, rate kept
    assert [(p.rate_bps, p.metric) for p in local.statistics().paths] == [
        (10_000_000, 2),
        (30_000_000, 1),
    ]
    local.datagrams_to_send(now=0.0)
    for index in range(4):
        local.send_packet(udp_packet(index, 0), now=0.0)
    assert {pid for pid, _ in local.datagrams_to_send(now=0.0)} == {1}
    local.update_path(0, rate_bps=None, metric=1, now=0.0)
    assert local.statistics().paths[0].rate_bps is None
    with pytest.raises(ValueError, match=r"^metric"):
        local.update_path(0, metric=-1, now=0.0)
