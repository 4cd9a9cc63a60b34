"""SecureSession / SecureServer (wire v3) over the secure pair harness, with fake time."""

from __future__ import annotations

import ipaddress
import itertools
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from pairnet import parse_packet, udp_packet
from securenet import CONFIG, WALL_BASE, Keys, SecureNet, address, rng_from

from braid.core.keys import generate_private_key, public_key
from braid.core.secure import (
    AllowedSources,
    PeerSpec,
    SecureConfig,
    SecureServer,
    SecureSession,
)
from braid.core.session import SessionConfig, TunnelSession
from braid.core.wire import DATA_HEADER_SIZE


def fixed_keys(seed: int = 7) -> Keys:
    return Keys.fresh(rng_from(seed))


def traffic(net: SecureNet, count: int, start: float, gap: float) -> None:
    for i in range(count):
        at = start + i * gap
        net.send("local", udp_packet(i % 8, i // 8), at)
        net.send("remote", udp_packet(i % 8, i // 8), at)


def flows(packets: list[bytes]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for p in packets:
        flow, seq = parse_packet(p)
        out.setdefault(flow, []).append(seq)
    return out


def test_traffic_over_two_paths_through_rotations_without_loss() -> None:
    net = SecureNet(fixed_keys(), [0.010, 0.080], rekey_after_time=3.0)
    traffic(net, 4000, start=0.5, gap=0.004)  # 16 s of traffic: five rotations
    net.run_until(18.0)
    for side in ("local", "remote"):
        got = flows(net.delivered[side])
        assert sum(len(v) for v in got.values()) == 4000
        for seqs in got.values():
            assert seqs == sorted(seqs)
    local = net.local.security_statistics()
    remote = net.remote
    assert remote is not None
    assert local.handshakes_completed >= 5
    assert local.keys.rotations == local.handshakes_completed
    assert remote.security_statistics().keys.rotations >= 5
    for stats in (net.local.statistics(), remote.statistics()):
        for reason in ("auth", "replay", "unknown_key", "duplicate"):
            assert stats.drops.get(reason, 0) == 0, (reason, stats.drops)
        assert all(p.datagrams_received > 1000 for p in stats.paths)
    # Every datagram on the wire is version 3; handshake messages went over both paths.
    assert all(data[0] == 3 for _, _, data in net.wire)
    initiation_paths = {pid for d, pid, data in net.wire if d == "up" and data[1] == 5}
    assert initiation_paths == {0, 1}


def test_a_path_removed_and_added_again_numbers_on_under_the_same_keys() -> None:
    """path_seq is part of each record's nonce (docs/protocol.md, version 3): a path the
    site removes and adds again (a modem unplugged and back) goes on numbering where it
    left off, both ways (the remote portal drops its path at PATH_DOWN and makes it again
    when datagrams come on it: here the last ones on their way, then the path's return),
    so nothing is refused for a reused number; the path carries traffic again, with no
    phantom loss on either side."""
    net = SecureNet(fixed_keys(), [0.010, 0.030])
    traffic(net, 1500, start=0.5, gap=0.004)  # 6 s of traffic both ways
    net.run_until(2.0)
    before = {p.path_id: p.datagrams_sent for p in net.local.statistics().paths}
    keys = net.local.security_statistics().keys.current_key_id
    net.local.remove_path(1, now=net.now)
    net.run_until(3.0)
    net.local.add_path(1, now=net.now)
    net.run_until(8.0)
    assert net.local.security_statistics().keys.current_key_id == keys  # the same keys
    for side in ("local", "remote"):
        assert sum(len(v) for v in flows(net.delivered[side]).values()) == 1500
    remote = net.remote
    assert remote is not None
    for stats in (net.local.statistics(), remote.statistics()):
        assert {p.path_id for p in stats.paths if p.up} == {0, 1}
        # (No "duplicate" check: at PATH_DOWN the remote sends again on path 0 what it
        # had sent on path 1, and this harness still delivers the originals.)
        for reason in ("counter_reuse", "auth", "replay"):
            assert stats.drops.get(reason, 0) == 0, (reason, stats.drops)
        path = next(p for p in stats.paths if p.path_id == 1)
        assert path.datagrams_sent > 100 and path.lost == 0, path
    # The local portal's path 1 went on from where it stopped.
    sent = [
        int.from_bytes(d[8:12], "big")
        for way, pid, d in net.wire
        if way == "up" and pid == 1 and d[1] not in (5, 6, 7)
    ]
    assert sent == sorted(sent) and len(set(sent)) == len(sent)
    assert sent[-1] > before[1]


def test_auth_only_mode_carries_clear_payloads_with_tags() -> None:
    net = SecureNet(fixed_keys(), [0.01, 0.02], local_encryption=False, remote_encryption=False)
    traffic(net, 200, start=0.5, gap=0.01)
    net.run_until(4.0)
    assert len(net.delivered["remote"]) == 200 and len(net.delivered["local"]) == 200
    assert net.local.security_statistics().auth_only
    marker = udp_packet(3, 10)[28:]  # (its payload: the headers may go compressed)
    assert any(marker in data for d, _, data in net.wire if d == "up")  # in clear
    encrypted = SecureNet(fixed_keys(), [0.01, 0.02])
    traffic(encrypted, 200, start=0.5, gap=0.01)
    encrypted.run_until(4.0)
    assert len(encrypted.delivered["remote"]) == 200
    assert not any(marker in data for _, _, data in encrypted.wire)


def test_remote_refuses_auth_only_unless_configured() -> None:
    net = SecureNet(fixed_keys(), [0.01], local_encryption=False, remote_encryption=True)
    traffic(net, 20, start=0.5, gap=0.01)
    net.run_until(3.0)
    assert net.delivered["remote"] == [] and net.server.sessions == {}
    assert net.server.statistics().drops.get("mode_refused", 0) >= 1


@pytest.mark.parametrize("wrong", ["remote_key", "local_key"])
def test_wrong_keys_cannot_talk(wrong: str) -> None:
    stranger = public_key(generate_private_key(rng_from(99)))
    kwargs = {"remote_public": stranger} if wrong == "remote_key" else {"local_public": stranger}
    net = SecureNet(fixed_keys(), [0.01, 0.02], **kwargs)
    traffic(net, 100, start=0.2, gap=0.01)
    net.run_until(10.0)
    assert net.delivered == {"local": [], "remote": []}
    assert net.server.sessions == {}
    assert not any(d == "down" for d, _, _ in net.wire)  # silence: no reply at all
    drops = net.server.statistics().drops
    expected = "bad_mac1" if wrong == "remote_key" else "unknown_peer"
    assert drops.get(expected, 0) >= 3  # retried with backoff: 1 s, 2 s, 4 s ...
    assert net.local.security_statistics().initiations_sent in range(4, 7)


def test_every_bit_flip_of_live_datagrams_is_dropped_and_counted() -> None:
    net = SecureNet(fixed_keys(), [0.01, 0.03])
    traffic(net, 100, start=0.5, gap=0.01)
    net.run_until(3.0)
    remote = net.remote
    assert remote is not None
    samples: list[bytes] = []
    seen_types: set[int] = set()
    for direction, _, data in net.wire:
        if direction == "up" and data[1] in (1, 2, 3, 4) and data[1] not in seen_types:
            seen_types.add(data[1])
            samples.append(data)
    assert {1, 3, 4} <= seen_types
    before = remote.statistics()
    delivered = len(net.delivered["remote"])
    flips = 0
    for data in samples:
        for bit in range(len(data) * 8):
            mutated = bytearray(data)
            mutated[bit // 8] ^= 1 << (bit % 8)
            result = net.server.receive_datagram(bytes(mutated), address(0), now=net.now)
            assert result is None or result[1] is None
            flips += 1
    after = remote.statistics()
    dropped_in_session = sum(after.drops.values()) - sum(before.drops.values())
    dropped_before = sum(net.server.statistics().drops.values())
    assert dropped_in_session + dropped_before == flips
    assert after.datagrams_received == before.datagrams_received
    assert remote.packets_to_deliver() == [] and len(net.delivered["remote"]) == delivered
    # the untouched originals are replays now
    replays = remote.statistics().drops["replay"]
    for data in samples:
        assert net.server.receive_datagram(data, address(0), now=net.now) == (remote, None)
    assert remote.statistics().drops["replay"] == replays + len(samples)


def test_fuzz_random_and_mutated_datagrams_none_accepted() -> None:
    net = SecureNet(fixed_keys(), [0.01, 0.02])
    traffic(net, 50, start=0.5, gap=0.01)
    net.run_until(2.0)
    remote = net.remote
    assert remote is not None
    corpus = [data for _, _, data in net.wire]
    rnd = random.Random(2024)
    local, server = net.local, net.server
    sid = remote.session_id.to_bytes(4, "big")
    before_local = local.statistics().datagrams_received
    before_remote = remote.statistics().datagrams_received
    for i in range(100_000):
        kind = i % 4
        if kind == 0:
            data = rnd.randbytes(rnd.randrange(0, 200))
        elif kind == 1:  # plausible header, random rest
            data = bytes((2, rnd.randrange(0, 9), 0, rnd.randrange(3))) + sid
            data += rnd.randbytes(rnd.randrange(0, 200))
        else:  # a mutation of a real datagram
            original = rnd.choice(corpus)
            base = bytearray(original)
            for _ in range(rnd.randrange(1, 4)):
                op = rnd.randrange(3)
                if op == 0 and base:
                    base[rnd.randrange(len(base))] = rnd.randrange(256)
                elif op == 1:
                    del base[rnd.randrange(len(base) + 1) :]
                else:
                    base += rnd.randbytes(rnd.randrange(1, 20))
            data = bytes(base)
            if data == original:
                # Not a mutation (a byte set to its own value, a cut past the end). A
                # datagram still in flight at the end of the run would rightly open.
                continue
        assert local.receive_datagram(data, now=net.now) is None
        result = server.receive_datagram(data, ("198.51.100.7", 999), now=net.now)
        assert result is None or result[1] is None
    assert local.statistics().datagrams_received == before_local
    assert remote.statistics().datagrams_received == before_remote
    assert local.packets_to_deliver() == [] and remote.packets_to_deliver() == []
    assert len(server.sessions) == 1


def test_inner_source_outside_allowed_ips_is_dropped() -> None:
    net = SecureNet(fixed_keys(), [0.01], allowed=("10.0.0.0/30",))
    good = udp_packet(0, 1)  # source 10.0.0.1
    bad = bytearray(udp_packet(0, 2))
    bad[12:16] = bytes((192, 168, 1, 1))
    net.send("local", good, 0.5)
    net.send("local", bytes(bad), 0.6)
    net.run_until(2.0)
    assert net.delivered["remote"] == [good]
    remote = net.remote
    assert remote is not None
    assert remote.statistics().drops["source_not_allowed"] == 1


def test_spoofed_path_and_replays_from_elsewhere_get_nothing() -> None:
    net = SecureNet(fixed_keys(), [0.01, 0.02])
    traffic(net, 300, start=0.5, gap=0.01)
    net.run_until(1.0)
    captured = [data for d, _, data in net.wire if d == "up" and data[1] in (1, 2, 3, 4)]
    net.run_until(1.1)  # all of them arrived (a spoofer racing them is an on-path attacker)
    remote = net.remote
    assert remote is not None
    spoofer = ("203.0.113.66", 6666)
    for data in captured:
        net.inject(data, spoofer)  # replays from a new address
        for path_id in (5, 77):  # the session id with a new path id
            net.inject(data[:3] + bytes((path_id,)) + data[4:], spoofer)
    net.run_until(5.0)
    assert not any(d == "elsewhere" for d, _, _ in net.wire)  # nothing went to the spoofer
    assert set(net.addresses[remote.session_id].values()) == {address(0), address(1)}
    assert remote.path_ids() == (0, 1)
    drops = remote.statistics().drops
    assert drops["replay"] + drops["auth"] == 3 * len(captured)
    assert len(net.delivered["remote"]) == 300


def test_session_id_of_another_peer_is_refused_and_peers_get_one_session_each() -> None:
    keys = fixed_keys()
    other_private = generate_private_key(rng_from(5))
    remote_public = public_key(keys.remote_private)
    import ipaddress

    server_config = SecureConfig(
        private_key=keys.remote_private,
        peers=(
            PeerSpec(
                public_key(keys.local_private),
                allowed_ips=(ipaddress.ip_network("10.0.0.0/24"),),
            ),
            PeerSpec(public_key(other_private), allowed_ips=(ipaddress.ip_network("10.9.0.0/24"),)),
        ),
    )
    server = SecureServer(server_config, session_config=CONFIG, rng=rng_from(1), now=0.0)

    def initiator(private: bytes, session_id: int, now: float) -> SecureSession:
        inner = TunnelSession(CONFIG, role="local", session_id=session_id, now=now)
        s = SecureSession.initiator(
            inner,
            SecureConfig(private_key=private, peers=(PeerSpec(remote_public),)),
            rng=rng_from(session_id),
            now=now,
            wall_clock=lambda: WALL_BASE + now,
        )
        s.add_path(0, now=now)
        return s

    def handshake(s: SecureSession, src: tuple[str, int], now: float) -> bool:
        for _, data in s.datagrams_to_send(now=now):
            if data[1] == 5:
                server.receive_datagram(data, src, now=now)
        replies = server.replies_to_send()
        for reply, _ in replies:
            s.receive_datagram(reply, now=now)
        return bool(replies) and s.established

    a = initiator(keys.local_private, 1111, 0.0)
    assert handshake(a, ("192.0.2.1", 1), 0.0)
    assert set(server.sessions) == {1111}
    b = initiator(other_private, 1111, 0.1)  # another peer, the same session id
    assert not handshake(b, ("192.0.2.2", 1), 0.1)
    assert server.statistics().drops["session_owned"] == 1
    assert server.sessions[1111].peer.public_key == public_key(keys.local_private)
    # A restarted site (new session id, the same key) replaces its old session.
    a2 = initiator(keys.local_private, 2222, 1.0)
    assert handshake(a2, ("192.0.2.1", 2), 1.0)
    assert set(server.sessions) == {2222}
    event = server.next_event()
    assert event is not None and event.session.session_id == 1111  # the first opening
    event = server.next_event()
    assert event is not None and event.replaced is not None
    assert event.replaced.session_id == 1111 and event.replaced.closed


def test_a_restarted_remote_portal_gets_a_new_handshake() -> None:
    net = SecureNet(fixed_keys(), [0.01, 0.02])
    traffic(net, 1000, start=0.5, gap=0.01)  # 10 s of traffic
    net.run_until(3.0)
    old = net.remote
    assert old is not None
    # The remote portal restarts: a new server with the same keys, nothing remembered.
    net.server = SecureServer(net.remote_config, session_config=CONFIG, rng=rng_from(3), now=3.0)
    net.addresses.clear()
    net.run_until(12.0)
    new = net.remote
    assert new is not None and new is not old
    assert new.session_id == net.local.session_id
    assert net.local.security_statistics().handshakes_completed == 2
    remote_got = flows(net.delivered["remote"])
    tail = [s for seqs in remote_got.values() for s in seqs if s >= 100]  # after ~8.5 s
    assert len(tail) >= 8 * 20


def test_cookie_reply_under_load_then_the_initiator_gets_through() -> None:
    net = SecureNet(fixed_keys(), [0.01])
    # Spend the DH budget: the server is under load before the genuine initiation.
    from braid.core.cookie import HandshakeGate

    net.server.gate = HandshakeGate(
        public_key=net.server.identity.public_key,
        mac1_key=net.server.identity.mac1_key,
        rng=rng_from(4),
        now=0.0,
        load_rate=0.01,
        load_burst=1.0,
    )
    net.server.gate._load.take(now=0.0)
    traffic(net, 50, start=0.2, gap=0.1)
    net.run_until(6.0)
    drops = net.server.statistics().drops
    assert drops.get("cookie_sent", 0) >= 1
    assert net.remote is not None
    assert len(net.delivered["remote"]) >= 30


def test_handshake_retries_rotate_over_paths_with_backoff() -> None:
    keys = fixed_keys()
    inner = TunnelSession(SessionConfig(), role="local", session_id=42, now=0.0)
    session = SecureSession.initiator(
        inner,
        SecureConfig(
            private_key=keys.local_private, peers=(PeerSpec(public_key(keys.remote_private)),)
        ),
        rng=rng_from(1),
        now=0.0,
        wall_clock=lambda: WALL_BASE,
    )
    for pid in range(3):
        session.add_path(pid, now=0.0)
    sent: list[tuple[float, int]] = []
    now = 0.0
    while now < 20.0:
        for pid, data in session.datagrams_to_send(now=now):
            assert data[0] == 3
            if data[1] == 5:
                sent.append((now, pid))
            else:
                assert len(data) > DATA_HEADER_SIZE or data[1] != 1
        timer = session.get_timer()
        assert timer is not None and timer > now
        now = timer
        session.handle_timer(now=now)
    times = [t for t, _ in sent]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert [pid for _, pid in sent[:3]] == [0, 1, 2]
    assert 1.0 <= gaps[0] <= 1.25 and 2.0 <= gaps[1] <= 2.5 and 4.0 <= gaps[2] <= 5.0
    assert all(g <= 10.0 for g in gaps)
    assert session.statistics().drops["no_key"] > 0  # HELLOs could not be sealed yet


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=4),
    st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)), max_size=3),
    st.lists(st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32, 2**128 - 1)), max_size=40),
)
def test_allowed_sources_agree_with_ipaddress_also_when_asked_again(
    nets4: list[tuple[int, int]], nets6: list[tuple[int, int]], sources: list[int]
) -> None:
    """`AllowedSources.allows` (which remembers the sources it allowed) says what
    `ipaddress` says about the source address, the first time and every time after."""
    networks = [
        *(ipaddress.ip_network((a, p), strict=False) for a, p in nets4),
        *(ipaddress.ip_network((ipaddress.IPv6Address(a), p), strict=False) for a, p in nets6),
    ]
    allowed = AllowedSources(networks)
    for source in sources * 2:  # (each one twice: the second answer may come from memory)
        v4 = source < 2**32
        address = ipaddress.IPv4Address(source) if v4 else ipaddress.IPv6Address(source)
        packet = (
            bytes([0x45]) + bytes(11) + address.packed + bytes(4)
            if v4
            else bytes([0x60]) + bytes(7) + address.packed + bytes(16)
        )
        expected = not networks or any(
            address in net for net in networks if net.version == address.version
        )
        assert allowed.allows(packet) == expected
