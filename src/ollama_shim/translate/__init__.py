"""The pure translation core: request mapping (``request``, ``messages``, ``options``, ``images``,
``keep_alive``), answer mapping (``stream``, ``response``, ``think_tags``, ``tool_calls``, ``embed``) and
the model catalog (``catalog``, ``names``). No I/O, no logging, no environment reads.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``, ``ollama_shim.dialect``,
``ollama_shim.timefmt``.
"""
