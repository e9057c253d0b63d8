"""Settings: precedence CLI > env > file > defaults, OLLAMA_HOST parsing, one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ollama_shim.settings import (
    DEFAULT_PASSTHROUGH,
    OPTIONS,
    Backend,
    Connections,
    Settings,
    SettingsError,
    build_parser,
    command_of,
    load_settings,
    normalize_backend_url,
    parse_ollama_host,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("http", "127.0.0.1", 11434)),
        ("", ("http", "127.0.0.1", 11434)),
        ("1.2.3.4", ("http", "1.2.3.4", 11434)),
        (":56789", ("http", "127.0.0.1", 56789)),
        ("1.2.3.4:56789", ("http", "1.2.3.4", 56789)),
        ("http://1.2.3.4", ("http", "1.2.3.4", 80)),
        ("https://1.2.3.4", ("https", "1.2.3.4", 443)),
        ("https://1.2.3.4:56789", ("https", "1.2.3.4", 56789)),
        ("example.com", ("http", "example.com", 11434)),
        ("example.com:56789", ("http", "example.com", 56789)),
        ("http://example.com/path", ("http", "example.com", 80)),
        ("[0001:002:003:0004::1]", ("http", "1:2:3:4::1", 11434)),
        ("[::1]:56789", ("http", "::1", 56789)),
        ("0.0.0.0", ("http", "0.0.0.0", 11434)),
    ],
)
def test_parse_ollama_host(value: str | None, expected: tuple[str, str, int]) -> None:
    scheme, host, port = parse_ollama_host(value)
    assert (scheme, host.replace("0001:002:003:0004", "1:2:3:4"), port) == expected


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://127.0.0.1:1234", "http://127.0.0.1:1234"),
        ("http://127.0.0.1:1234/", "http://127.0.0.1:1234"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api"),
        ("https://api.openai.com/v1/", "https://api.openai.com"),
    ],
)
def test_backend_urls(url: str, root: str) -> None:
    assert normalize_backend_url(url) == root


@pytest.mark.parametrize("url", ["127.0.0.1:1234", "ftp://x", "http://"])
def test_bad_backend_url(url: str) -> None:
    with pytest.raises(SettingsError, match="invalid backend URL"):
        normalize_backend_url(url)


@pytest.mark.parametrize("url", ["http://user:secret@host:1234", "https://token@host/v1"])
def test_backend_url_with_credentials_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="--backend-key") as info:
        normalize_backend_url(url)
    assert url.split("@")[0] not in str(info.value)  # the secret is not echoed


def test_defaults() -> None:
    s = load_settings([], {})
    assert (s.host, s.port) == ("127.0.0.1", 11434)
    assert s.backends == ()  # none configured: the server looks for one at start (discovery)
    assert s.api_key is None
    assert s.origins == ()


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "shim.toml"
    cfg.write_text('listen = "127.0.0.1:1111"\nlog_level = "debug"\ncatalog_ttl = 3\nidle_timeout = 7\n'
                   '[[backends]]\nurl = "http://f:1/v1"\nkey = "k"\nkind = "vllm"\n')
    env = {"OLLAMA_SHIM_CONFIG": str(cfg), "OLLAMA_SHIM_LISTEN": "127.0.0.1:2222", "OLLAMA_SHIM_CATALOG_TTL": "4"}
    s = load_settings(["--catalog-ttl", "5"], env)
    assert s.port == 2222  # env beats file
    assert s.catalog_ttl == 5  # CLI beats env
    assert s.log_level == "debug"
    assert s.timeouts.idle == 7  # file beats defaults
    assert s.backends == (Backend("http://f:1", "k", "vllm"),)


def test_ollama_host_is_the_listen_default_and_flag_wins() -> None:
    assert load_settings([], {"OLLAMA_HOST": "0.0.0.0:9000"}).host == "0.0.0.0"
    assert load_settings(["--listen", ":7000"], {"OLLAMA_HOST": "0.0.0.0:9000"}).port == 7000


def test_several_backends_with_keys_and_kinds() -> None:
    s = load_settings(
        ["--backend", "http://a:1", "--backend", "http://b:2/v1", "--backend-key", "", "--backend-key", "sk",
         "--backend-kind", "lmstudio"],
        {},
    )
    assert s.backends == (Backend("http://a:1", None, "lmstudio"), Backend("http://b:2", "sk", "auto"))


def test_env_lists_are_comma_separated() -> None:
    s = load_settings([], {"OLLAMA_SHIM_BACKEND": "http://a:1, http://b:2", "OLLAMA_ORIGINS": "http://x.test"})
    assert [b.root for b in s.backends] == ["http://a:1", "http://b:2"]
    assert s.origins == ("http://x.test",)


def test_backend_key_never_printed() -> None:
    assert "secret" not in repr(Backend("http://a", "secret"))


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--bogus"], {}, "unrecognized arguments"),
        (["--connect-timeout", "abc"], {}, "not a number"),
        (["--connect-timeout", "-1"], {}, "must not be negative"),
        (["--log-level", "loud"], {}, "invalid log level"),
        (["--backend-kind", "lmstudio", "--backend-kind", "vllm"], {}, "more --backend-key"),
        (["--backend", "http://a", "--backend-kind", "nope"], {}, "invalid backend kind"),
        (["--ollama-version", "v1"], {}, "invalid ollama version"),
        (["--config", "/nonexistent/shim.toml"], {}, "cannot read config file"),
        ([], {"OLLAMA_HOST": "http://h:notaport"}, "invalid OLLAMA_HOST"),
    ],
)
def test_errors_are_one_line(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        load_settings(argv, env)
    assert "\n" not in str(info.value)


def test_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("listen = [")
    with pytest.raises(SettingsError, match="invalid config file"):
        load_settings(["--config", str(bad)], {})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 1")
    with pytest.raises(SettingsError, match="unknown key 'colour'"):
        load_settings(["--config", str(unknown)], {})


# Every option that lands in Settings: the same value through a flag, a variable and the file.
WIRED = [
    ("max_response_bytes", "1000", lambda s: s.limits.response_bytes, 1000),
    ("max_sse_line_bytes", "2000", lambda s: s.limits.sse_line_bytes, 2000),
    ("max_gathered_bytes", "3000", lambda s: s.limits.gathered_bytes, 3000),
    ("max_catalog_bytes", "4000", lambda s: s.limits.catalog_bytes, 4000),
    ("head_timeout", "2.5", lambda s: s.connections.head_timeout, 2.5),
    ("body_timeout", "3", lambda s: s.connections.body_timeout, 3.0),
    ("keepalive_timeout", "4", lambda s: s.connections.keepalive_timeout, 4.0),
    ("max_connections", "50", lambda s: s.connections.max_connections, 50),
    ("connect_timeout", "6", lambda s: s.timeouts.connect, 6.0),
    ("catalog_ttl", "7", lambda s: s.catalog_ttl, 7.0),
    ("workers", "3", lambda s: s.workers, 3),
    ("api_key", "sk-1", lambda s: s.api_key, "sk-1"),
    ("data_dir", "/srv/shim", lambda s: s.data_dir, "/srv/shim"),
    ("translate_native_apis", "yes", lambda s: s.translate_native_apis, True),
]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"XDG_DATA_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/ollama-shim"),
        ({"HOME": "/home/u"}, "/home/u/.local/share/ollama-shim"),
        ({"XDG_DATA_HOME": "", "HOME": "/home/u"}, "/home/u/.local/share/ollama-shim"),
        ({}, ""),  # nowhere to put it: kept in memory, never in the working directory
    ],
)
def test_data_dir_defaults_to_the_xdg_data_home(environ: dict[str, str], expected: str) -> None:
    assert load_settings([], environ).data_dir == expected


@pytest.mark.parametrize("raw", ["maybe", "2", ""])
def test_a_switch_takes_only_true_or_false(raw: str) -> None:
    with pytest.raises(SettingsError, match="translate-native-apis"):
        load_settings(["--translate-native-apis", raw], {})


@pytest.mark.parametrize(("name", "raw", "read", "expected"), WIRED, ids=[w[0] for w in WIRED])
@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_every_option_reaches_settings(tmp_path: Path, source: str, name: str, raw: str,
                                       read: Callable[[Settings], object], expected: object) -> None:
    if source == "flag":
        settings = load_settings(["--" + name.replace("_", "-"), raw], {})
    elif source == "env":
        settings = load_settings([], {"OLLAMA_SHIM_" + name.upper(): raw})
    else:
        cfg = tmp_path / "shim.toml"
        cfg.write_text(f"{name} = {raw if raw[0].isdigit() else repr(raw)}\n")
        settings = load_settings(["--config", str(cfg)], {})
    assert read(settings) == expected
    assert read(load_settings([], {})) != expected  # the default differs, so the value did travel


def test_connection_defaults_are_seconds_not_hours() -> None:
    connections = load_settings([], {}).connections
    assert connections == Connections(head_timeout=10.0, body_timeout=60.0, keepalive_timeout=75.0,
                                      max_connections=2048)


@pytest.mark.parametrize(
    ("argv", "env", "toml", "expected"),
    [
        ([], {}, None, DEFAULT_PASSTHROUGH),
        (["--passthrough", "/v1/files", "--passthrough", "/v1/models/*"], {}, None, ("/v1/files", "/v1/models/*")),
        ([], {"OLLAMA_SHIM_PASSTHROUGH": "/v1/chat/completions, /v1/files/**"}, None,
         ("/v1/chat/completions", "/v1/files/**")),
        ([], {}, 'passthrough = ["/v1/embeddings"]', ("/v1/embeddings",)),
        (["--passthrough", "*"], {}, None, ("/v1/**",)),
        (["--passthrough", "/v1/**"], {}, None, ("/v1/**",)),
        ([], {"OLLAMA_SHIM_PASSTHROUGH": "/v1/models,*"}, None, ("/v1/**",)),
    ],
    ids=["default", "flags", "env", "file", "star", "all", "star-in-env"],
)
def test_passthrough_allow_list(tmp_path: Path, argv: list[str], env: dict[str, str], toml: str | None,
                                expected: tuple[str, ...]) -> None:
    if toml is not None:
        cfg = tmp_path / "shim.toml"
        cfg.write_text(toml + "\n")
        argv = [*argv, "--config", str(cfg)]
    assert load_settings(argv, env).passthrough == expected


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--passthrough", "/api/chat"], {}, "not a /v1/... route pattern"),
        (["--passthrough", "/v1/../props"], {}, "not a /v1/... route pattern"),
        (["--max-connections", "many"], {}, "not a number"),
        (["--head-timeout", "-2"], {}, "must not be negative"),
        (["--body-timeout", "nan"], {}, "not a finite number"),
        (["--api-key", ""], {}, "the key is empty"),
        ([], {"OLLAMA_SHIM_API_KEY": ""}, "the key is empty"),
        (["--api-key", " sk-1"], {}, "starts or ends with whitespace"),
        (["--api-key", "sk-1\n"], {}, "starts or ends with whitespace"),
        ([], {"OLLAMA_SHIM_API_KEY": "sk-1 "}, "starts or ends with whitespace"),
    ],
)
def test_new_options_refuse_bad_values_in_one_line(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        load_settings(argv, env)
    assert "\n" not in str(info.value)
    assert "sk-1" not in str(info.value)  # a key is never echoed


def test_api_key_in_file_with_whitespace_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "shim.toml"
    cfg.write_text('api_key = "sk-1 "\n')
    with pytest.raises(SettingsError, match="whitespace"):
        load_settings(["--config", str(cfg)], {})


def test_help_names_flag_variable_and_default_of_every_option() -> None:
    text = build_parser().format_help()
    for option in OPTIONS:
        assert option.flag in text
        assert option.env in text
    assert "(default 10.0)" in text  # head timeout, read from the dataclass default


@pytest.mark.parametrize(
    ("argv", "env"),
    [(["doctor", "--json"], {}), (["--json", "doctor"], {}), (["doctor"], {"OLLAMA_SHIM_JSON": "1"})],
    ids=["flag-after", "flag-before", "env"],
)
def test_json_is_a_bare_switch(argv: list[str], env: dict[str, str]) -> None:
    assert load_settings(argv, env).json_output is True
    assert command_of(argv) == "doctor"


def test_the_command_defaults_to_serve_and_json_to_off() -> None:
    assert command_of(["--listen", ":7000"]) == "serve"
    assert load_settings([], {}).json_output is False


def test_an_unknown_command_is_refused() -> None:
    with pytest.raises(SettingsError, match="invalid choice"):
        command_of(["stop"])


MODELS_TOML = """
[[models]]
name = "mario"
from = "qwen2.5-7b-instruct"
system = "You are Mario."
parameters = { temperature = 0.7, stop = ["<|eot|>"] }
messages = [{ role = "user", content = "Who?" }, { role = "assistant", content = "Mario!" }]
license = ["MIT", "CC0"]

[[models]]
name = "luigi:v2"
from = "mario"
"""


def test_models_tables_become_read_only_custom_models(tmp_path: Path) -> None:
    cfg = tmp_path / "models.toml"
    cfg.write_text(MODELS_TOML)
    mario, luigi = load_settings(["--config", str(cfg)], {}).custom_models
    assert (mario.name, mario.base, mario.system, mario.from_config) == (
        "mario:latest", "qwen2.5-7b-instruct", "You are Mario.", True)
    assert mario.parameters == {"temperature": 0.7, "stop": ["<|eot|>"]}
    assert mario.messages == (("user", "Who?"), ("assistant", "Mario!"))
    assert mario.license == ("MIT", "CC0")
    assert (luigi.name, luigi.base) == ("luigi:v2", "mario")


def test_no_models_table_means_no_custom_models() -> None:
    assert load_settings([], {}).custom_models == ()


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('name = "m"', "neither 'from' or 'files' was specified"),
        ('name = "bad name"\nfrom = "b"', "invalid model name"),
        ('name = "m"\nfrom = "b"\nparameters = { temperature = "hot" }', 'must be of type float32'),
        ('name = "m"\nfrom = "b"\nparameters = 3', "'parameters' must be a table"),
        ('name = "m"\nfrom = "b"\ncolour = 1', "unknown key 'colour'"),
        ('name = "m"\nfrom = "b"\nmessages = [{ role = "tool", content = "x" }]', "message role must be one of"),
        ('name = "m"\nfrom = "b"\nmessages = ["x"]', "'messages' must be tables"),
        ('name = "m"\nfrom = "b"\nlicense = 1', "'license' must be a string"),
        ('name = "m"\nfrom = "b"\n[[models]]\nname = "M:latest"\nfrom = "c"', "declared twice"),
    ],
)
def test_bad_models_tables_are_one_line_errors(tmp_path: Path, table: str, error: str) -> None:
    cfg = tmp_path / "models.toml"
    cfg.write_text("[[models]]\n" + table + "\n")
    with pytest.raises(SettingsError, match="invalid config file") as info:
        load_settings(["--config", str(cfg)], {})
    assert error in str(info.value)
    assert "\n" not in str(info.value)


def test_replica_options_of_backends_tables(tmp_path: Path) -> None:
    cfg = tmp_path / "shim.toml"
    cfg.write_text('affinity = true\nreplica_backoff = 2\n'
                   '[[backends]]\nurl = "http://a:1"\ngroup = "team"\nmax_concurrent = 4\nmax_queue = 8\n'
                   '[[backends]]\nurl = "http://b:1"\ngroup = "team"\n'
                   '[[backends]]\nurl = "https://cloud.test/v1"\nkind = "openai"\nkey = "k"\npriority = -1\n')
    s = load_settings(["--config", str(cfg)], {})
    assert s.backends == (
        Backend("http://a:1", group="team", max_concurrent=4, max_queue=8),
        Backend("http://b:1", group="team"),
        Backend("https://cloud.test", "k", "openai", priority=-1),
    )
    assert s.routing.affinity is True
    assert s.routing.backoff == 2


def test_replica_options_by_position() -> None:
    s = load_settings(["--backend", "http://a:1", "--backend", "http://b:1", "--backend-priority", "",
                       "--backend-priority", "-2", "--backend-max-concurrent", "3", "--affinity"], {})
    assert [(b.priority, b.max_concurrent) for b in s.backends] == [(0, 3), (-2, 0)]
    assert s.routing.affinity is True


@pytest.mark.parametrize(
    ("argv", "toml", "message"),
    [
        (["--backend", "http://a", "--backend-max-concurrent", "-1"], "", "must not be negative"),
        (["--backend", "http://a", "--backend-max-queue", "many"], "", "not a whole number"),
        (["--backend", "http://a", "--backend-group", "x", "--backend-group", "y"], "", "more --backend-key"),
        ([], '[[backends]]\nurl = "http://a"\nmax_concurent = 2\n', "unknown key 'max_concurent'"),
        ([], '[[backends]]\nurl = "http://a"\npriority = "high"\n', "not a whole number"),
        (["--replica-backoff", "-1"], "", "must not be negative"),
    ],
)
def test_bad_replica_options(tmp_path: Path, argv: list[str], toml: str, message: str) -> None:
    if toml:
        cfg = tmp_path / "shim.toml"
        cfg.write_text(toml)
        argv = [*argv, "--config", str(cfg)]
    with pytest.raises(SettingsError, match=message):
        load_settings(argv, {})
