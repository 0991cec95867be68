"""Shared fixtures: the real model, the real committed index, the real chain.

They load once per test session (a few seconds on 2 cores)."""

from __future__ import annotations

import pytest

from planqa.config import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def searcher(settings):
    from planqa.retrieval import load_searcher

    return load_searcher(settings)


@pytest.fixture(scope="session")
def qa(settings, searcher):
    from planqa.chain import PlanQA

    return PlanQA(settings, searcher=searcher)


@pytest.fixture(scope="session")
def plan(settings):
    """The parsed plan alone: parser tests need no model and no index."""
    from planqa.corpus import load_plan

    return load_plan(settings.plan_path)
