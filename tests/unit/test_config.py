import pytest

from nocry.config import DEFAULT_TOML, Config, parse_config
from nocry.errors import ConfigError


def test_default_file_gives_the_defaults():
    cfg = parse_config(DEFAULT_TOML, "default.toml")
    assert cfg.replace(source="<defaults>") == Config()


def test_unknown_key_cites_file_and_line():
    with pytest.raises(ConfigError, match=r"x.toml:3: unknown key 'capture.debounce'"):
        parse_config('mode = "observe"\n[capture]\ndebounce = 5\n', "x.toml")


def test_unknown_section_and_wrong_type():
    with pytest.raises(ConfigError, match="unknown key 'sensr'"):
        parse_config("[sensr]\nwatch_reads = true\n", "x.toml")
    with pytest.raises(ConfigError, match=r"x.toml:2: sensor.watch_reads must be true or false"):
        parse_config("[sensor]\nwatch_reads = 1\n", "x.toml")
    with pytest.raises(ConfigError, match="mode must be"):
        parse_config('mode = "panic"\n', "x.toml")


def test_broken_toml_is_a_clear_error():
    with pytest.raises(ConfigError, match="x.toml"):
        parse_config("[capture\n", "x.toml")


def test_values_are_taken():
    cfg = parse_config('mode = "observe"\n[capture]\nexclude = ["*.o", "build"]\ndebounce_ms = 7\n')
    assert cfg.mode == "observe"
    assert cfg.capture.exclude == ("*.o", "build")
    assert cfg.capture.debounce_ms == 7
