"""A POS terminal simulator: a client of the gateway's terminal protocol only.

It imports nothing from pos_gateway, so it exercises the protocol as an outside
terminal would.
"""
