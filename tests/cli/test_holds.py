"""`fleet hold` and who a hold belongs to: only its holder books or extends it; managers release."""

from __future__ import annotations

from datetime import datetime

from tests.cli.test_cli import as_json, fleet_cli, lot  # noqa: F401 - shared CLI fixtures


def _anna_holds(fleet_cli, lot, plate: str) -> dict:  # noqa: F811
    return as_json(
        fleet_cli("hold", "place", plate, "--from", lot.iso(24), "--to", lot.iso(48),
                  "--location", "BER1", "--user", "anna", "--minutes", 5, "--json")
    )  # fmt: skip


def test_only_the_holder_converts_or_extends_and_others_are_told_whose(fleet_cli, lot):  # noqa: F811
    hold = _anna_holds(fleet_cli, lot, "B AB 1234")
    tries = {
        "convert": fleet_cli(
            "hold", "convert", hold["id"], "--customer", lot.world.bob.id, "--user", "ben"
        ),
        "extend": fleet_cli("hold", "extend", hold["id"], "--user", "ben"),
        "release": fleet_cli("hold", "release", hold["id"], "--user", "ben"),
    }
    for doing, out in tries.items():
        assert out.exit_code == 2, (doing, out.output)
        assert f"hold #{hold['id']} on B AB 1234 is Anna Agent's until" in out.stderr, doing
    assert "only they can book it" in tries["convert"].stderr
    assert "ask Anna Agent, or a manager" in tries["release"].stderr

    longer = as_json(
        fleet_cli("hold", "extend", hold["id"], "--user", "anna", "--minutes", 30, "--json")
    )
    gained = datetime.fromisoformat(longer["expires_at"]) - datetime.fromisoformat(
        hold["expires_at"]
    )
    assert gained.total_seconds() > 24 * 60  # from 5 to 30 minutes
    said = fleet_cli("hold", "extend", hold["id"], "--user", "anna")
    assert said.exit_code == 0 and f"hold #{hold['id']} on B AB 1234 now runs out" in said.stdout


def test_manager_releases_someone_elses_hold_only_with_a_reason(fleet_cli, lot):  # noqa: F811
    hold = _anna_holds(fleet_cli, lot, "B CD 500")
    bare = fleet_cli("hold", "release", hold["id"], "--user", "maria")
    assert bare.exit_code == 2
    assert "a reason is needed to release Anna Agent's hold" in bare.stderr

    released = as_json(
        fleet_cli("hold", "release", hold["id"], "--user", "maria",
                  "--reason", "customer walked out", "--json")
    )  # fmt: skip
    assert released["state"] == "cancelled"
    assert as_json(fleet_cli("hold", "list", "--json")) == []
