"""The offer search language: every field and operator translates to API filters or is an error
naming it; nothing is dropped."""

import pytest
from marketplace_client import QueryError, parse_query


def test_the_issues_example_translates_to_api_filters():
    query = (
        "accelerator_model in [h100-80g,a100-80g] num_accelerators>=2 region=eu-west price_per_hour<3 reliability>0.98"
    )
    assert parse_query(query) == {
        "accelerator_model__in": "h100-80g,a100-80g",
        "min_accelerators": "2",
        "region": "eu-west",
        "max_price_per_hour": "2.999999",
        "min_reliability": "0.9801",
    }


@pytest.mark.parametrize(
    ("query", "params"),
    [
        ("num_accelerators=8", {"min_accelerators": "8", "max_accelerators": "8"}),
        ("num_gpus>4", {"min_accelerators": "5"}),
        ("accelerators<4", {"max_accelerators": "3"}),
        ("gpu_ram>=80 vcpus>=16 ram_gb>64", {"min_accelerator_memory_gb": "80", "min_vcpus": "16", "min_ram_gb": "65"}),
        ("kind=DSA tier=edge verified=all", {"accelerator_kind": "dsa", "tier": "edge", "verified": "all"}),
        ("price <= 2.5  region in [eu-west, us-east]", {"max_price_per_hour": "2.5", "region__in": "eu-west,us-east"}),
        ("type=h100-80g.1x", {"instance_type": "h100-80g.1x"}),
        ("", {}),
    ],
)
def test_fields_aliases_and_operators(query, params):
    assert parse_query(query) == params


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("gpu_brand=nvidia", "gpu_brand"),
        ("price_per_hour>1", "'>'"),
        ("region!=eu-west", "'!='"),
        ("reliability<0.9", "'<'"),
        ("instance_type in [a,b]", "'in'"),
        ("num_accelerators>=two", "two"),
        ("price_per_hour<=-1", "-1"),
        ("price_per_hour<=NaN", "NaN"),
        ("kind=tpu", "tpu"),
        ("region=[a,b]", "needs `in`"),
        ("region in []", "names nothing"),
        ("region=eu-west garbage", "garbage"),
        ("region=eu-west region=us-east", "twice"),
        ("num_accelerators>=²", "²"),
        ("price_per_hour<0", "matches nothing"),
    ],
)
def test_what_cannot_be_translated_is_an_error_naming_it(query, named):
    with pytest.raises(QueryError, match=None) as error:
        parse_query(query)
    assert named in str(error.value)
