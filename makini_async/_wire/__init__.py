"""The wire: constants, pure request building, response reading, scrubbing; no I/O."""
