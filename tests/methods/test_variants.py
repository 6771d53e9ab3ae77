"""Method variants written inline (`ana[in_adapters=false,gate=false]`): parsing with YAML-typed values,
one-line errors naming the bad part, checking against the method, splitting a list, and run labels."""

from __future__ import annotations

import re

import pytest

from modweave.fields import ConfigError
from modweave.methods.variants import (MAX_LABEL, check_variant, parse_variant, split_top_level,
                                       split_variants, variant_label)


@pytest.mark.parametrize("text,want", [
    ("ana", ("ana", {})),
    ("ana[in_adapters=false,gate=false]", ("ana", {"in_adapters": False, "gate": False})),
    (" ana[ rank = 4 , init=authors ] ", ("ana", {"rank": 4, "init": "authors"})),
    ("ana[sites=[q, k],gate_noise.enabled=false,gate_noise.min_std=1e-3]",
     ("ana", {"sites": ["q", "k"], "gate_noise": {"enabled": False, "min_std": "1e-3"}})),  # YAML 1.1: a string
    ("ana[gate_noise={enabled: false, min_std: 0.5}]", ("ana", {"gate_noise": {"enabled": False, "min_std": 0.5}})),
    ("moextend[layers=[0, 2],donors={0: [1]},routing=modality]",
     ("moextend", {"layers": [0, 2], "donors": {0: [1]}, "routing": "modality"})),
    ("lora[alpha=0.5,dropout=0]", ("lora", {"alpha": 0.5, "dropout": 0})),
    ("x['a,b'=1]", None),  # a quoted key is no setting name
])
def test_parse_variant(text, want):
    if want is None:
        with pytest.raises(ConfigError):
            parse_variant(text)
    else:
        assert parse_variant(text) == want


@pytest.mark.parametrize("text,names", [
    ("ana[gate]", "'gate' is not key=value"),
    ("ana[gate=]", "'gate' has no value"),
    ("ana[1x=3]", "'1x' is not a setting name"),
    ("ana[gate=false", "must end with ']'"),
    ("ana[gate=false]x", "must end with ']'"),
    ("ana[]", "empty settings"),
    ("an a[gate=false]", "'an a' is not a method name"),
    ("[gate=false]", "'' is not a method name"),
    ("ana[sites=[q,k]", "unbalanced"),
    ("ana[a=b: c: d]", "value of 'a' is not YAML"),
    ("ana[gate=false,gate=true]", "'gate' is given twice"),
    ("ana[gate_noise={enabled: false},gate_noise.min_std=1]", "'gate_noise.min_std' is given twice"),
    ("ana[gate_noise.min_std=1,gate_noise={enabled: false}]", "'gate_noise' is given twice"),
])
def test_malformed_variants_fail_in_one_line_naming_the_part(text, names):
    with pytest.raises(ConfigError) as err:
        parse_variant(text)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"method variant '{text}': ") and names in message


def test_check_variant_checks_the_method_and_its_settings():
    assert check_variant("ana[in_adapters=false,gate=false]") == ("ana", {"in_adapters": False, "gate": False})
    for text, names in (("nope[a=1]", "unknown method 'nope'"), ("ana[gate=1]", "'ana.gate'"),
                        ("ana[gates=false]", "'ana.gates'"), ("ana[init=kaiming]", "'ana.init'"),
                        ("ana[in_adapters=false,in_adapter_init=identity]", "'ana.in_adapter_init'")):
        with pytest.raises(ConfigError, match=re.escape(names)) as err:
            check_variant(text)
        assert "\n" not in str(err.value) and str(err.value).startswith(f"method variant '{text}': ")


def test_split_variants_keeps_commas_inside_brackets_and_quotes():
    assert split_variants("ana,ana[in_adapters=false,gate=false], lora[rank=2]") == [
        "ana", "ana[in_adapters=false,gate=false]", "lora[rank=2]"]
    assert split_top_level("a='x,y',b={c: [1, 2]}") == ["a='x,y'", "b={c: [1, 2]}"]
    with pytest.raises(ConfigError, match="entry 2 is empty"):
        split_variants("ana,,lora")


def test_variant_label_is_stable_readable_and_filesystem_safe():
    assert variant_label("ana") == variant_label("ana", {}) == "ana"
    assert variant_label("ana", {"in_adapters": False, "gate": False}) == "ana-no_gate-no_in_adapters"
    assert variant_label("ana", {"gate": False, "in_adapters": False}) == "ana-no_gate-no_in_adapters"  # key order
    assert variant_label("ana", {"init": "authors", "in_adapter_init": "identity", "gate": True}) == \
        "ana-gate-in_adapter_init=identity-init=authors"
    assert variant_label(*parse_variant("ana[sites=[q, k],gate_noise.enabled=false,rank=4]")) == \
        "ana-no_gate_noise.enabled-rank=4-sites=q+k"
    odd = variant_label("ana", {"sites": "../a b/c:d"})
    assert re.fullmatch(r"[A-Za-z0-9._=+\-]+", odd) and "/" not in odd
    long_a, long_b = (variant_label("ana", {f"k{i}": "v" * 40 for i in range(n)}) for n in (5, 6))
    assert len(long_a) == len(long_b) == MAX_LABEL and long_a != long_b  # shortened, still distinct
