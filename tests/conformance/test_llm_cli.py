"""Conformance: the ``llm`` command line with the ``llm-ollama`` plugin against the shim.

Clients: ``llm==0.36`` and ``llm-ollama==0.19.1`` (pinned in the ``conformance`` extra), run as
the user runs them, ``python -m llm ...``, in a subprocess whose ``LLM_USER_PATH`` is a fresh
temporary directory (its key store, logs database and the plugin's capability cache; the user's
home is never touched), with only the ``llm-ollama`` plugin loaded and ``OLLAMA_HOST`` set to the
shim. User flows, against the real llama-server:

- ``llm ollama models`` (``/api/tags`` + ``/api/show`` capabilities, cached by digest) and
  ``llm models`` (the plugin registers each completion model as ``ollama/<name>``);
- a prompt, streamed (the default) and ``--no-stream``; ``--schema`` structured output;
- ``llm embed`` with an embedding model;

against the scripted upstream (always thinks, always calls a tool):

- ``-o think true --functions ...``: the CLI runs the tool the model asks for, sends the result
  back and prints the final answer; the log (``llm logs --json``) and the upstream both show the
  result linked to its call; the thinking is printed.

Capabilities follow the backend: no ``tools`` for SmolLM2, whose ``/props`` says its template has
none; the embedding model keeps ``embedding`` once loaded (so ``llm embed`` accepts it); digests
stay the same when a router model loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support import always_tools as sc
from support.always_tools import ScriptedShim
from support.llama import LlamaServer

SMOL = "SmolLM2-135M-Instruct.Q4_1"
GEMMA = "gemma-3-270m-q4_k_m"
SMOL_EMBEDDING_LENGTH = 576
GREEDY = ("-o", "temperature", "0", "-o", "seed", "1")
WEATHER_TOOL = '''
def get_weather(city: str) -> str:
    "Get the current weather for a city."
    return "sunny in " + city
'''

Llm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def llm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llm-user-path")


def make_llm(url: str, home: Path) -> Llm:
    env = {
        **os.environ,
        "LLM_USER_PATH": str(home),
        "LLM_LOAD_PLUGINS": "llm-ollama",  # not every llm plugin installed in this environment
        "OLLAMA_HOST": url,
    }
    env.pop("OLLAMA_API_KEY", None)

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "llm", *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        if ok:
            assert done.returncode == 0, f"llm {' '.join(args)}: {done.stderr}"
        return done

    return run


def ollama_models(llm: Llm) -> dict[str, tuple[str, set[str]]]:
    """``llm ollama models`` as {model: (short digest, capabilities)}."""
    rows = llm("ollama", "models").stdout.splitlines()
    assert rows[0].split() == ["model", "digest", "capabilities"]
    table = {}
    for row in rows[1:]:
        if not row.strip():
            break
        name, digest, caps = row.split(None, 2)
        table[name] = (digest, {c.strip() for c in caps.split(",")})
    return table


@pytest.fixture(scope="module")
def smol(smol_url: str, llm_home: Path) -> Llm:
    return make_llm(smol_url, llm_home / "smol")


@pytest.fixture(scope="module")
def scripted_llm(scripted: ScriptedShim, llm_home: Path) -> Llm:
    return make_llm(scripted.url, llm_home / "scripted")


# ---------------------------------------------------------------------------
# Real llama-server
# ---------------------------------------------------------------------------


def test_ollama_models_lists_the_model_with_capabilities(smol: Llm) -> None:
    table = ollama_models(smol)
    assert list(table) == [f"{SMOL}:latest"]
    digest, caps = table[f"{SMOL}:latest"]
    assert len(digest) == 12
    assert "completion" in caps


def test_models_registers_the_completion_model(smol: Llm) -> None:
    lines = smol("models").stdout.splitlines()
    assert f"Ollama: ollama/{SMOL}:latest (aliases: ollama/{SMOL})" in lines


def test_prompt_streamed_and_not(smol: Llm) -> None:
    args = ("-m", f"ollama/{SMOL}", "-o", "num_predict", "8", *GREEDY, "Say hello.")
    streamed = smol(*args).stdout
    whole = smol("--no-stream", *args).stdout
    assert streamed.strip()
    assert whole == streamed


def test_schema_structured_output(smol: Llm) -> None:
    out = smol("-m", f"ollama/{SMOL}", "--schema", "name, country", "-o", "num_predict", "64", *GREEDY,
               "Name one city in France and its country.").stdout
    city = json.loads(out)
    assert set(city) == {"name", "country"}


def test_unknown_model_is_refused(smol: Llm) -> None:
    done = smol("-m", "ollama/no-such-model", "hi", ok=False)
    assert done.returncode != 0
    assert "Unknown model" in done.stderr


def test_tools_capability_follows_the_backend(smol: Llm, llama_single: LlamaServer) -> None:
    _, props = llama_single.get("/props")
    assert props["chat_template_caps"]["supports_tools"] is False  # what the backend says
    _, caps = ollama_models(smol)[f"{SMOL}:latest"]
    assert "tools" not in caps


def test_embed(embed_url: str, llm_home: Path) -> None:
    llm = make_llm(embed_url, llm_home / "embed")
    assert f"ollama/{SMOL}:latest" in llm("embed-models").stdout
    vector = json.loads(llm("embed", "-m", f"ollama/{SMOL}", "-c", "the cat sat").stdout)
    assert len(vector) == SMOL_EMBEDDING_LENGTH


def test_digest_is_stable_across_loads(router_url: str, llm_home: Path) -> None:
    llm = make_llm(router_url, llm_home / "router")
    short = ("-o", "num_predict", "2", *GREEDY, "hi")
    llm("-m", f"ollama/{GEMMA}", *short)  # loads gemma; SmolLM2 is not loaded (at most one model)
    before = ollama_models(llm)
    llm("-m", f"ollama/{SMOL}", *short)  # loads SmolLM2, unloads gemma
    after = ollama_models(llm)
    assert set(after) == set(before) == {f"{SMOL}:latest", f"{GEMMA}:latest"}
    assert {name: digest for name, (digest, _) in after.items()} == {
        name: digest for name, (digest, _) in before.items()}


# ---------------------------------------------------------------------------
# Scripted upstream: tools and thinking
# ---------------------------------------------------------------------------


def test_thinking_model_offers_think(scripted_llm: Llm) -> None:
    options = scripted_llm("models", "--options", "-m", f"ollama/{sc.MODEL}").stdout
    assert "think: boolean" in options
    assert "- tools" in options


def test_tool_round_trip_with_thinking(scripted_llm: Llm, scripted: ScriptedShim) -> None:
    done = scripted_llm("-m", f"ollama/{sc.MODEL}", "-o", "think", "true", "--functions", WEATHER_TOOL,
                        "What is the weather in Paris?")
    assert done.stdout.strip() == f"{sc.FINAL_PREFIX} sunny in Paris"
    assert sc.THOUGHT in done.stderr  # the CLI prints reasoning apart from the answer
    [exchange] = sc.tool_exchanges(scripted.last_chat_body())
    assert (exchange.call_name, exchange.call_arguments, exchange.result) == (
        "get_weather", {"city": "Paris"}, "sunny in Paris")
    [logged] = json.loads(scripted_llm("logs", "--json", "-n", "1").stdout)
    assert [(r["name"], r["output"]) for r in logged["tool_results"]] == [("get_weather", "sunny in Paris")]
