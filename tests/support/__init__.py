"""Test helpers that stand up upstream backends: real llama-server processes and an LM Studio emulation."""
