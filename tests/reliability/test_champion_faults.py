"""Promotions on gs:// and s3:// through the fault-injecting proxy: the champion is always valid.

Valid: champion.json points at an existing, complete version whose model is the one it names;
no promotion's answer is lost, and no version folder is left half-written.
"""

from __future__ import annotations

import pytest
from catsdogs.components.common import storage
from catsdogs.components.promote import core as gate

from tests.reliability.conftest import champion_is_valid
from tests.reliability.fault_proxy import (
    FaultProxy,
    conditional_write,
    conditional_write_of,
    storage_through,
)


def _promote(promotable: dict, name: str, location: str) -> gate.PromotionResult:
    model, evaluation = promotable[name]
    return gate.promote(model, evaluation, promotable["data"], location)


def _versions(location: str) -> dict[str, set[str]]:
    files: dict[str, set[str]] = {}
    for name in storage.list_files(storage.join(location, "versions")):
        version, _, file = name.partition("/")
        files.setdefault(version, set()).add(file)
    return files


@pytest.mark.parametrize(
    "lost",
    ["champion.json", "evaluation.json", "model.keras", "every conditional write"],
)
def test_lost_answer_to_a_conditional_write_keeps_the_champion(
    lost: str, backend: tuple[str, str], promotable: dict
) -> None:
    bucket, server = backend
    location = f"{bucket}/champion"
    target = conditional_write if lost.startswith("every") else conditional_write_of(lost)
    with storage_through(FaultProxy(server, lose_response=target)) as proxy:
        first = _promote(promotable, "first", location)
        assert first.promoted and first.version == 1, first
        assert champion_is_valid(location)["version"] == 1
        better = _promote(promotable, "better", location)
        assert better.promoted and better.version == 2, better
        worse = _promote(promotable, "worse", location)
        assert not worse.promoted and worse.version == 2, worse
        assert proxy.lost, "no answer was lost: the test did not test anything"
    record = champion_is_valid(location)
    assert record["version"] == 2 and record["previous_version"] == 1
    assert record["model_sha256"] == gate.records.sha256_file(
        f"{promotable['better'][0]}/model.keras"
    )
    versions = _versions(location)
    assert sorted(versions) == ["v0001", "v0002"]  # nothing lost, no orphan
    assert all({"evaluation.json", "model.keras"} <= files for files in versions.values())


def test_random_faults_leave_a_valid_champion_after_every_promotion(
    backend: tuple[str, str], promotable: dict
) -> None:
    bucket, server = backend
    location = f"{bucket}/champion"
    expected = {"first": (True, 1), "better": (True, 2), "worse": (False, 2)}
    with storage_through(FaultProxy(server, rate=0.12, seed=3)) as proxy:
        for name, (promoted, version) in expected.items():
            result = _promote(promotable, name, location)
            assert (result.promoted, result.version) == (promoted, version), (name, result)
            assert champion_is_valid(location)["version"] == version
        injected = proxy.counts["503"] + proxy.counts["429"] + proxy.counts["reset"]
    assert injected >= 3, proxy.counts
    assert sorted(_versions(location)) == ["v0001", "v0002"]
