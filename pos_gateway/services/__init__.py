"""Use cases: plain inputs, domain rules and store calls, plain results. No HTTP here."""
