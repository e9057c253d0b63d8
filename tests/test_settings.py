"""Settings: precedence CLI > env > file > defaults, OLLAMA_HOST parsing, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_shim.settings import (
    Backend,
    SettingsError,
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
    assert s.backends == (Backend("http://127.0.0.1:1234"),)
    assert s.api_key is None and s.origins == ()


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "shim.toml"
    cfg.write_text('listen = "127.0.0.1:1111"\nlog_level = "debug"\ncatalog_ttl = 3\nidle_timeout = 7\n'
                   '[[backends]]\nurl = "http://f:1/v1"\nkey = "k"\nkind = "vllm"\n')
    env = {"OLLAMA_SHIM_CONFIG": str(cfg), "OLLAMA_SHIM_LISTEN": "127.0.0.1:2222", "OLLAMA_SHIM_CATALOG_TTL": "4"}
    s = load_settings(["--catalog-ttl", "5"], env)
    assert s.port == 2222  # env beats file
    assert s.catalog_ttl == 5  # CLI beats env
    assert s.log_level == "debug" and s.timeouts.idle == 7  # file beats defaults
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
