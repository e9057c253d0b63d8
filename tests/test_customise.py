"""The pure side of custom models: names, checks, chains, and how a customisation changes requests."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ollama_shim.dialect import LLAMACPP, OPENAI
from ollama_shim.errors import BadRequest
from ollama_shim.translate.customise import (
    MAX_CHAIN,
    Customisation,
    CustomModel,
    apply_customisation,
    chain_of,
    checked_custom_model,
    customise_plan,
    customise_request,
    customised_openai_chat,
    flatten,
    is_valid_name,
    model_key,
    modelfile_of,
    parameters_text,
    show_response,
)
from ollama_shim.translate.request import Delivery, generate_request_to_openai
from ollama_shim.wire import ollama as ow

CUSTOM = Customisation(name="mario:latest", parent="base:latest", base="base", system="You are Mario.",
                       messages=(("user", "Who?"), ("assistant", "Mario!")),
                       parameters={"temperature": 0.2, "top_k": 9})
LAYER = [ow.RequestMessage(role="user", content="Who?"), ow.RequestMessage(role="assistant", content="Mario!")]
SYS = ow.RequestMessage(role="system", content="You are Mario.")


def _user(text: str = "Hi") -> ow.RequestMessage:
    return ow.RequestMessage(role="user", content=text)


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([_user()], [SYS, *LAYER, _user()]),
        ([ow.RequestMessage(role="system", content="Mine."), _user()],
         [ow.RequestMessage(role="system", content="Mine."), *LAYER, _user()]),
        ([_user("a"), ow.RequestMessage(role="system", content="late"), _user("b")],
         [SYS, *LAYER, _user("a"), ow.RequestMessage(role="system", content="late"), _user("b")]),
    ],
    ids=["system-added", "own-system-kept-first", "only-a-leading-system-counts"],
)
def test_apply_customisation_orders_messages(messages: list[ow.RequestMessage], expected: list[Any]) -> None:
    assert apply_customisation(ow.ChatRequest(model="mario", messages=messages), CUSTOM).messages == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (None, {"temperature": 0.2, "top_k": 9}),
        ({"temperature": 1.0}, {"temperature": 1.0, "top_k": 9}),
        ({"top_k": None, "seed": 3}, {"temperature": 0.2, "top_k": 9, "seed": 3}),
    ],
    ids=["defaults", "request-wins", "null-is-unset"],
)
def test_parameters_are_defaults_under_the_request_options(options: dict[str, Any] | None,
                                                            expected: dict[str, Any]) -> None:
    req = ow.ChatRequest(model="mario", messages=[_user()], options=options)
    assert apply_customisation(req, CUSTOM).options == expected


def test_no_customisation_leaves_the_request_as_it_is() -> None:
    req = ow.ChatRequest(model="m", messages=[_user()])
    assert customise_request(req, None) is req


@pytest.mark.parametrize(
    ("req", "system"),
    [
        (ow.GenerateRequest(model="m", prompt="p"), "You are Mario."),
        (ow.GenerateRequest(model="m", prompt="p", system="Mine."), "Mine."),
        (ow.GenerateRequest(model="m", prompt="p", raw=True), None),
        (ow.GenerateRequest(model="m", prompt="p", suffix="s"), None),
    ],
    ids=["default", "own", "raw", "suffix"],
)
def test_generate_takes_the_system_prompt_unless_raw_or_its_own(req: ow.GenerateRequest, system: str | None) -> None:
    out = customise_request(req, CUSTOM)
    assert isinstance(out, ow.GenerateRequest)
    assert (out.system, out.options) == (system, {"temperature": 0.2, "top_k": 9})


@pytest.mark.parametrize(("context", "with_layer"), [(None, True), ([1, 2], False)])
def test_generate_plans_get_the_messages_before_the_prompt(context: list[int] | None, with_layer: bool) -> None:
    req = customise_request(ow.GenerateRequest(model="m", prompt="p", context=context), CUSTOM)
    plan = customise_plan(generate_request_to_openai(req, "up", LLAMACPP, Delivery.STREAM), req, CUSTOM, LLAMACPP)
    sent = [(m.role, m.content) for m in plan.request.messages]
    layer = [("user", "Who?"), ("assistant", "Mario!")] if with_layer else []
    assert sent == [("system", "You are Mario."), *layer, ("user", "p")]


def test_openai_bodies_get_layers_and_defaults_in_the_backend_spelling() -> None:
    doc = {"model": "m", "messages": [{"role": "developer", "content": "d"}], "top_k": 1, "max_tokens": 5}
    custom = Customisation(name="x", parent="b", base="b", system="s", messages=(("user", "u"),),
                           parameters={"temperature": 0.5, "top_k": 3, "num_predict": 7, "repeat_penalty": 1.1})
    out = customised_openai_chat(doc, custom, OPENAI)
    assert out["messages"] == [{"role": "developer", "content": "d"}, {"role": "user", "content": "u"}]
    assert (out["temperature"], out["top_k"], out["max_tokens"]) == (0.5, 1, 5)
    assert "max_completion_tokens" not in out
    assert "repeat_penalty" not in out  # OpenAI takes neither here


# -- chains ---------------------------------------------------------------------------------


def _models(*pairs: tuple[str, str]) -> dict[str, CustomModel]:
    return {model_key(name): CustomModel(name=name + ":latest", base=base) for name, base in pairs}


def test_chain_of_a_backend_model_is_empty() -> None:
    assert chain_of("base", _models(("a", "base")).get) == []


def test_chain_follows_custom_models_down_to_the_backend_model() -> None:
    chain = chain_of("C", _models(("a", "base"), ("b", "a"), ("c", "B:latest")).get)
    assert [m.name for m in chain] == ["c:latest", "b:latest", "a:latest"]


def test_a_cycle_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="cycle: a:latest -> b:latest -> a:latest"):
        chain_of("a", _models(("a", "b"), ("b", "a")).get)


def test_a_chain_deeper_than_the_limit_is_a_bad_request() -> None:
    models = _models(*((f"m{i}", f"m{i + 1}") for i in range(MAX_CHAIN + 1)))
    with pytest.raises(BadRequest, match="more than"):
        chain_of("m0", models.get)


def test_flatten_inherits_and_overrides_layers() -> None:
    top = CustomModel(name="top:latest", base="mid", parameters={"temperature": 0.1})
    mid = CustomModel(name="mid:latest", base="base", system="S", messages=(("user", "u"),),
                      parameters={"temperature": 0.9, "top_k": 4}, license=("MIT",))
    custom = flatten([top, mid])
    assert (custom.parent, custom.base, custom.system) == ("mid:latest", "base", "S")
    assert (custom.messages, custom.license) == ((("user", "u"),), ("MIT",))
    assert custom.parameters == {"temperature": 0.1, "top_k": 4}


# -- names and checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "valid"),
    [("mario", True), ("user/mario:7b", True), ("hf.co/org/repo:Q4_K_M", True), ("localhost:8080/a/b:c", True),
     ("bad name", False), ("a/b/c/d", False), ("-x", False), ("x:", False), ("", False), ("x" * 81, False)],
)
def test_ollama_name_rules(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid


def test_names_match_as_ollama_matches_them() -> None:
    assert model_key("Mario") == model_key("library/mario:latest") == model_key("registry.ollama.ai/library/mario")


@pytest.mark.parametrize(
    ("parameters", "error"),
    [({"temperature": "hot"}, 'option "temperature" must be of type float32'),
     ({"num_ctx": 1.5e300 * 1e10}, 'option "num_ctx" must be of type integer'),
     ({"stop": [1]}, 'option "stop" must be of type array of strings'),
     ({"penalize_newline": True}, "unknown parameter 'penalize_newline'")],
)
def test_parameters_are_checked_as_options_are(parameters: dict[str, Any], error: str) -> None:
    with pytest.raises(BadRequest) as info:
        checked_custom_model("m", "base", parameters=parameters)
    assert info.value.message == error


def test_a_bare_stop_string_is_stored_as_a_list() -> None:
    assert checked_custom_model("m", "base", parameters={"stop": "END"}).parameters == {"stop": ["END"]}


# -- /api/show texts --------------------------------------------------------------------------


def test_parameters_text_pads_keys_and_repeats_lists() -> None:
    text = parameters_text({"stop": ["a", "b"], "temperature": 0.7, "num_ctx": 8192, "use_mmap": True})
    assert text.splitlines() == [
        f"{'num_ctx':<30} 8192", f"{'stop':<30} \"a\"", f"{'stop':<30} \"b\"", f"{'temperature':<30} 0.7",
        f"{'use_mmap':<30} true"]


@pytest.mark.parametrize(
    ("system", "line"),
    [("plain", "SYSTEM plain"), ("two\nlines", 'SYSTEM "two\nlines"'), (' edge ', 'SYSTEM " edge "'),
     ('say "hi"\nnow', 'SYSTEM """say "hi"\nnow"""')],
)
def test_modelfile_quotes_only_what_needs_it(system: str, line: str) -> None:
    custom = Customisation(name="m:latest", parent="b:latest", base="b", system=system, parameters={"temperature": 1.0})
    text = modelfile_of(custom)
    assert f"FROM b:latest\n{line}\nPARAMETER temperature 1\n" in text


def test_a_custom_model_digest_changes_with_its_definition() -> None:
    one = CustomModel(name="m:latest", base="b", system="x")
    assert one.digest == CustomModel(name="M", base="b", system="x", modified_ns=5).digest
    assert one.digest != CustomModel(name="m:latest", base="b", system="y").digest
    assert len(one.digest) == 64


def test_show_messages_encode_as_ollama_shows_them() -> None:
    base = ow.ShowResponse(model_info={}, capabilities=["completion"], parameters=f"{'num_ctx':<30} 4096",
                           details=ow.ModelDetails("", "gguf", "qwen2", ["qwen2"], "7B", "Q4_K_M"))
    shown = msgspec.json.decode(msgspec.json.encode(show_response(base, CUSTOM)))
    assert shown["messages"] == [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Mario!"}]
    assert shown["details"]["parent_model"] == "base:latest"
    assert shown["parameters"].splitlines()[-1] == f"{'num_ctx':<30} 4096"  # the base's, not overridden
