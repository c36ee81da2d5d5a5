"""End to end: a state directory or storage that cannot be used stops start-up before it listens.

One JSON line naming the variable to fix, exit 1, and nothing ever listening on the port.
"""

import json
import socket
import subprocess
from pathlib import Path

import pytest
from support.ports import free_port
from support.service import GUNICORN_COMMAND, SERVE_COMMAND, Service

pytestmark = pytest.mark.e2e

CONSOLE = {"SERVICE_PROVIDER": "console"}


@pytest.fixture
def immutable_folder(tmp_path):
    """A folder nobody, root included, can create a file in (chattr +i)."""
    folder = tmp_path / "immutable"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def refused(service: Service) -> dict:
    """Start `service`, expect exit 1 with one JSON line, and return that line."""
    with pytest.raises(RuntimeError, match="exited with 1"):
        service.start(timeout=20)
    lines = service.log_text().splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["level"] == "CRITICAL" and record["message"].startswith("configuration error: ")
    with pytest.raises(OSError):  # nothing listens, and nothing did: no "Listening at" either
        socket.create_connection(("127.0.0.1", service.port), timeout=2).close()
    return record


COMMANDS = pytest.mark.parametrize("command", [SERVE_COMMAND, GUNICORN_COMMAND], ids=["serve", "gunicorn -c"])


@COMMANDS
@pytest.mark.parametrize("state_dir", ["/proc/x", "/etc/hostname"], ids=["in /proc", "a file"])
def test_a_state_directory_that_cannot_be_used_is_refused_before_listening(command, state_dir):
    record = refused(Service({**CONSOLE, "STATE_DIR": state_dir}, command=command))
    assert record["message"].startswith("configuration error: STATE_DIR cannot hold the state file "
                                        f"{state_dir}/sms-service.db")
    assert "point STATE_DIR at a folder this user can write" in record["message"]


@COMMANDS
def test_an_immutable_state_directory_is_refused_before_listening(command, immutable_folder):
    record = refused(Service({**CONSOLE, "STATE_DIR": str(immutable_folder)}, command=command))
    assert "STATE_DIR cannot hold the state file" in record["message"]
    assert "Operation not permitted" in record["message"]
    assert list(immutable_folder.iterdir()) == []


@COMMANDS
def test_a_storage_uri_in_a_folder_that_cannot_be_written_is_refused(command, immutable_folder):
    uri = f"sqlite:///{immutable_folder}/state.db"
    record = refused(Service({**CONSOLE, "STORAGE_URI": uri}, command=command))
    assert record["message"].startswith(f"configuration error: STORAGE_URI {uri} cannot be opened and written")


@COMMANDS
def test_a_redis_nobody_listens_on_is_refused_before_listening(command):
    port = free_port()
    record = refused(Service({**CONSOLE, "STORAGE_URI": f"redis://:s3cret-pass@127.0.0.1:{port}/0"},
                             command=command))
    assert record["message"].startswith(f"configuration error: STORAGE_URI redis://:***@127.0.0.1:{port}/0 "
                                        "cannot be reached or written (ConnectionError")
    assert "s3cret-pass" not in record["message"]


def test_the_state_file_is_where_start_up_says():
    with Service(CONSOLE, command=SERVE_COMMAND) as service:
        where = next(r["message"] for r in service.log_records() if r["message"].startswith("state "))
    assert where == f"state in the SQLite file {service.state_dir / 'sms-service.db'}"
    assert Path(service.state_dir / "sms-service.db").exists()


def test_an_unknown_provider_is_one_line_with_no_warning_before_it():
    record = refused(Service({"SERVICE_PROVIDER": "nope"}, command=SERVE_COMMAND))
    assert record["message"].startswith("configuration error: SERVICE_PROVIDER 'nope' is not an installed provider; "
                                        "installed: ")


@COMMANDS
def test_a_port_in_use_is_one_line_naming_the_flag_and_the_variable(command):
    service = Service(CONSOLE, command=command)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", service.port))
        taken.listen()
        with pytest.raises(RuntimeError, match="exited with 1"):
            service.start(timeout=20)
    records = service.log_records()
    errors = [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
    assert len(errors) == 1
    assert errors[0]["message"] == (
        f"configuration error: HTTP_PORT {service.port} on 127.0.0.1 is in use by another process (another "
        "sms-service?): stop it, or choose another port with `sms-service serve --port` or HTTP_PORT")
    assert not [r for r in records if "Connection in use" in r["message"]]
