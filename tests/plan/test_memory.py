"""The memory planner against hand-computed figures for the real DeepSeek configurations
(src/dsedge/archs/configs/*.json hold their published config.json fields). Every expected number
below is worked out in the comment above it from the config values alone."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dsedge.errors import CheckpointError, UnsupportedArchitectureError
from dsedge.plan.memory import GiB, options, plan_memory
from dsedge.quantize import config_from_options
from dsedge.targets import find_target

CONFIGS = Path(__file__).parents[2] / "src" / "dsedge" / "archs" / "configs"


def cfg(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


# Parameter counts as stored (embeddings and lm_head both, all MoE experts).
# Qwen-1.5B: H 1536, I 8960, L 28, 12 heads, 2 KV heads, head dim 128, V 151936, untied.
#   per layer q 1536*1536=2,359,296 ; k,v 1536*256=393,216 each ; o 2,359,296 ; mlp 3*1536*8960=41,287,680
#   -> 46,792,704 x 28 = 1,310,195,712 ; q/k/v bias (1536+512)*28 = 57,344 ; norms (2*28+1)*1536 = 87,552
#   embed + head 2*151936*1536 = 466,747,392 ; total 1,777,088,000 (the published "1.78B")
# Qwen-7B: H 3584, I 18944, L 28, 28 heads, 4 KV heads, V 152064.
#   per layer 2*3584^2 + 2*3584*512 + 3*3584*18944 = 25,690,112 + 3,670,016 + 203,685,888 = 233,046,016
#   x 28 = 6,525,288,448 ; bias (3584+1024)*28 = 129,024 ; norms 57*3584 = 204,288
#   embed + head 2*152064*3584 = 1,089,994,752 ; total 7,615,616,512
# Qwen-14B: H 5120, I 13824, L 48, 40 heads, 8 KV heads, V 152064.
#   per layer 2*5120^2 + 2*5120*1024 + 3*5120*13824 = 52,428,800 + 10,485,760 + 212,336,640 = 275,251,200
#   x 48 = 13,212,057,600 ; bias (5120+2048)*48 = 344,064 ; norms 97*5120 = 496,640
#   embed + head 2*152064*5120 = 1,557,135,360 ; total 14,770,033,664
# Llama-8B: H 4096, I 14336, L 32, 32 heads, 8 KV heads, V 128256, no bias.
#   per layer 2*4096^2 + 2*4096*1024 + 3*4096*14336 = 33,554,432 + 8,388,608 + 176,160,768 = 218,103,808
#   x 32 = 6,979,321,856 ; norms 65*4096 = 266,240 ; embed + head 2*128256*4096 = 1,050,673,152
#   total 8,030,261,248 (Llama-3.1-8B's count)
# V2-Lite: H 2048, L 27, 16 heads, no q LoRA, kv_lora 512, nope 128, rope 64, v 128, V 102400;
#   layer 0 dense (I 10944), layers 1-26 MoE: 64 routed + 2 shared experts of 1408.
#   attention/layer: q 2048*16*192 = 6,291,456 ; kv_a 2048*576 = 1,179,648 ; kv_b 512*16*256 = 2,097,152 ;
#   o 2048*2048 = 4,194,304 ; kv_a norm 512 -> 13,763,072 x 27 = 371,602,944
#   dense mlp 3*2048*10944 = 67,239,936
#   MoE/layer: routed 64*3*2048*1408 = 553,648,128 ; shared 3*2048*2816 = 17,301,504 ; router 64*2048 = 131,072
#   -> 571,080,704 x 26 = 14,848,098,304 ; norms 55*2048 = 112,640 ; embed + head 2*102400*2048 = 419,430,400
#   total 15,706,484,224 (the published "15.7B")
# V3: H 7168, L 61, 128 heads, q_lora 1536, kv_lora 512, V 129280; layers 0-2 dense (I 18432),
#   3-60 MoE: 256 routed + 1 shared expert of 2048, router + its bias.
#   attention/layer: q_a 7168*1536 = 11,010,048 ; q_b 1536*128*192 = 37,748,736 ; kv_a 7168*576 = 4,128,768 ;
#   kv_b 512*128*256 = 16,777,216 ; o 16384*7168 = 117,440,512 ; norms 1536+512 -> 187,107,328 x 61 = 11,413,547,008
#   dense 3 * 3*7168*18432 = 1,189,085,184
#   MoE/layer: 256*3*7168*2048 = 11,274,289,152 + shared 44,040,192 + router 1,835,008 + bias 256
#   = 11,320,164,608 x 58 = 656,569,547,264 ; norms 123*7168 = 881,664 ; embed + head 2*129280*7168 = 1,853,358,080
#   total 671,026,419,200 (the published "671B"; the MTP layer is not counted)
PARAMS = {
    "r1-distill-qwen-1.5b": 1_777_088_000,
    "r1-distill-qwen-7b": 7_615_616_512,
    "r1-distill-qwen-14b": 14_770_033_664,
    "r1-distill-llama-8b": 8_030_261_248,
    "deepseek-v2-lite": 15_706_484_224,
    "deepseek-v3": 671_026_419_200,
}

# KV cache at context 4096, batch 1, FP16:
#   GQA: layers x KV heads x 128 x 4096 x 2 (K,V) x 2 B
#     1.5B 28*2 -> 117,440,512 ; 7B 28*4 -> 234,881,024 ; 14B 48*8 -> 805,306,368 ; Llama-8B 32*8 -> 536,870,912
#   MLA: layers x (512 + 64) x 4096 x 2 B:  V2-Lite 27 -> 127,401,984 ; V3 61 -> 287,834,112
KV_4096 = {
    "r1-distill-qwen-1.5b": 117_440_512,
    "r1-distill-qwen-7b": 234_881_024,
    "r1-distill-qwen-14b": 805_306_368,
    "r1-distill-llama-8b": 536_870_912,
    "deepseek-v2-lite": 127_401_984,
    "deepseek-v3": 287_834_112,
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_fp16_weights_and_kv_match_hand_figures(name):
    p = plan_memory(cfg(name), find_target("h100"), context=4096, batch=1)
    assert p.params == PARAMS[name]
    assert p.weight_bytes == 2 * PARAMS[name]            # everything FP16 as stored
    assert p.kv_bytes == KV_4096[name]


def test_kv_scales_with_context_and_batch():
    p = plan_memory(cfg("r1-distill-qwen-7b"), find_target("h100"), context=8192, batch=4)
    assert p.kv_bytes == KV_4096["r1-distill-qwen-7b"] * 2 * 4


def test_int4_g128_weights_qwen_1_5b():
    # linears 1,310,195,712 params -> codes /2 = 655,097,856 B ; scales one FP16 per 128 inputs
    # (1536 and 8960 are multiples of 128) -> 1,310,195,712/128*2 = 20,471,808 B ;
    # FP16 rest (bias 57,344 + norms 87,552 + embed/head 466,747,392) * 2 = 933,784,576 B
    p = plan_memory(cfg("r1-distill-qwen-1.5b"), find_target("orin"), quant=config_from_options(bits=4))
    assert p.weight_bytes == 655_097_856 + 20_471_808 + 933_784_576
    assert p.weight_parts["embeddings"] == p.weight_parts["lm_head"] == 233_373_696 * 2


def test_int8_per_channel_weights_llama_8b():
    # codes 6,979,321,856 B ; one FP16 scale per output channel: outputs per layer
    # 4096+1024+1024+4096+14336+14336+4096 = 43,008 x 32 = 1,376,256 -> 2,752,512 B ;
    # FP16 rest (norms 266,240 + embed/head 1,050,673,152) * 2 = 2,101,878,784 B
    p = plan_memory(cfg("r1-distill-llama-8b"), find_target("orin"), quant=config_from_options(bits=8))
    assert p.weight_bytes == 6_979_321_856 + 2_752_512 + 2_101_878_784


def test_moe_experts_counted_as_stored_and_read_as_routed():
    # V2-Lite FP16: experts part = 26 * 571,080,704 params * 2 B
    p = plan_memory(cfg("deepseek-v2-lite"), find_target("h100"))
    assert p.weight_parts["experts"] == 26 * 571_080_704 * 2
    # read per token: all but the embedding table and the 58 unrouted expert sets: routed 6 of 64
    # = 26 * (6*3*2048*1408 + 17,301,504 + 131,072) = 26 * 69,337,088 = 1,802,764,288 params of experts
    experts_read = 26 * (6 * 3 * 2048 * 1408 + 17_301_504 + 131_072)
    rest = 371_602_944 + 67_239_936 + 112_640 + 102_400 * 2048   # attention, dense mlp, norms, lm_head
    assert p.weight_read_bytes == 2 * (experts_read + rest)


def test_workspace_formula_qwen_7b():
    # orin profile: prompt min(2048, 4096) = 2048, batch 1:
    # 2048 x 2 B x (2*3584 + max(3584+2*512, 2*18944) + 152064) = 4096 x 197,120 = 807,403,520
    p = plan_memory(cfg("r1-distill-qwen-7b"), find_target("orin"), context=4096, batch=1)
    assert p.prompt == 2048 and p.workspace_bytes == 807_403_520


def test_fits_and_margin_14b_int4_on_orin_nx():
    # weights: codes 13,212,057,600/2 = 6,606,028,800 + scales 13,212,057,600/64 = 206,438,400
    #   + FP16 rest (344,064 + 496,640 + 1,557,135,360)*2 = 3,115,952,128 -> 9,928,419,328
    # KV 805,306,368 ; workspace prompt 1024: 1024*2*(10240 + max(7168, 27648) + 152064) = 389,021,696
    # runtime 1.5 GiB = 1,610,612,736 ; total 12,733,360,128 ; usable 12.5 GiB = 13,421,772,800
    t = find_target("orin-nx-16")
    p = plan_memory(cfg("r1-distill-qwen-14b"), t, quant=config_from_options(bits=4), context=4096, batch=1)
    assert p.total_bytes == 12_733_360_128
    assert p.margin_bytes == 13_421_772_800 - 12_733_360_128 and p.fits
    assert {o.precision: o.fits for o in options(cfg("r1-distill-qwen-14b"), t, 4096, 1)} == \
        {"fp16": False, "int8": False, "int4": True}


def test_v3_fits_nowhere_and_plan_says_so():
    for o in options(cfg("deepseek-v3"), find_target("h100")):
        assert not o.fits and o.plan.margin_bytes < 0
    d = plan_memory(cfg("deepseek-v3"), find_target("h100"), quant=config_from_options(bits=4)).to_dict()
    assert d["fits"] is False and "multi-token-prediction" in d["notes"][0]


def test_options_respect_target_precisions(tmp_path):
    import yaml
    from tests.targets.test_schema import REPO_TARGETS

    data = yaml.safe_load((REPO_TARGETS / "orin-agx-64.yaml").read_text())
    data.update(name="no-int4", aliases=[], precisions=["fp16", "int8"])
    (tmp_path / "no-int4.yaml").write_text(yaml.safe_dump(data))
    opts = {o.precision: o for o in options(cfg("r1-distill-qwen-1.5b"), find_target("no-int4", tmp_path))}
    assert opts["int4"].plan.fits and not opts["int4"].supported and not opts["int4"].fits


def test_rows_and_dict_agree():
    p = plan_memory(cfg("r1-distill-qwen-1.5b"), find_target("nano"), quant=config_from_options(bits=4))
    rows = dict((r[0], r[1]) for r in p.rows())
    assert float(rows["total"]) == pytest.approx(p.total_bytes / GiB, abs=0.005)
    assert p.to_dict()["total_gib"] == round(p.total_bytes / GiB, 3)


def test_unknown_architecture_and_missing_key():
    with pytest.raises(UnsupportedArchitectureError, match="MistralForCausalLM"):
        plan_memory({"architectures": ["MistralForCausalLM"]}, find_target("orin"))
    bad = cfg("r1-distill-qwen-7b")
    del bad["intermediate_size"]
    with pytest.raises(CheckpointError, match="intermediate_size"):
        plan_memory(bad, find_target("orin"))


def test_api_plan_is_the_cli_plan():
    from dsedge import api

    path = CONFIGS / "r1-distill-qwen-7b.json"
    p, opts = api.plan(path, "orin", api.plan_config("rtn", 4, 32, False), context=4096, batch=1)
    assert p.method == "rtn-w4-g32-asym" and [o.precision for o in opts] == ["fp16", "int8", "int4"]
    assert api.plan_config().method == "fp16"
    proc = subprocess.run([sys.executable, "-m", "dsedge", "plan", "--model", str(path), "--target", "orin",
                           "--bits", "4", "--group-size", "32", "--asym", "--context", "4096", "--batch", "1",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["plan"] == p.to_dict()


def test_read_per_token_label_names_experts_only_for_moe():
    how = lambda name: dict((k, h) for k, _, h in plan_memory(cfg(name), find_target("h100")).rows())["read per token"]
    assert "routed top-k" not in how("r1-distill-qwen-1.5b") and "the embedding is a lookup" in how("r1-distill-qwen-1.5b")
    assert "routed top-k + shared experts" in how("deepseek-v2-lite")


def test_default_context_is_capped_at_the_models_positions():
    """The target's max_context (4096 on orin) unless the model has fewer positions; asking for
    more than the model has is planned but noted."""
    from dsedge import reference

    config = json.loads((reference.checkpoint_path("qwen2-tiny") / "config.json").read_text())
    positions = config["max_position_embeddings"]
    target = find_target("orin")
    assert positions < target.profile.max_context
    assert plan_memory(config, target).context == positions
    over = plan_memory(config, target, context=target.profile.max_context)
    assert over.context == target.profile.max_context and any("max_position_embeddings" in n for n in over.notes)
    assert plan_memory(cfg("r1-distill-qwen-7b"), target).context == target.profile.max_context


@pytest.mark.parametrize("name", sorted(KV_4096))
def test_int8_kv_cache_is_half_the_fp16_one(name):
    fp16 = plan_memory(cfg(name), find_target("h100"), context=4096, batch=1)
    int8 = plan_memory(cfg(name), find_target("h100"), context=4096, batch=1, kv_cache="int8")
    assert int8.kv_bytes * 2 == fp16.kv_bytes == KV_4096[name]
    assert int8.total_bytes == fp16.total_bytes - KV_4096[name] // 2
    assert int8.to_dict()["kv_cache_dtype"] == "int8" and "x 1 B" in int8.kv_formula


def test_plan_cli_takes_kv_cache():
    path = CONFIGS / "r1-distill-qwen-7b.json"
    run = lambda *a: subprocess.run([sys.executable, "-m", "dsedge", "plan", "--model", str(path), "--target",
                                     "orin-nano-8", "--bits", "4", "--context", "32768", "--batch", "1", *a, "--json"],
                                    capture_output=True, text=True, timeout=120)
    fp16, int8 = (json.loads(run(*a).stdout)["plan"] for a in ((), ("--kv-cache", "int8")))
    assert fp16["kv_bytes_per_token"] == 57_344 and int8["kv_bytes_per_token"] == 28_672
    bad = run("--kv-cache", "int4")
    assert bad.returncode == 2 and "--kv-cache int4 is not one of fp16, int8" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr
