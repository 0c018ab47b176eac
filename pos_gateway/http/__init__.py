"""HTTP entry points: parse, call one service, render."""
