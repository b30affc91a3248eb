"""The daemon hands a start command's payload, `authorized_keys` included, to the runtime."""

import json

from agent.daemon import Agent
from agent.runtimes import ProcessRuntime

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1111111111111111111111111111111111111111111 alice@laptop"


class RecordingClient:
    def __init__(self):
        self.posts = []

    def post(self, path, body):
        self.posts.append((path, body))
        return {}


def test_a_start_command_installs_the_payload_keys(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.json").write_text(json.dumps({"platform": "http://platform", "credential": "hcr_x"}))
    runtime = ProcessRuntime(state_dir / "instances")
    client = RecordingClient()
    agent = Agent(state_dir=state_dir, runtime=runtime, client=client)
    command = {
        "id": 1,
        "kind": "start",
        "instance_id": 21,
        "payload": {"image": "ubuntu:24.04", "command": "sleep 60", "accelerators": 0, "authorized_keys": KEY},
    }
    try:
        agent.execute(command)
        keys = state_dir / "instances" / "21" / "authorized_keys"
        assert keys.read_text() == f"{KEY}\n"
        assert ("commands/1/ack/", {"ok": True, "detail": ""}) in client.posts
        agent.execute(command)  # the same command re-delivered: acknowledged, not run again
        assert keys.read_text() == f"{KEY}\n"
        agent.execute({"id": 2, "kind": "terminate", "instance_id": 21, "payload": {}})
        assert not keys.exists()
    finally:
        runtime.remove(21)
