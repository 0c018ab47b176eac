"""The fault suite runs only when selected (`make test-faults`, `-m faults`)."""
