"""The GPU workflow runs no stranger's code on the self-hosted runner, and its actions are pinned."""

import re
from pathlib import Path

WORKFLOWS = sorted((Path(__file__).parent.parent / ".github" / "workflows").glob("*.yml"))


def test_there_is_a_gpu_workflow():
    assert any("self-hosted" in path.read_text() for path in WORKFLOWS)


def test_no_pull_request_trigger_on_a_self_hosted_runner():
    for path in WORKFLOWS:
        text = path.read_text()
        if "self-hosted" in text:
            triggers = text.split("\non:", 1)[1].split("\npermissions:", 1)[0]
            assert "pull_request" not in triggers, f"{path.name}: forks' pull requests would run on the GPU runner"


def test_least_privilege_token():
    for path in WORKFLOWS:
        text = path.read_text()
        assert re.search(r"^permissions:\n  contents: read\n", text, re.M), path.name
        assert "write" not in text.split("\npermissions:", 1)[1].split("\njobs:", 1)[0], path.name


def test_actions_are_pinned_by_commit_and_checkout_keeps_no_credentials():
    for path in WORKFLOWS:
        text = path.read_text()
        uses = re.findall(r"uses:\s*(\S+)", text)
        assert uses, path.name
        for action in uses:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{path.name}: {action} is not pinned"
        if "actions/checkout" in text:
            assert "persist-credentials: false" in text
