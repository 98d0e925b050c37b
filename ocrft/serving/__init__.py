"""task=serve's HTTP machinery (OpenAI chat-completions protocol, backpressure, batching)."""
