"""The wire: pure request building (``requests``) and response reading (``responses``), no I/O."""
