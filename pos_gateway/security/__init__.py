"""PIN blocks, PIN hashing, request signing and key wrapping."""
