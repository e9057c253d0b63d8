"""ollama-shim: the Ollama API in front of any OpenAI-compatible model server."""

__version__ = "0.1.0"
