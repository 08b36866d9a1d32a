"""Stream options and the environment variables behind them."""

from __future__ import annotations

import pytest

from durable_streams.config import ConfigError, StreamOptions


def test_defaults_match_genkit_sample() -> None:
    options = StreamOptions.from_env({})

    assert options.collection == "genkit-streams"
    assert options.timeout == 60
    assert options.ttl == 300


def test_environment_sets_options() -> None:
    options = StreamOptions.from_env(
        {
            "FIRESTORE_STREAMS_COLLECTION": "my-streams",
            "STREAM_TIMEOUT_SECONDS": "90",
            "STREAM_TTL_SECONDS": "30.5",
            "STREAM_WRITE_INTERVAL_SECONDS": "0.2",
            "STREAM_LEASE_SECONDS": "9",
        }
    )

    assert options.collection == "my-streams"
    assert options.timeout == 90
    assert options.ttl == 30.5
    assert options.write_interval == 0.2
    assert options.lease == 9
    assert options.renew_interval == 3


def test_arguments_override_environment() -> None:
    options = StreamOptions.from_env(
        {"FIRESTORE_STREAMS_COLLECTION": "from-env"}, collection="from-code", ttl=None
    )

    assert options.collection == "from-code"
    assert options.ttl == 300


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("STREAM_TTL_SECONDS", "soon", "number of seconds"),
        ("STREAM_TTL_SECONDS", "0", "ttl must be positive"),
        ("STREAM_TIMEOUT_SECONDS", "-1", "timeout must be positive"),
        ("FIRESTORE_STREAMS_COLLECTION", "a/b", "without '/'"),
    ],
)
def test_invalid_values_are_rejected(variable: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        StreamOptions.from_env({variable: value})


def test_environment_sets_limits_and_auth() -> None:
    options = StreamOptions.from_env(
        {
            "STREAM_AUTH": "required",
            "STREAM_MAX_REQUEST_BYTES": "1000",
            "STREAM_MAX_JSON_DEPTH": "8",
            "STREAM_MAX_CHUNK_BYTES": "2000",
            "STREAM_MAX_OUTPUT_BYTES": "3000",
            "STREAM_MAX_STREAMS_PER_INSTANCE": "40",
            "STREAM_MAX_STREAMS_PER_CALLER": "4",
        }
    )

    assert options.auth == "required"
    assert options.max_request_bytes == 1000
    assert options.max_json_depth == 8
    assert options.max_chunk_bytes == 2000
    assert options.max_output_bytes == 3000
    assert options.max_streams_per_instance == 40
    assert options.max_streams_per_caller == 4


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("STREAM_AUTH", "yes", "auth must be one of off, optional, required"),
        ("STREAM_MAX_JSON_DEPTH", "8.5", "whole number"),
        ("STREAM_MAX_REQUEST_BYTES", "0", "max_request_bytes must be at least 1"),
        ("STREAM_MAX_STREAMS_PER_CALLER", "-2", "must be at least 1"),
    ],
)
def test_invalid_limits_are_rejected(variable: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        StreamOptions.from_env({variable: value})
