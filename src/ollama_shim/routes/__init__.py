"""The HTTP handlers, one module per group of endpoints, plus their shared plumbing (``http``,
``state``, ``relay``) and middlewares (``guard``, ``lifecycle``). Handlers read: parse, resolve,
translate, relay, respond.

May import: aiohttp.web, msgspec, stdlib, ``ollama_shim.*``.
"""
