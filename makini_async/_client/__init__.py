"""One connection's machinery: transport, retries, tokens, shared state, sending, listing."""
