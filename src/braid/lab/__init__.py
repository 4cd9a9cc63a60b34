"""braid lab: emulated multi-link testbed, baselines (links alone, MPTCP), demo and evaluation.

Modules: ``netns`` (namespaces, tools), ``topology`` (the five namespaces and N links),
``relay`` (the AF_PACKET delay element), ``emulator`` (rate, loss, cuts, delay per link),
``scenario`` (TOML scenarios), ``traffic`` (iperf3, ping), ``portals`` (``braid up``
processes), ``experiment`` (series and runs), ``report`` (tables, plots, JSON), ``demo``,
``evaluation`` and ``cli`` (``braid lab ...``). See docs/lab.md.
"""
