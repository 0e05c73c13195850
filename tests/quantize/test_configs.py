import pytest

from dsedge.errors import ConfigError
from dsedge.quantize import (METHODS, Fp16Config, Int4WeightOnlyConfig, Int8WeightOnlyConfig, config_from_dict,
                             config_from_options, handler_for)


@pytest.mark.parametrize("opts,expected", [
    ({"bits": 4}, Int4WeightOnlyConfig(group_size=128)),
    ({}, Int4WeightOnlyConfig()),
    ({"bits": 8}, Int8WeightOnlyConfig(group_size=-1)),
    ({"bits": 16}, Fp16Config()),
    ({"method": "rtn", "bits": 8}, Int8WeightOnlyConfig()),
    ({"method": "rtn", "bits": 4, "group_size": 64, "symmetric": False},
     Int4WeightOnlyConfig(group_size=64, symmetric=False)),
    ({"method": "int8", "group_size": 128}, Int8WeightOnlyConfig(group_size=128)),
])
def test_cli_options_map_to_configs(opts, expected):
    assert config_from_options(**opts) == expected


@pytest.mark.parametrize("opts,match", [
    ({"method": "awq2"}, "unknown method"),
    ({"method": "int8", "bits": 4}, "--bits 4 is not supported by method int8"),
    ({"method": "fp16", "bits": 4}, "--bits 4 is not supported by method fp16"),
    ({"bits": 4, "group_size": 100}, "power of two"),
])
def test_bad_options_are_named(opts, match):
    with pytest.raises(ConfigError, match=match):
        config_from_options(**opts)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_round_trips_through_the_manifest_and_has_a_handler(method):
    cfg = config_from_options(method=method)
    assert config_from_dict(cfg.to_dict()) == cfg
    assert callable(handler_for(cfg))


def test_group_size_must_divide_in_features():
    with pytest.raises(ConfigError, match="does not divide in_features 768 of x.down_proj"):
        Int4WeightOnlyConfig(group_size=512).validate_for({"x.down_proj": 768})
