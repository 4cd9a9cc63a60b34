"""Drivers: the TUN device (`tun`), UDP path sockets (`udp`), in-memory fakes of both
(`memory`), and the interfaces the runtime programs against (`base`)."""
