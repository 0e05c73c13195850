import pytest

from dsedge.errors import ConfigError
from dsedge.quantize import (METHODS, LayerScheme, Fp16Config, Int4WeightOnlyConfig, Int8WeightOnlyConfig, config_from_dict,
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


def test_a_group_that_does_not_divide_a_layer_falls_back_per_layer():
    """DeepSeek-V2-Lite's dense down_proj has in_features 10944 = 85.5 x 128 = 171 x 64."""
    cfg = Int4WeightOnlyConfig(group_size=128)
    assert cfg.scheme_for(1408) == LayerScheme(4, 128)                      # divides: the config's own
    s = cfg.scheme_for(10944)
    assert (s.bits, s.group_size) == (4, 64) and "10944" in s.fallback
    s = cfg.scheme_for(4000)                                                 # 4000 = 32 x 125: no block of 64
    assert (s.bits, s.group_size) == (8, -1) and "INT8 per output channel" in s.fallback
    assert Int4WeightOnlyConfig(group_size=64).scheme_for(10944) == LayerScheme(4, 64)
    assert Int4WeightOnlyConfig(group_size=-1).scheme_for(4000) == LayerScheme(4, -1)
    assert Int8WeightOnlyConfig().scheme_for(4000) == LayerScheme(8, -1)


def test_calibrated_methods_refuse_a_group_that_does_not_divide():
    from dsedge.archs import REGISTRY
    from dsedge.quantize import GptqConfig, WeightSource, quantize_model

    def never(key):
        raise AssertionError("no weight is read before the refusal")

    with pytest.raises(ConfigError, match="does not divide in_features 10944") as e:
        quantize_model(GptqConfig(bits=4, group_size=128), WeightSource(never), REGISTRY["LlamaForCausalLM"], 1,
                       lambda n: 10944)
    assert "--group-size 64" in e.value.fix
