"""Prometheus metrics: a custom collector reading the portal's statistics at scrape time.

Nothing is counted per packet for the metrics: each scrape takes one `statistics()`
snapshot of the portal (its counters and every session's paths) and turns it into
metric families. Series are labelled by `session` (8 hex digits), `path` (the path id)
and, on a local portal, `link` (the link's name).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from braid.control.service import PortalService

# (attribute of PathStatistics, metric name, help)
_PATH_COUNTERS = (
    ("datagrams_sent", "braid_path_datagrams_sent", "Datagrams sent on the path"),
    ("bytes_sent", "braid_path_sent_bytes", "Bytes sent on the path"),
    ("datagrams_received", "braid_path_datagrams_received", "Datagrams received on the path"),
    ("bytes_received", "braid_path_received_bytes", "Bytes received on the path"),
    ("delivered", "braid_path_delivered_datagrams", "Sent datagrams the peer reported received"),
    ("lost", "braid_path_lost_datagrams", "Sent datagrams the peer reported lost"),
    (
        "estimate_restarts",
        "braid_path_estimate_restarts",
        "Times the path's estimate was lowered because the link's queue stood or overflowed",
    ),
    ("reprobes", "braid_path_reprobes", "Times the path probed again, after idle, for its rate"),
    ("fill_bytes", "braid_path_fill_bytes", "Bytes of fill PROBEs sent to find the path's rate"),
)
_PATH_GAUGES = (
    ("srtt", "braid_path_rtt_seconds", "Smoothed round-trip time of the path"),
    ("min_rtt", "braid_path_min_rtt_seconds", "Minimum round-trip time of the path"),
    ("jitter", "braid_path_jitter_seconds", "One-way delay jitter of the path"),
)
_SESSION_COUNTERS = (
    ("packets_sent", "braid_session_packets_sent", "Inner packets sent into the session"),
    ("bytes_sent", "braid_session_sent_bytes", "Inner bytes sent into the session"),
    ("packets_received", "braid_session_packets_received", "Inner packets received"),
    ("packets_delivered", "braid_session_packets_delivered", "Inner packets delivered"),
    ("bytes_delivered", "braid_session_delivered_bytes", "Inner bytes delivered"),
    ("send_no_path", "braid_session_send_no_path", "Packets dropped: no live path"),
    (
        "failover_resent",
        "braid_session_failover_resent",
        "Packets re-sent on other paths because their path went down",
    ),
    (
        "failover_skipped",
        "braid_session_failover_skipped",
        "Packets a failover did not re-send: NACK recovery had resent them elsewhere",
    ),
    (
        "failover_late",
        "braid_session_failover_late",
        "Packets a failover did not re-send: they could not arrive before the egress gave up",
    ),
    (
        "path_info_applied",
        "braid_session_path_info_applied",
        "Link metric/standby/download-rate changes the site told this portal (PATH_INFO)",
    ),
    (
        "rebalanced",
        "braid_session_rebalanced",
        "Queued packets moved to a path that joined",
    ),
    (
        "early_dropped",
        "braid_session_early_dropped",
        "Inner packets dropped early by queue management (early_drop)",
    ),
    (
        "early_marked",
        "braid_session_early_marked",
        "ECN-capable inner packets marked CE by queue management",
    ),
    ("retransmitted", "braid_session_retransmitted", "Packets resent for a NACK"),
    ("gaps_recovered", "braid_session_gaps_recovered", "Lost packets recovered after a NACK"),
    ("gaps_abandoned", "braid_session_gaps_abandoned", "Lost packets given up by the egress"),
    ("fec_parities", "braid_session_fec_parities", "FEC parities sent"),
    ("fec_recovered", "braid_session_fec_recovered", "Packets rebuilt from FEC parity"),
    (
        "equalized",
        "braid_session_equalized",
        "Inner packets the egress held to the slowest usable path's delay (equalize)",
    ),
    (
        "compacted",
        "braid_session_compacted",
        "Inner packets sent without the header fields their flow repeats (compress_headers)",
    ),
    (
        "compact_saved",
        "braid_session_compact_saved_bytes",
        "Bytes header compression saved on the wire",
    ),
    ("expanded", "braid_session_expanded", "Compressed inner packets the egress rebuilt"),
    (
        "mss_clamped",
        "braid_session_mss_clamped",
        "TCP SYNs whose MSS option was lowered to fit the tunnel (clamp_mss)",
    ),
    (
        "acks_filtered",
        "braid_session_acks_filtered",
        "Pure TCP acknowledgements that took the place of an older one of their flow "
        "still queued (ack_filter)",
    ),
    (
        "sparse_jumps",
        "braid_session_sparse_jumps",
        "Packets of sparse flows put at the head of a path's non-empty queue (sparse_priority)",
    ),
    (
        "sparse_queued",
        "braid_session_sparse_queued",
        "Packets of sparse flows queued at the tail: the path had used the share of its "
        "rate sparse packets may jump its queue with (sparse_priority)",
    ),
)


class BraidCollector:
    """A prometheus_client collector over a `PortalService` (reads at scrape time)."""

    def __init__(self, service: PortalService) -> None:
        self.service = service

    def describe(self) -> list[Metric]:
        """No up-front description (the series depend on the live sessions)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One snapshot of the portal as metric families."""
        stats = self.service.portal.statistics()
        names = self.service.path_names()
        role = stats.role
        info = GaugeMetricFamily(
            "braid_portal_info", "The portal (value 1)", labels=["role", "tunnel"]
        )
        info.add_metric([role, stats.tunnel], 1)
        yield info
        sessions = GaugeMetricFamily("braid_sessions", "Live sessions")
        sessions.add_metric([], len(stats.sessions))
        yield sessions
        uptime = GaugeMetricFamily("braid_uptime_seconds", "Seconds since the API started")
        uptime.add_metric([], self.service.info()["uptime"])
        yield uptime
        tun_queue = GaugeMetricFamily(
            "braid_tun_queue_length", "Packets the kernel may queue for the TUN device"
        )
        tun_queue.add_metric([], stats.tun_queue_length)
        yield tun_queue
        portal_counters = CounterMetricFamily(
            "braid_portal_events", "Runtime counters of the portal", labels=["counter"]
        )
        for item in dataclasses.fields(stats.counters):
            portal_counters.add_metric([item.name], getattr(stats.counters, item.name))
        yield portal_counters

        path_labels = ["session", "path", "link"]
        up = GaugeMetricFamily("braid_path_up", "1 if the path is up", labels=path_labels)
        rate = GaugeMetricFamily(
            "braid_path_rate_hint_bps", "Configured rate hint (0: unknown)", labels=path_labels
        )
        metric = GaugeMetricFamily("braid_path_metric", "Path metric", labels=path_labels)
        loss = GaugeMetricFamily(
            "braid_path_loss_ratio", "Fraction of accounted datagrams lost", labels=path_labels
        )
        counters = {
            attr: CounterMetricFamily(name, text, labels=path_labels)
            for attr, name, text in _PATH_COUNTERS
        }
        gauges = {
            attr: GaugeMetricFamily(name, text, labels=path_labels)
            for attr, name, text in _PATH_GAUGES
        }
        s_labels = ["session"]
        s_counters = {
            attr: CounterMetricFamily(name, text, labels=s_labels)
            for attr, name, text in _SESSION_COUNTERS
        }
        s_drops = CounterMetricFamily(
            "braid_session_drops", "Datagrams dropped, by reason", labels=["session", "reason"]
        )
        s_paths = GaugeMetricFamily("braid_session_paths_up", "Paths up", labels=s_labels)
        s_nack = GaugeMetricFamily(
            "braid_session_nack_active",
            "1 while the egress NACKs lost packets (nack on, or auto and the paths lose)",
            labels=s_labels,
        )
        s_fair = GaugeMetricFamily(
            "braid_session_fair_waiting_bytes",
            "Bytes waiting in the flows' own queues now (fair_queue)",
            labels=s_labels,
        )
        for session in stats.sessions:
            sid = f"{session.session_id:08x}"
            s_fair.add_metric([sid], session.fair_waiting)
            for attr, family in s_counters.items():
                family.add_metric([sid], getattr(session, attr))
            for reason, count in session.drops.items():
                s_drops.add_metric([sid, reason], count)
            s_paths.add_metric([sid], sum(1 for p in session.paths if p.up))
            s_nack.add_metric([sid], 1 if session.nack_active else 0)
            for p in session.paths:
                labels = [sid, str(p.path_id), names.get(p.path_id, "")]
                up.add_metric(labels, 1 if p.up else 0)
                rate.add_metric(labels, p.rate_bps or 0)
                metric.add_metric(labels, p.metric)
                loss.add_metric(labels, p.loss_rate)
                for attr, family in counters.items():
                    family.add_metric(labels, getattr(p, attr))
                for attr, gauge in gauges.items():
                    value = getattr(p, attr)
                    if value is not None:
                        gauge.add_metric(labels, value)
        yield from s_counters.values()
        yield s_drops
        yield s_paths
        yield s_nack
        yield s_fair
        yield up
        yield rate
        yield metric
        yield loss
        yield from counters.values()
        yield from gauges.values()


class MetricsExporter:
    """A registry holding only the braid collector, rendered on demand."""

    def __init__(self, service: PortalService) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BraidCollector(service))

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (body, content type) for a request's Accept header."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
