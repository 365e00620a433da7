from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.filters.rate_limit import RateLimitConfig
from gateway.limits.rules import BudgetRuleConfig, RateLimitRuleConfig, StaticPolicies
from gateway.policies import BudgetEnforcement, RateLimitRule
from services.kernel.identity import API_KEY_ACTOR, Principal
from services.kernel.spend import BudgetPeriod, SpendSubject, SubjectKind

KEY = Principal(actor_type=API_KEY_ACTOR, actor_id="k1", project_id="p1")


def test_static_policies_answer_the_rules_of_the_key_and_its_project() -> None:
    policies = StaticPolicies.of(
        [
            RateLimitRuleConfig(id="key", key="k1", requests_per_minute=5),
            RateLimitRuleConfig(id="project", project="p1", tokens_per_minute=100),
            RateLimitRuleConfig(id="other", key="k2", requests_per_minute=1),
        ],
        [BudgetRuleConfig(id="b", project="p1", amount_nanos=10, enforcement="alert_only")],
    )

    assert [rule.id for rule in policies.rate_limits(KEY)] == ["key", "project"]
    assert policies.rate_limits(KEY)[1].subject == SpendSubject(SubjectKind.PROJECT, "p1")
    budget = policies.budgets(KEY)[0]
    assert budget.period is BudgetPeriod.MONTH
    assert budget.enforcement is BudgetEnforcement.ALERT_ONLY
    assert policies.rate_limits(Principal()) == ()
    user = Principal(actor_type="user", actor_id="k1")
    assert policies.rate_limits(user) == ()  # a user id is not an API key id


def test_a_rule_names_exactly_one_subject() -> None:
    with pytest.raises(ValidationError, match="exactly one of key or project"):
        RateLimitRuleConfig(id="both", key="k", project="p", requests_per_minute=1)
    with pytest.raises(ValidationError, match="exactly one of key or project"):
        BudgetRuleConfig(id="none", amount_nanos=1)


def test_model_restricted_rules_apply_to_their_models_only() -> None:
    rule = RateLimitRuleConfig(id="m", key="k1", models=("a",), requests_per_minute=1).rule()
    assert rule.applies_to("a")
    assert not rule.applies_to("b")


def test_a_rule_on_a_model_covers_its_aliases_and_versions_but_not_other_models() -> None:
    rule = RateLimitRule("r", SpendSubject(SubjectKind.API_KEY, "k1"), models=("gpt-4o",))
    for ref in ("gpt-4o", "gpt-4o@production", "gpt-4o/versions/3"):
        assert rule.applies_to(ref), ref
    for ref in ("gpt-4o-mini", "chat", "gpt-4o-mini@production"):
        assert not rule.applies_to(ref), ref
    assert RateLimitRule("all", SpendSubject(SubjectKind.API_KEY, "k1")).applies_to("any")


def test_rate_limit_rules_in_config_need_unique_ids() -> None:
    with pytest.raises(ValidationError, match="repeated: \\['per-key'\\]"):
        RateLimitConfig.model_validate(
            {
                "rules": [
                    {"id": "per-key", "key": "k1", "requests_per_minute": 5},
                    {"id": "per-key", "project": "p1", "requests_per_minute": 9},
                ]
            }
        )
