"""The container stack's front door entry (serving/containers/front_tasks.sh)
without Docker: the real nginx with the stack's rendered config, two stand-in
MMS tasks on 127.0.0.2 and 127.0.0.3, and Swarm's DNS name played by an
/etc/hosts bound over the real one in a mount namespace of the entry's own.
The loop must follow the name (a task added, one gone, none; an empty answer
only when it lasts), nginx must keep
its connections to the tasks (far fewer connections than requests), no
request may fail while the tasks change, and SIGTERM must stop it all."""

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import threading

import pytest
from aiohttp import web

from fizbuz.contract import PREDICT_PATH, request_body
from fizbuz.lifecycle import free_port, wait_until
from serving.containers import images, stack
from serving.front import client, config, tokens
from stub_server import StubServer

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

NAME = "tasks.fbz_mms"


class Task(StubServer):
    """A stand-in MMS task: answers the card's path and remembers each
    connection it was asked on (the peer's address and port)."""

    def __init__(self, host, port):
        super().__init__(host=host, port=port)
        self.requests = 0
        self.connections = set()
        self.hold = threading.Event()  # set: requests wait until it is cleared
        self.in_flight = self.most_in_flight = 0

    def routes(self, app):
        app.router.add_post(PREDICT_PATH, self.predict)

    async def predict(self, request):
        self.requests += 1
        self.connections.add(request.transport.get_extra_info("peername"))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            while self.hold.is_set():
                await asyncio.sleep(0.01)
        finally:
            self.in_flight -= 1
        return web.json_response({"next_number": "FizzBuzz", "task": self.host})


@pytest.fixture
def door(front_door, nginx_installed, tls_pair, token_file):
    """The stack's front door settings, its files moved to a temp folder, on a free port."""
    front = front_door
    settings = dataclasses.replace(
        stack.front_settings(stack.Options(stack="fbz")),
        listen=f"127.0.0.1:{free_port()}",
        tokens_map=str(front.tokens_map),
        door_js=str(images.DOOR_JS),
        certificate=str(tls_pair / "c.pem"),
        key=str(tls_pair / "k.pem"),
    )
    front.prefix.mkdir(parents=True)
    (front.prefix / config.TASKS_FILE).write_text("server 127.0.0.1:1 down;\n")  # for nginx -t
    front.write(settings, token_file)
    front.settings, front.token_file = settings, token_file
    front.port = int(settings.listen.rsplit(":", 1)[1])
    front.token = tokens.read(token_file)["default"]
    front.cafile = tls_pair / "c.pem"
    return front


class Entry:
    """front_tasks.sh in a mount namespace whose /etc/hosts is `hosts`."""

    def __init__(self, door, hosts, port, log, admission=None):
        self.door, self.hosts, self.log = door, hosts, log
        env = {
            **os.environ,
            **({"FIZBUZ_ADMISSION": str(admission)} if admission is not None else {}),
            "FIZBUZ_FRONT_TASKS": f"{NAME}:{port}",
            "FIZBUZ_FRONT_CONFIG": str(door.conf),
            "FIZBUZ_FRONT_TASKS_FILE": str(door.prefix / config.TASKS_FILE),
            "FIZBUZ_FRONT_PID_FILE": str(door.prefix / "nginx.pid"),
            "FIZBUZ_FRONT_TASKS_INTERVAL": "0.5",  # the hiccup check below stops it within 2 looks
        }
        script = 'mount --bind "$0" /etc/hosts && exec "$1"'
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--", "bash", "-c", script, str(hosts), str(images.FRONT_TASKS_SH)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def tasks(self, addresses):
        # In place (same inode): the bind mount shows the file, not a name.
        with open(self.hosts, "w") as out:
            out.writelines(f"{address} {NAME}\n" for address in addresses)

    def reloads(self):
        return self.log.read_text().count("changed, nginx reloaded")

    def listed(self):
        path = self.door.prefix / config.TASKS_FILE
        return sorted({line.split()[1].split(":")[0] for line in path.read_text().splitlines() if "down" not in line})

    def workers(self):
        return {worker.pid for worker in self.door.workers()}

    def follows(self, addresses, reloads, old_workers):
        """Wait until the upstream file lists `addresses`, nginx was reloaded
        `reloads` times and the workers from before (`old_workers`, which may
        still take a connection until the master tells them to stop) are gone."""
        wait_until(
            lambda: (
                self.listed() == sorted(addresses) and self.reloads() >= reloads and not self.workers() & old_workers
            ),
            60,
            f"the door's tasks to become {addresses}",
            alive=self.alive,
        )

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            raise


def card_request(door):
    return client.request(
        "127.0.0.1",
        door.port,
        "POST",
        PREDICT_PATH,
        door.cafile,
        door.token,
        body=request_body(14),
        headers={"Content-Type": "application/json"},
    )


def ask(door, count=1):
    """`count` card requests through the door, one at a time: their statuses."""
    return [card_request(door)[0] for _ in range(count)]


class Background(threading.Thread):
    """Requests one after another while the tasks change: every status kept."""

    def __init__(self, door):
        super().__init__(daemon=True)
        self.door, self.statuses, self.done = door, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            self.statuses += ask(self.door)

    def finish(self):
        self.done.set()
        self.join(timeout=60)
        return self.statuses


def test_the_door_follows_the_tasks_keeps_connections_and_loses_no_request(tmp_path, door):
    port = free_port()
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.2 {NAME}\n")
    with Task("127.0.0.2", port) as first, Task("127.0.0.3", port) as second:
        entry = Entry(door, hosts, port, tmp_path / "entry.log")
        try:
            # One task: nginx keeps its connections (2 workers: a few, not one per request).
            wait_until(lambda: ask(door) == [200], 60, "the door to answer through the task", alive=entry.alive)
            before = first.requests
            assert ask(door, 60) == [200] * 60
            assert first.requests - before == 60 and 1 <= len(first.connections) <= 4, first.connections
            assert entry.listed() == ["127.0.0.2"] and entry.reloads() == 0

            # A task added, then the first one gone, under requests: none fails.
            load = Background(door)
            load.start()
            workers = entry.workers()
            entry.tasks(["127.0.0.2", "127.0.0.3"])
            entry.follows(["127.0.0.2", "127.0.0.3"], reloads=1, old_workers=workers)
            wait_until(lambda: second.requests >= 10, 60, "requests on the added task")
            workers = entry.workers()
            entry.tasks(["127.0.0.3"])
            entry.follows(["127.0.0.3"], reloads=2, old_workers=workers)
            statuses = load.finish()
            assert statuses and set(statuses) == {200}, statuses
            left = first.requests
            assert ask(door, 20) == [200] * 20 and first.requests == left
            assert len(second.connections) < second.requests / 4, (second.connections, second.requests)

            # A DNS hiccup (one empty answer) leaves the upstream alone. The entry
            # is stopped (SIGSTOP) between its looks, so the test decides what
            # its next look sees, whatever the machine's speed.
            reloads = entry.reloads()
            entry.tasks([])
            wait_until(lambda: "(look 1 of 3)" in entry.log.read_text(), 60, "an empty look", alive=entry.alive)
            os.kill(entry.process.pid, signal.SIGSTOP)
            entry.tasks(["127.0.0.3"])
            os.kill(entry.process.pid, signal.SIGCONT)
            assert ask(door, 10) == [200] * 10
            assert entry.listed() == ["127.0.0.3"] and entry.reloads() == reloads

            # No task: an explicit 503 from the door, and back when one returns.
            workers = entry.workers()
            entry.tasks([])
            entry.follows([], reloads=3, old_workers=workers)
            assert "down" in (door.prefix / config.TASKS_FILE).read_text()
            status, headers, text = card_request(door)
            assert status == 503 and "error" in json.loads(text) and headers.get("retry-after")
            workers = entry.workers()
            entry.tasks(["127.0.0.2"])
            entry.follows(["127.0.0.2"], reloads=4, old_workers=workers)
            wait_until(lambda: ask(door) == [200], 60, "the door to answer again")
        finally:
            master = door.master()
            status = entry.stop()
    assert status == 0, entry.log.read_text()
    assert "nginx exited (status 0)" in entry.log.read_text()
    assert master is not None and not master.is_running()


def test_past_the_caps_the_door_answers_503_at_once_and_a_task_holds_no_more(tmp_path, door):
    """Admission control on the stack's door (issue 23): front_tasks.sh puts
    max_conns on each server line, the group's zone shares the counts between
    nginx's workers; a request that finds every entry at its cap is answered
    503 + Retry-After by the door while the admitted ones are still held."""
    cap = 2  # a task is a primary and a backup entry: 2 x cap in flight at most
    # Held requests must not meet the door's 3 s read timeout on a slow machine.
    door.write(dataclasses.replace(door.settings, read_timeout=120), door.token_file)
    port = free_port()
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.2 {NAME}\n")
    with Task("127.0.0.2", port) as task:
        entry = Entry(door, hosts, port, tmp_path / "entry.log", admission=cap)
        try:
            wait_until(lambda: ask(door) == [200], 60, "the door to answer through the task", alive=entry.alive)
            lines = (door.prefix / config.TASKS_FILE).read_text().splitlines()
            assert len(lines) == 2 and all(line.endswith(f" max_conns={cap};") for line in lines), lines
            answers = []
            task.hold.set()
            senders = [threading.Thread(target=lambda: answers.append(card_request(door))) for _ in range(10)]
            for sender in senders:
                sender.start()
            wait_until(lambda: len(answers) == 10 - 2 * cap, 120, "the requests past the caps to be answered")
            refused = list(answers)
            assert task.in_flight == 2 * cap
            task.hold.clear()
            for sender in senders:
                sender.join(timeout=120)
        finally:
            task.hold.clear()
            status = entry.stop()
    assert status == 0, entry.log.read_text()
    assert task.most_in_flight == 2 * cap
    for code, headers, text in refused:
        assert code == 503 and headers.get("retry-after") == "1", (code, headers, text)
        assert "overloaded: every model host is at its limit" in json.loads(text)["error"]
    assert sorted(code for code, _, _ in answers) == [200] * (2 * cap) + [503] * (10 - 2 * cap)
