"""Custom models against a real llama-server: the ``ollama create -f Modelfile`` request sequence
through the official client, then a chat whose prompt must be exactly the one the base model gets
when the client spells the layers out itself (same prompt tokens, same greedy answer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from support.clients import sync_client
from support.llama import LlamaServer
from support.shim import ShimThread

SMOL = "SmolLM2-135M-Instruct.Q4_1:latest"
SYSTEM = "You are a pirate. Answer in one short sentence."
MESSAGES = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Captain Smol, arr."}]
PARAMETERS = {"num_predict": 6, "temperature": 0, "seed": 7}
HELLO = {"role": "user", "content": "Where is the treasure?"}


@pytest.fixture(scope="module")
def client(llama_single: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ollama.Client]:
    data_dir = tmp_path_factory.mktemp("store")
    with ShimThread("--backend", llama_single.url, "--data-dir", str(data_dir)) as url, \
            sync_client(url, timeout=300) as api:
        yield api


def test_the_modelfile_sequence_works_against_llama_server(client: ollama.Client) -> None:
    # What `ollama create pirate -f Modelfile` sends for FROM/SYSTEM/PARAMETER/MESSAGE lines.
    progress = list(client.create(model="pirate", from_=SMOL, system=SYSTEM, parameters=PARAMETERS,
                                  messages=MESSAGES, stream=True))
    assert progress[-1].status == "success"
    assert "pirate:latest" in {m.model for m in client.list().models}
    shown = client.show("pirate")
    assert shown.details.parent_model == SMOL
    assert f"SYSTEM {SYSTEM}" in (shown.modelfile or "")
    assert client.copy("pirate", "pirate-copy").status == "success"
    assert client.delete("pirate-copy").status == "success"
    assert "pirate-copy:latest" not in {m.model for m in client.list().models}


def test_a_custom_model_chat_is_the_base_chat_with_the_layers_spelled_out(client: ollama.Client) -> None:
    client.create(model="pirate", from_=SMOL, system=SYSTEM, parameters=PARAMETERS, messages=MESSAGES)
    custom = client.chat(model="pirate", messages=[HELLO])
    spelled = client.chat(model=SMOL, messages=[{"role": "system", "content": SYSTEM}, *MESSAGES, HELLO],
                          options=PARAMETERS)
    assert custom.model == "pirate"
    assert custom.prompt_eval_count == spelled.prompt_eval_count
    assert custom.message.content == spelled.message.content
    assert custom.eval_count is not None
    assert custom.eval_count <= PARAMETERS["num_predict"]  # the default applied


def test_the_custom_model_survives_a_restart(llama_single: LlamaServer, tmp_path: Path) -> None:
    for attempt in range(2):
        with ShimThread("--backend", llama_single.url, "--data-dir", str(tmp_path)) as url, \
                sync_client(url, timeout=300) as api:
            if attempt == 0:
                api.create(model="keeper", from_=SMOL, system=SYSTEM)
            else:
                assert "keeper:latest" in {m.model for m in api.list().models}
