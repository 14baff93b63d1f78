"""What a pool does across its connections: the directory of ids, the health watch, fan-out."""
