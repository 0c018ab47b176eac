"""ISO 8583 front end (DESIGN §9): codec and MAC, message mapping, TCP listener."""
