"""Configuration (TOML), the `braid` CLI, key tools and `braid up`."""
