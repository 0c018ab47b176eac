"""Pure business rules: no I/O, no asyncio, no SQL."""
