"""Config validation: valid files parse to the right values; every class of error is one
line naming the field, through the library and through the real `braid` CLI (exit 2)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from braid.control.config import (
    ConfigError,
    format_rate,
    load_config,
    parse_config,
    parse_rate,
)
from braid.core.session import SessionConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# Test keys (deterministic; used nowhere else).
LOCAL_PRIVATE = "AAIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eH2A="
LOCAL_PUBLIC = "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw="
REMOTE_PRIVATE = "YGZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg0Q="
REMOTE_PUBLIC = "VxR2nRFr92Q2rnS8eT0sMK0ZA8WaxSc4BcfiaYtBDDY="

LOCAL = f"""\
role = "local"
private_key = "{LOCAL_PRIVATE}"
[[peer]]
public_key = "{REMOTE_PUBLIC}"
[tunnel]
name = "braid0"
address = "10.99.0.2/30"
mtu = 1400
routes = ["10.2.0.0/24"]
[[link]]
name = "dsl"
interface = "eth1"
source = "192.0.2.2"
remote = "198.51.100.1:7100"
rate = "20mbit"
[[link]]
name = "lte"
interface = "wwan0"
remote = "198.51.100.1:7100"
"""

REMOTE = f"""\
role = "remote"
private_key = "{REMOTE_PRIVATE}"
[[peer]]
name = "site"
public_key = "{LOCAL_PUBLIC}"
allowed_ips = ["10.1.0.0/24"]
[tunnel]
address = "10.99.0.1/30"
[listen]
address = "0.0.0.0"
port = 7100
"""


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "braid", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=30,
        cwd=ROOT,
    )


# -- valid configs ----------------------------------------------------------------------


def test_examples_are_valid() -> None:
    local = load_config(EXAMPLES / "local.toml")
    assert local.role == "local"
    assert [link.name for link in local.links] == ["dsl", "lte"]
    remote = load_config(EXAMPLES / "remote.toml")
    assert remote.role == "remote"
    assert remote.listen is not None and remote.listen.port == 7100
    assert remote.links == ()


def test_local_values() -> None:
    config = parse_config(LOCAL, source="site.toml")
    assert config.source == "site.toml"
    assert config.tunnel.name == "braid0"
    assert config.tunnel.addresses == (ipaddress.ip_interface("10.99.0.2/30"),)
    assert config.tunnel.mtu == 1400
    assert config.tunnel.routes == (ipaddress.ip_network("10.2.0.0/24"),)
    assert config.listen is None
    dsl, lte = config.links
    assert dsl.interface == "eth1" and dsl.source == "192.0.2.2"
    assert dsl.remote == ("198.51.100.1", 7100)
    assert dsl.rate_bps == 20_000_000
    assert dsl.metric == 0
    assert lte.source is None and lte.rate_bps is None
    assert dsl.download_bps is None


def test_link_download_rate() -> None:
    config = parse_config(LOCAL.replace('rate = "20mbit"', 'rate = "20mbit"\ndownload = "100mbit"'))
    assert config.links[0].download_bps == 100_000_000
    assert config.links[0].rate_bps == 20_000_000
    with pytest.raises(ConfigError, match=r"link\[0\]\.download: \"fast\" is not a rate"):
        parse_config(LOCAL.replace('rate = "20mbit"', 'download = "fast"'))
    with pytest.raises(ConfigError, match=r"link\[0\]\.download: 5 is an integer"):
        parse_config(LOCAL.replace('rate = "20mbit"', "download = 5"))


def test_defaults_come_from_the_core() -> None:
    config = parse_config(REMOTE)
    core = SessionConfig()
    assert config.tunnel.name == "braid0"
    assert config.tunnel.mtu == 1400
    assert config.session.scheduler == core.scheduler
    assert config.session.keepalive_interval == core.keepalive_interval
    assert config.session.dead_interval == core.dead_interval
    session = config.session.to_session_config()
    assert session == SessionConfig(
        scheduler=core.scheduler,
        keepalive_interval=core.keepalive_interval,
        dead_interval=core.dead_interval,
    )


def test_session_settings_reach_the_core() -> None:
    text = REMOTE + '[session]\nscheduler = "hash"\nkeepalive_interval = 0.1\ndead_interval = 2\n'
    session = parse_config(text).session.to_session_config()
    assert (session.scheduler, session.keepalive_interval, session.dead_interval) == (
        "hash",
        0.1,
        2.0,
    )


def test_resilience_and_priority_settings_reach_the_core() -> None:
    text = (
        REMOTE
        + "[session]\nsilence_timeout_min = 0.5\nreturn_holddown = 2\nsparse_priority = false\n"
    )
    session = parse_config(text).session.to_session_config()
    assert (session.silence_timeout_min, session.return_holddown, session.sparse_priority) == (
        0.5,
        2.0,
        False,
    )
    defaults = parse_config(REMOTE).session.to_session_config()
    core = SessionConfig()
    assert (defaults.silence_timeout_min, defaults.return_holddown, defaults.sparse_priority) == (
        core.silence_timeout_min,
        core.return_holddown,
        core.sparse_priority,
    )
    with pytest.raises(ConfigError, match=r"session\.sparse_priority: .*expected true or false"):
        parse_config(REMOTE + '[session]\nsparse_priority = "yes"\n')
    with pytest.raises(ConfigError, match=r"session\.return_holddown: .*expected seconds"):
        parse_config(REMOTE + "[session]\nreturn_holddown = -1\n")
    # fair_queue: off by default, on when asked.
    assert defaults.fair_queue is False and core.fair_queue is False
    fair = parse_config(REMOTE + "[session]\nfair_queue = true\n").session.to_session_config()
    assert fair.fair_queue is True
    with pytest.raises(ConfigError, match=r"session\.fair_queue: .*expected true or false"):
        parse_config(REMOTE + "[session]\nfair_queue = 1\n")
    # probe_rates: on by default, off when asked.
    assert defaults.probe_rates is True and core.probe_rates is True
    off = parse_config(REMOTE + "[session]\nprobe_rates = false\n").session.to_session_config()
    assert off.probe_rates is False
    with pytest.raises(ConfigError, match=r"session\.probe_rates: .*expected true or false"):
        parse_config(REMOTE + '[session]\nprobe_rates = "no"\n')


def test_tcp_transport_and_listener() -> None:
    text = LOCAL.replace('name = "lte"\n', 'name = "lte"\ntransport = "tcp"\n')
    config = parse_config(text)
    assert [link.transport for link in config.links] == ["udp", "tcp"]
    remote = parse_config(REMOTE.replace("[listen]\n", "[listen]\ntcp = true\n"))
    assert remote.listen is not None and remote.listen.tcp
    assert parse_config(REMOTE).listen.tcp is False  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"link\[1\]\.transport: .*expected \"udp\" or \"tcp\""):
        parse_config(LOCAL.replace('name = "lte"\n', 'name = "lte"\ntransport = "quic"\n'))


def test_ipv6_everywhere() -> None:
    text = f"""\
role = "local"
private_key = "{LOCAL_PRIVATE}"
[[peer]]
public_key = "{REMOTE_PUBLIC}"
[tunnel]
address = ["fd00:99::2/64", "10.99.0.2/30"]
mtu = 1280
routes = ["fd00:2::/64", "10.2.0.0/24"]
[[link]]
name = "fibre"
source = "2001:db8:1::2"
remote = "[2001:db8::1]:7100"
metric = 10
[[link]]
name = "backup"
interface = "eth2"
remote = "vpn.example.net:7100"
"""
    config = parse_config(text)
    assert [str(a) for a in config.tunnel.addresses] == ["fd00:99::2/64", "10.99.0.2/30"]
    fibre, backup = config.links
    assert fibre.remote == ("2001:db8::1", 7100)
    assert fibre.remote_text == "[2001:db8::1]:7100"
    assert fibre.metric == 10
    assert backup.remote == ("vpn.example.net", 7100)


def test_listen_ipv6_wildcard() -> None:
    config = parse_config(REMOTE.replace('"0.0.0.0"', '"::"'))
    assert config.listen is not None and config.listen.address == "::"


@pytest.mark.parametrize(
    ("text", "bps"),
    [("20mbit", 20_000_000), ("1.5Mbit", 1_500_000), ("100 kbit", 100_000), ("1gbit", 10**9)],
)
def test_rates(text: str, bps: int) -> None:
    assert parse_rate(text) == bps


def test_rate_format_round_trip() -> None:
    for bps in (1_000, 20_000_000, 1_500_000, 2 * 10**9):
        assert parse_rate(format_rate(bps)) == bps


# -- every class of error --------------------------------------------------------------


def _links(n: int) -> str:
    return "".join(
        f'[[link]]\nname = "l{i}"\ninterface = "eth{i}"\nremote = "198.51.100.1:7100"\n'
        for i in range(n)
    )


ERRORS: list[tuple[str, str, str, str]] = [
    # (id, config text, field, a fragment of the message)
    ("toml-syntax", 'role = "local"\n[tunnel\n', "line 2, column 8", "expected valid TOML"),
    (
        "toml-duplicate",
        'role = "local"\nrole = "remote"\n',
        "line 2, column 16",
        "overwrite a value",
    ),
    (
        "role-missing",
        "[tunnel]\naddress = '10.0.0.1/30'\n",
        "role",
        'missing; expected role = "local"',
    ),
    ("role-bad", REMOTE.replace('"remote"', '"server"'), "role", '"server" is not a role'),
    ("unknown-top", "colour = 1\n" + REMOTE, "colour", "unknown key"),
    (
        "unknown-near",
        REMOTE.replace("[listen]", "[listen]\nprot = 1"),
        "listen.prot",
        'did you mean "port"',
    ),
    ("tunnel-missing", 'role = "remote"\n[listen]\nport = 1\n', "tunnel", "missing"),
    ("tunnel-not-table", 'role = "remote"\ntunnel = 3\n', "tunnel", "3 is an integer"),
    (
        "address-missing",
        REMOTE.replace('address = "10.99.0.1/30"', ""),
        "tunnel.address",
        "missing",
    ),
    (
        "address-no-prefix",
        REMOTE.replace("10.99.0.1/30", "10.99.0.1"),
        "tunnel.address",
        "has no prefix length",
    ),
    (
        "address-garbage",
        REMOTE.replace("10.99.0.1/30", "10.99.0.300/30"),
        "tunnel.address",
        "is not an address/prefix",
    ),
    (
        "address-list-item",
        REMOTE.replace('"10.99.0.1/30"', '["10.99.0.1/30", 7]'),
        "tunnel.address[1]",
        "7 is an integer",
    ),
    (
        "address-twice",
        REMOTE.replace('"10.99.0.1/30"', '["10.99.0.1/30", "10.99.0.1/30"]'),
        "tunnel.address[1]",
        "listed twice",
    ),
    (
        "name-long",
        REMOTE.replace("[tunnel]", '[tunnel]\nname = "averyveryverylongname"'),
        "tunnel.name",
        "expected 1..15",
    ),
    (
        "name-slash",
        REMOTE.replace("[tunnel]", '[tunnel]\nname = "br/0"'),
        "tunnel.name",
        "not a valid interface name",
    ),
    (
        "mtu-type",
        REMOTE.replace("[tunnel]", '[tunnel]\nmtu = "1400"'),
        "tunnel.mtu",
        '"1400" is a string; expected an integer 576..9000',
    ),
    (
        "mtu-range",
        REMOTE.replace("[tunnel]", "[tunnel]\nmtu = 100"),
        "tunnel.mtu",
        "100 is out of range",
    ),
    (
        "mtu-ipv6",
        REMOTE.replace('"10.99.0.1/30"', '"fd00::1/64"').replace(
            "[tunnel]", "[tunnel]\nmtu = 1200"
        ),
        "tunnel.mtu",
        "below 1280",
    ),
    (
        "route-host-bits",
        REMOTE.replace("[tunnel]", '[tunnel]\nroutes = ["10.2.0.1/24"]'),
        "tunnel.routes[0]",
        'host bits set; expected the prefix "10.2.0.0/24"',
    ),
    (
        "routes-not-list",
        REMOTE.replace("[tunnel]", '[tunnel]\nroutes = "10.2.0.0/24"'),
        "tunnel.routes",
        "expected a list",
    ),
    (
        "scheduler",
        REMOTE + '[session]\nscheduler = "fastest"\n',
        "session.scheduler",
        '"fastest" is unknown; expected one of',
    ),
    (
        "keepalive-range",
        REMOTE + "[session]\nkeepalive_interval = 0\n",
        "session.keepalive_interval",
        "out of range",
    ),
    (
        "early-drop-range",
        REMOTE + "[session]\nearly_drop = 1\n",
        "session.early_drop",
        "out of range",
    ),
    (
        "delay-floor-range",
        REMOTE + "[session]\ndelay_floor = 5\n",
        "session.delay_floor",
        "out of range",
    ),
    (
        "dead-below-keepalive",
        REMOTE + "[session]\nkeepalive_interval = 0.5\ndead_interval = 0.4\n",
        "session.dead_interval",
        "not above keepalive_interval",
    ),
    ("listen-missing", REMOTE.split("[listen]")[0], "listen", "missing"),
    (
        "listen-on-local",
        LOCAL + "[listen]\nport = 7100\n",
        "listen",
        'not allowed for role "local"',
    ),
    (
        "listen-address",
        REMOTE.replace('"0.0.0.0"', '"localhost"'),
        "listen.address",
        "is not an IP address",
    ),
    ("listen-port", REMOTE.replace("7100", "70000"), "listen.port", "70000 is out of range"),
    ("link-on-remote", REMOTE + _links(1), "link", 'not allowed for role "remote"'),
    ("link-missing", LOCAL.split("[[link]]")[0], "link", "at least one [[link]]"),
    (
        "link-too-many",
        LOCAL.split("[[link]]")[0] + _links(17),
        "link",
        "17 links; expected at most 16",
    ),
    ("link-name-missing", LOCAL.replace('name = "lte"', ""), "link[1].name", "missing"),
    (
        "link-name-dup",
        LOCAL.replace('"lte"', '"dsl"'),
        "link[1].name",
        "already the name of link[0]",
    ),
    (
        "link-unpinned",
        LOCAL.replace('interface = "wwan0"', ""),
        "link[1]",
        "needs interface or source",
    ),
    (
        "link-no-port",
        LOCAL.replace('remote = "198.51.100.1:7100"\nrate', 'remote = "1.2.3.4"\nrate'),
        "link[0].remote",
        '"1.2.3.4" has no port; expected "HOST:PORT"',
    ),
    (
        "link-v6-no-brackets",
        LOCAL.replace('"198.51.100.1:7100"\n\n', '"2001:db8::1"\n\n').replace(
            'interface = "wwan0"\nremote = "198.51.100.1:7100"',
            'interface = "wwan0"\nremote = "2001:db8::1"',
        ),
        "link[1].remote",
        '"[2001:db8::1]:PORT"',
    ),
    (
        "link-bad-port",
        LOCAL.replace(
            'wwan0"\nremote = "198.51.100.1:7100"', 'wwan0"\nremote = "198.51.100.1:99999"'
        ),
        "link[1].remote",
        "port '99999' is invalid",
    ),
    (
        "link-bad-host",
        LOCAL.replace('wwan0"\nremote = "198.51.100.1:7100"', 'wwan0"\nremote = "bad_host!:7100"'),
        "link[1].remote",
        "is not a host name or IP",
    ),
    (
        "link-family",
        LOCAL.replace('remote = "198.51.100.1:7100"\nrate', 'remote = "[2001:db8::1]:7100"\nrate'),
        "link[0].remote",
        "is IPv6 but source is IPv4",
    ),
    (
        "link-source",
        LOCAL.replace('"192.0.2.2"', '"eth1"'),
        "link[0].source",
        "is not an IP address",
    ),
    ("link-rate", LOCAL.replace('"20mbit"', '"20mbps"'), "link[0].rate", '"20mbps" is not a rate'),
    ("link-rate-type", LOCAL.replace('"20mbit"', "20"), "link[0].rate", "20 is an integer"),
    (
        "link-metric",
        LOCAL.replace('rate = "20mbit"', "metric = 300"),
        "link[0].metric",
        "300 is out of range",
    ),
    (
        "link-unknown-key",
        LOCAL.replace('rate = "20mbit"', "weight = 3"),
        "link[0].weight",
        "unknown key",
    ),
    (
        "link-same-pin",
        LOCAL.replace(
            'name = "lte"\ninterface = "wwan0"',
            'name = "lte"\ninterface = "eth1"\nsource = "192.0.2.2"',
        ),
        "link[1]",
        "same interface, source and remote as link[0]",
    ),
]


@pytest.mark.parametrize(
    ("text", "field", "fragment"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error_is_one_line_naming_the_field(text: str, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="site.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"site.toml: {field}: "), message
    assert fragment in message, message
    assert "expected" in message, message
    assert info.value.field == field


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"^nope\.toml: no such file; expected"):
        load_config("nope.toml")


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path)


# -- through the real CLI ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, str, str]]:
    """`braid check` on every ERRORS case, as real subprocesses run concurrently."""
    folder = tmp_path_factory.mktemp("configs")
    running = {}
    for name, text, _, _ in ERRORS:
        path = folder / f"{name}.toml"
        path.write_text(text)
        running[name] = (
            path,
            subprocess.Popen(
                [sys.executable, "-m", "braid", "check", str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            ),
        )
    results = {}
    for name, (path, proc) in running.items():
        out, err = proc.communicate(timeout=60)
        results[name] = (path, proc.returncode, out, err)
    return results


@pytest.mark.parametrize(
    ("name", "field", "fragment"), [(e[0], e[2], e[3]) for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_cli_check_rejects_with_exit_2(
    cli_results: dict[str, tuple[Path, int, str, str]], name: str, field: str, fragment: str
) -> None:
    path, code, stdout, stderr = cli_results[name]
    assert code == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{path}: {field}: "), lines[0]
    assert fragment in lines[0]
    assert "Traceback" not in stderr
    assert stdout == ""


def test_cli_up_rejects_invalid_config_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(LOCAL.replace('"20mbit"', '"fast"'))
    result = run_cli("up", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'{path}: link[0].rate: "fast" is not a rate; expected a rate like "20mbit" (units kbit, mbit, gbit)'
    ]


def test_cli_check_missing_file() -> None:
    result = run_cli("check", "/nonexistent/site.toml")
    assert result.returncode == 2
    assert (
        result.stderr
        == "/nonexistent/site.toml: no such file; expected the path of a TOML config\n"
    )


def test_cli_check_examples() -> None:
    for name, role in (("local.toml", "local"), ("remote.toml", "remote")):
        result = run_cli("check", str(EXAMPLES / name))
        assert result.returncode == 0, result.stderr
        assert f"valid {role} portal config" in result.stdout
        assert result.stderr == ""
    result = run_cli("check", str(EXAMPLES / "local.toml"))
    assert "link 0 dsl: dev eth1 src 192.0.2.2 -> 198.51.100.1:7100 rate 20mbit" in result.stdout


# -- keys, peers, mode ------------------------------------------------------------------


def _key_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "key"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_security_values() -> None:
    import base64

    local = parse_config(LOCAL)
    assert local.security is not None
    assert local.security.private_key == base64.b64decode(LOCAL_PRIVATE)
    assert local.security.encryption is True
    assert local.security.rekey_after_time == 120.0
    (peer,) = local.security.peers
    assert peer.public_key == base64.b64decode(REMOTE_PUBLIC)
    assert peer.allowed_ips == () and peer.preshared_key is None
    remote = parse_config(REMOTE)
    assert remote.security is not None
    (site,) = remote.security.peers
    assert site.name == "site"
    assert site.allowed_ips == (ipaddress.ip_network("10.1.0.0/24"),)


def test_auth_only_and_rekey_interval() -> None:
    top = parse_config(LOCAL.replace('role = "local"', 'role = "local"\nencryption = false'))
    assert top.security is not None and top.security.encryption is False
    session = parse_config(LOCAL + "[session]\nencryption = false\nrekey_interval = 5\n")
    assert session.security is not None
    assert session.security.encryption is False
    assert session.security.rekey_after_time == 5.0


def test_key_file_mode_600_is_read_relative_to_the_config(tmp_path: Path) -> None:
    _key_file(tmp_path, LOCAL_PRIVATE, 0o600)
    text = LOCAL.replace(f'private_key = "{LOCAL_PRIVATE}"', 'private_key_file = "key"')
    (tmp_path / "site.toml").write_text(text)
    config = load_config(tmp_path / "site.toml")
    assert config.security is not None
    assert config.security.private_key == parse_config(LOCAL).security.private_key  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _key_file(tmp_path, LOCAL_PRIVATE, mode)
    text = LOCAL.replace(f'private_key = "{LOCAL_PRIVATE}"', f'private_key_file = "{path}"')
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("<config>: private_key_file: ")
    assert f"chmod 600 {path}" in message


@pytest.mark.parametrize(
    ("edit", "field", "fragment"),
    [
        ((f'private_key = "{LOCAL_PRIVATE}"\n', ""), "private_key", "missing"),
        ((f'private_key = "{LOCAL_PRIVATE}"', 'private_key = "abc"'), "private_key", "base64"),
        (
            (
                f'private_key = "{LOCAL_PRIVATE}"',
                f'private_key = "{LOCAL_PRIVATE}"\nprivate_key_file = "/k"',
            ),
            "private_key_file",
            "given together",
        ),
        ((f'[[peer]]\npublic_key = "{REMOTE_PUBLIC}"\n', ""), "peer", "missing"),
        ((REMOTE_PUBLIC, LOCAL_PUBLIC), "peer[0].public_key", "own public key"),
        ((REMOTE_PUBLIC, "Zm9v"), "peer[0].public_key", "not a key"),
        (
            (f'public_key = "{REMOTE_PUBLIC}"', f'public_key = "{REMOTE_PUBLIC}"\nkey = 1'),
            "peer[0].key",
            "unknown key",
        ),
        (
            ('role = "local"', 'role = "local"\nencryption = "yes"'),
            "encryption",
            "expected true or false",
        ),
    ],
)
def test_local_security_errors(edit: tuple[str, str], field: str, fragment: str) -> None:
    text = LOCAL.replace(*edit)
    assert text != LOCAL
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"<config>: {field}: "), message
    assert fragment in message


@pytest.mark.parametrize(
    ("edit", "field", "fragment"),
    [
        (('allowed_ips = ["10.1.0.0/24"]\n', ""), "peer[0].allowed_ips", "missing"),
        (("10.1.0.0/24", "10.1.0.1/24"), "peer[0].allowed_ips[0]", "host bits"),
        (
            (
                "[tunnel]",
                f'[[peer]]\npublic_key = "{LOCAL_PUBLIC}"\nallowed_ips = ["10.3.0.0/24"]\n[tunnel]',
            ),
            "peer[1].public_key",
            "already the key of peer[0]",
        ),
        (
            (
                "[tunnel]",
                f'[[peer]]\npublic_key = "{REMOTE_PUBLIC}"\nallowed_ips = ["10.5.0.0/24"]\n[tunnel]',
            ),
            "peer[1].public_key",
            "own public key",
        ),
    ],
)
def test_remote_security_errors(edit: tuple[str, str], field: str, fragment: str) -> None:
    text = REMOTE.replace(*edit)
    assert text != REMOTE
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"<config>: {field}: "), message
    assert fragment in message


def test_overlapping_allowed_ips_are_refused() -> None:
    other = "BAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiM="
    text = REMOTE.replace(
        "[tunnel]",
        f'[[peer]]\npublic_key = "{other}"\nallowed_ips = ["10.1.0.128/25"]\n[tunnel]',
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert str(info.value).startswith("<config>: peer[1].allowed_ips: ")
    assert "overlaps" in str(info.value)


def test_loss_recovery_settings_reach_the_core(tmp_path: Path) -> None:
    # issue 7: nack, loss_predictor, loss_model, fec, gap_trace; per class nack and fec.
    model = tmp_path / "model.json"
    model.write_text('{"weights": [1, 2, 3, 4, 5], "threshold": 0.7}')
    text = (
        REMOTE
        + f'[session]\nnack = true\nloss_predictor = true\nloss_model = "{model}"\n'
        + f'fec = "auto"\ngap_trace = "{tmp_path / "gaps.jsonl"}"\n'
        + '[[class]]\nname = "voice"\nfec = true\nnack = false\n[class.match]\nproto = 17\n'
    )
    settings = parse_config(text).session
    core = settings.to_session_config()
    assert (core.nack, core.loss_predictor, core.fec, core.gap_trace) == ("on", True, "auto", True)
    assert core.loss_model is not None and core.loss_model.threshold == 0.7
    assert (core.classes[0].fec, core.classes[0].nack) == (True, False)
    assert settings.gap_trace == str(tmp_path / "gaps.jsonl")
    defaults = parse_config(REMOTE).session.to_session_config()
    assert (defaults.nack, defaults.loss_predictor, defaults.fec) == ("auto", True, "off")
    assert defaults.loss_model is None
    for value, mode in (("false", "off"), ('"off"', "off"), ('"auto"', "auto"), ('"on"', "on")):
        parsed = parse_config(REMOTE + f"[session]\nnack = {value}\n").session
        assert parsed.to_session_config().nack == mode
    with pytest.raises(ConfigError, match=r'session\.nack: "yes" is unknown; expected one of'):
        parse_config(REMOTE + '[session]\nnack = "yes"\n')
    with pytest.raises(ConfigError, match=r"session\.nack: 1 is an integer; expected true, false"):
        parse_config(REMOTE + "[session]\nnack = 1\n")
    split = parse_config(REMOTE + '[session]\nsplit_below = "2mbit"\n').session
    assert split.to_session_config().split_below == 2_000_000
    with pytest.raises(ConfigError, match=r"session\.split_below: 2 is not a rate"):
        parse_config(REMOTE + "[session]\nsplit_below = 2\n")
    with pytest.raises(ConfigError, match=r'session\.fec: "x" is unknown; expected one of "off"'):
        parse_config(REMOTE + '[session]\nfec = "x"\n')
    with pytest.raises(ConfigError, match=r"session\.loss_model: cannot read .*braid train"):
        parse_config(REMOTE + f'[session]\nloss_model = "{tmp_path / "none.json"}"\n')
    model.write_text("{}")
    with pytest.raises(ConfigError, match=r"session\.loss_model: loss model: bad file"):
        parse_config(REMOTE + f'[session]\nloss_model = "{model}"\n')


def test_queue_management_settings_reach_the_core() -> None:
    text = REMOTE + "[session]\nearly_drop = 0\nearly_drop_interval = 0.25\nqueue_limit = 0.1\n"
    session = parse_config(text).session.to_session_config()
    assert (session.early_drop, session.early_drop_interval, session.queue_limit) == (0, 0.25, 0.1)
    defaults = parse_config(REMOTE).session.to_session_config()
    core = SessionConfig()
    assert (defaults.early_drop, defaults.early_drop_interval) == (
        core.early_drop,
        core.early_drop_interval,
    )


def test_equalize_reaches_the_core_and_a_bad_mode_names_the_choices() -> None:
    # issue 5: egress delay equalization, "bulk" by default (with or without [session]).
    assert parse_config(REMOTE).session.to_session_config().equalize == "bulk"
    assert parse_config(REMOTE + "[session]\n").session.to_session_config().equalize == "bulk"
    for mode in ("all", "tcp", "ack", "bulk"):
        settings = parse_config(REMOTE + f'[session]\nequalize = "{mode}"\n').session
        assert settings.to_session_config().equalize == mode
    # A class's own "ack" or "off" for its TCP connections.
    text = REMOTE + '[[class]]\nname = "backup"\nequalize = "ack"\n[class.match]\nports = 873\n'
    core = parse_config(text).session.to_session_config()
    assert core.equalize == "bulk" and core.classes[0].equalize == "ack"
    assert parse_config(text.replace('"ack"', '"off"')).session.classes[0].equalize == "off"
    with pytest.raises(
        ConfigError, match=r'class\[0\]\.equalize: "tcp" is unknown; expected "ack" or "off"'
    ):
        parse_config(text.replace('"ack"', '"tcp"'))
    with pytest.raises(
        ConfigError,
        match=r'session\.equalize: "slow" is unknown; expected one of "bulk", "tcp", "ack", "all"',
    ):
        parse_config(REMOTE + '[session]\nequalize = "slow"\n')
    with pytest.raises(ConfigError, match=r"session\.equalize: 1 is an integer"):
        parse_config(REMOTE + "[session]\nequalize = 1\n")
    # "bulk"'s memory of host pairs: 600 s by default, 0 turns it off.
    assert parse_config(REMOTE).session.to_session_config().equalize_remember == 600.0
    settings = parse_config(REMOTE + "[session]\nequalize_remember = 0\n").session
    assert settings.to_session_config().equalize_remember == 0.0
    with pytest.raises(
        ConfigError, match=r"session\.equalize_remember: .*out of range.*0\.\.86400 \(0: off\)"
    ):
        parse_config(REMOTE + "[session]\nequalize_remember = -1\n")


@pytest.mark.parametrize(("key", "bad"), [("compress_headers", '"no"'), ("ack_filter", "1")])
def test_session_switches_reach_the_core(key: str, bad: str) -> None:
    # Header compression and ACK filtering, on by default; a value that is not a boolean
    # names the field.
    assert getattr(parse_config(REMOTE).session.to_session_config(), key) is True
    settings = parse_config(REMOTE + f"[session]\n{key} = false\n").session
    assert getattr(settings.to_session_config(), key) is False
    with pytest.raises(ConfigError, match=rf"session\.{key}: .*expected true or false"):
        parse_config(REMOTE + f"[session]\n{key} = {bad}\n")


def test_clamp_mss_follows_the_tunnel_mtu() -> None:
    """On by default: the core gets the TUN MTU - 40 (`braid.control.up`), `braid check`
    says so; false turns it off; a value that is not a boolean names the field."""
    from braid.control.config import describe
    from braid.control.up import _session_config

    config = parse_config(REMOTE)
    assert config.session.clamp_mss is True
    assert _session_config(config).clamp_mss == config.tunnel.mtu - 40
    assert f"TCP MSS clamped to {config.tunnel.mtu - 40}" in "\n".join(describe(config))
    off = parse_config(REMOTE + "[session]\nclamp_mss = false\n")
    assert _session_config(off).clamp_mss == 0
    assert "MSS" not in "\n".join(describe(off))
    with pytest.raises(ConfigError, match=r"session\.clamp_mss: .*expected true or false"):
        parse_config(REMOTE + "[session]\nclamp_mss = 1360\n")
