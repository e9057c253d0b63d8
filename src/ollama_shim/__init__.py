"""ollama-shim: the Ollama API in front of any OpenAI-compatible model server.

May import: nothing.
"""

__version__ = "0.1.0"
