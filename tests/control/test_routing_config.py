"""[api] and [routing] in the config: values, defaults and one-line errors naming the field."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from braid.control.config import ConfigError, parse_config
from braid.runtime.routing import Routing

PRIVATE = "YGZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg0Q="
PUBLIC = "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw="

REMOTE = f"""\
role = "remote"
private_key = "{PRIVATE}"
[[peer]]
public_key = "{PUBLIC}"
allowed_ips = ["10.1.0.0/24"]
[tunnel]
address = "10.99.0.1/30"
routes = ["10.1.0.0/24"]
[listen]
port = 7100
"""

LOCAL = f"""\
role = "local"
private_key = "{PRIVATE}"
[[peer]]
public_key = "{PUBLIC}"
[tunnel]
address = "10.99.0.2/30"
[[link]]
name = "wan"
interface = "eth1"
remote = "198.51.100.1:7100"
"""

TOKEN = "0123456789abcdef-token"


def test_defaults_no_api_no_routing() -> None:
    config = parse_config(REMOTE)
    assert config.api is None
    assert config.routing.mode == "none"
    assert Routing.from_config(config).describe() == "routing none"


def test_api_values() -> None:
    config = parse_config(REMOTE + f'[api]\ntoken = "{TOKEN}"\n')
    assert config.api is not None
    assert (config.api.address, config.api.port, config.api.token) == ("127.0.0.1", 7180, TOKEN)
    assert TOKEN not in repr(config.api)  # never logged by accident
    config = parse_config(REMOTE + f'[api]\nlisten = "::1"\nport = 9000\ntoken = "{TOKEN}"\n')
    assert config.api is not None and (config.api.address, config.api.port) == ("::1", 9000)


def test_api_token_file(tmp_path: Path) -> None:
    token = tmp_path / "api.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    config = parse_config(
        REMOTE + f'[api]\ntoken_file = "{token}"\n', source=str(tmp_path / "r.toml")
    )
    assert config.api is not None and config.api.token == TOKEN
    token.chmod(0o644)
    with pytest.raises(ConfigError, match=r"api.token_file: .*chmod 600"):
        parse_config(REMOTE + f'[api]\ntoken_file = "{token}"\n')


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ("[api]\n", r"api\.token: missing; expected token = "),
        ('[api]\ntoken = "short"\n', r"api\.token: too short"),
        (f'[api]\ntoken = "{TOKEN}"\nlisten = "localhost"\n', r"api\.listen: .* not an IP address"),
        (f'[api]\ntoken = "{TOKEN}"\nport = 0\n', r"api\.port: 0 is out of range"),
        (f'[api]\ntoken = "{TOKEN}"\nprot = 1\n', r"api\.prot: unknown key; did you mean"),
        ('[routing]\nmode = "bridge"\n', r'routing\.mode: "bridge" is unknown; expected one of'),
        (
            '[routing]\nmode = "single-interface"\nprefixes = ["1.2.3.4/32"]\n',
            r"routing\.interface: missing",
        ),
        (
            '[routing]\nmode = "nat"\nprefixes = "10.0.0.0/8"\n',
            r"routing\.prefixes: .* expected a list",
        ),
        ('[routing]\nmode = "nat"\ntable = 254\n', r"routing\.table: 254 is a system table"),
    ],
)
def test_remote_errors(extra: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        parse_config(REMOTE + extra)
    assert "\n" not in str(info.value)


def test_nat_defaults_to_the_tunnel_routes() -> None:
    config = parse_config(REMOTE + '[routing]\nmode = "nat"\ninterface = "eth0"\n')
    assert config.routing.prefixes == (ipaddress.ip_network("10.1.0.0/24"),)
    routing = Routing.from_config(config)
    assert routing.describe() == "routing nat for 10.1.0.0/24 on eth0"
    assert routing.listen_port == 7100


def test_local_modes() -> None:
    config = parse_config(
        LOCAL + '[routing]\nmode = "routed"\ninterface = "lan0"\nprefixes = ["198.51.100.10/32"]\n'
    )
    assert config.routing.mode == "routed" and config.routing.table == 7100
    with pytest.raises(ConfigError, match=r'routing\.mode: "nat" is a remote portal mode'):
        parse_config(LOCAL + '[routing]\nmode = "nat"\nprefixes = ["10.0.0.0/8"]\n')
    with pytest.raises(ConfigError, match=r"routing\.interface: missing; .* the clients are on"):
        parse_config(LOCAL + '[routing]\nmode = "routed"\nprefixes = ["198.51.100.10/32"]\n')
    with pytest.raises(ConfigError, match=r"routing\.prefixes: missing"):
        parse_config(LOCAL + '[routing]\nmode = "routed"\ninterface = "lan0"\n')


def test_routing_none_applies_nothing() -> None:
    routing = Routing(mode="none", role="remote", tunnel="braid0")
    routing.apply()  # no privileges needed, nothing touched
    routing.remove()
    with pytest.raises(ValueError, match="mode"):
        Routing(mode="bogus", role="remote", tunnel="braid0")
