"""Wire shapes at both edges: ``ollama`` (what clients send and get), ``openai`` (what backends take
and give), ``backends`` (native metadata of llama.cpp and LM Studio). Typed msgspec structs only.

May import: msgspec, stdlib.
"""
