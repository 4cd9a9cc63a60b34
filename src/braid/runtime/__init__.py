"""The asyncio daemon: portals that drive `TunnelSession`s over the drivers (`portal`),
the signal-handling main loop (`daemon`) and the JSON statistics writer (`stats`)."""
