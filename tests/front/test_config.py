"""Rendering and the tokens file, checked by the real nginx (no servers started)."""

import dataclasses
import os
import re
import socket
import subprocess

import pytest

from fizbuz.contract import PREDICT_PATH, ROOT, SINGLE_PREDICT_PATH
from fizbuz.lifecycle import LifecycleError, free_port
from serving.containers import images, stack
from serving.front import config, tokens
from serving.front.fleet import Fleet, FleetError, Options
from serving.front.nginx import NginxError


def settings(**changes):
    values = dict(
        listen="127.0.0.1:20443", hosts=["10.1.2.2:9000", "10.1.2.3:9000"], certificate="/c.pem", key="/k.pem"
    )
    values.update(changes)
    return config.FrontSettings(**values)


def test_drained_host_is_marked_down_and_all_fields_are_filled(tmp_path):
    text = config.render(settings(drained={"10.1.2.3:9000"}), tmp_path)
    assert "        server 10.1.2.2:9000 max_fails=2 fail_timeout=2s max_conns=64;\n" in text
    assert "server 10.1.2.3:9000 max_fails=2 fail_timeout=2s max_conns=64 down;" in text
    assert re.findall(r"@[A-Z_]+@", text) == []  # named locations (@retry, ...) are lower case


def test_the_507_retry_goes_to_the_hosts_in_rotation_but_the_failed_one(tmp_path):
    three = ["10.1.2.2:9000", "10.1.2.3:9000", "10.1.2.4:9000"]
    text = config.render(settings(hosts=three, drained={"10.1.2.4:9000"}), tmp_path)
    group = text.split("upstream fizbuz_not_1 {")[1].split("}")[0]
    primaries = [line for line in group.splitlines() if "server" in line and "backup" not in line]
    assert primaries == ["        server 10.1.2.3:9000 max_fails=2 fail_timeout=2s max_conns=32;"]
    assert '"10.1.2.2:9000" fizbuz_not_1;' in text
    assert "proxy_pass http://$fizbuz_retry_group$fizbuz_target_path;" in text
    # One host in rotation: its 507 goes back to every host in rotation (that host again).
    two = config.render(settings(drained={"10.1.2.3:9000"}), tmp_path)
    retry_map = two.split("map $upstream_addr $fizbuz_retry_group")[1].split("}")[0]
    assert '"10.1.2.2:9000"' not in retry_map and "default fizbuz_retry_any;" in retry_map


def test_hosts_in_rotation_are_also_backups_never_marked_failed(tmp_path):
    # When failures took every primary out (two hosts losing a worker within
    # fail_timeout), nginx goes to the backups instead of "no live upstreams".
    group = config.render(settings(), tmp_path).split("upstream fizbuz_hosts {")[1].split("}")[0]
    assert "server 10.1.2.2:9000 backup max_fails=0 max_conns=64;" in group
    assert "server 10.1.2.3:9000 backup max_fails=0 max_conns=64;" in group
    # A lone host in rotation: its own retry target; a drained host is no backup.
    text = config.render(settings(drained={"10.1.2.2:9000"}), tmp_path)
    group = text.split("upstream fizbuz_hosts {")[1].split("}")[0]
    assert "server 10.1.2.3:9000 backup max_fails=0 max_conns=64;" in group and "10.1.2.2:9000 backup" not in group


def test_admission_and_the_retry_budget_are_caps_shared_by_every_nginx_worker(tmp_path):
    # Issue 23: max_conns per host entry, in a zone (one count for every nginx worker).
    text = config.render(settings(admission=5, retry_budget=2), tmp_path)
    group = text.split("upstream fizbuz_hosts {")[1].split("}")[0]
    assert "zone fizbuz_hosts 64k;" in group
    assert [line.split("max_conns=")[1] for line in group.splitlines() if "server" in line] == ["5;"] * 4
    for name in ("fizbuz_not_1", "fizbuz_not_2", "fizbuz_retry_any"):
        retry = text.split(f"upstream {name} {{")[1].split("}")[0]
        assert f"zone {name} 64k;" in retry and all("max_conns=2;" in l for l in retry.splitlines() if "server" in l)
    # A failed try goes to the retry location; only a refused connection moves on by itself.
    card = text.split(f"location = {PREDICT_PATH} {{")[1].split("location @retry")[0]
    assert "proxy_next_upstream error non_idempotent;" in card and "error_page 500 502 504 507 = @retry;" in card
    off = config.render(settings(admission=0, retry_budget=0), tmp_path)
    assert " max_conns=" not in off and "zone fizbuz" not in off


def test_the_share_retry_budget_is_lua_in_the_retry_locations_and_off_at_share_0(tmp_path):
    # Issue 23: successes deposited per request (log phase), retries withdrawn in
    # both retry locations before their `if`s; share 0 and the stack's door load no Lua.
    text = config.render(settings(retry_share=0.25, retry_floor=2.5), tmp_path)
    assert all(f"load_module {module};" in text for module in config.LUA_MODULES)
    assert "lua_shared_dict fizbuz_budget" in text and "rewrite_by_lua_no_postpone on;" in text
    assert "init_by_lua_block { require('retry_budget') }" in text  # the master loads it, not the workers
    assert "init_worker_by_lua_block { require('retry_budget').flush_every(10) }" in text
    assert f'lua_package_path "{config.RETRY_BUDGET_LUA.parent}/?.lua;;";' in text
    server = text.split("    server {")[1].split("location = ")[0]
    assert f"log_by_lua_block {{ require('retry_budget').deposit({config.RETRY_WINDOW}) }}" in server
    withdraw = f"require('retry_budget').withdraw(0.25, 2.5, {config.RETRY_WINDOW})"
    for name in ("@retry", "@retry_call"):
        location = text.split(f"location {name} {{")[1].split("\n        }")[0]
        assert location.index(withdraw) < location.index("if ($fizbuz_retry = spent)") < location.index("proxy_pass")
        assert "retry budget is spent" in location
    assert text.count(withdraw) == 2 and "retry=$fizbuz_retry" in text
    for off in (
        config.render(settings(retry_share=0), tmp_path),
        config.render(settings(hosts=[], dns_hosts="tasks.x_mms:8080"), tmp_path),
    ):
        assert not [
            line for line in off.splitlines() if "lua_module" in line or "lua_shared_dict" in line or "_by_lua" in line
        ]
        assert 'set $fizbuz_retry "";' in off  # the log format's field is there either way


@pytest.mark.parametrize(
    "changes",
    [
        {"admission": -1},
        {"retry_budget": "8"},
        {"retry_after": 0},
        {"admission": True},
        {"retry_share": 1.5},
        {"retry_floor": -1},
        {"retry_share": "0.1"},
        {"retry_floor": True},
    ],
)
def test_bad_overload_settings_are_refused(tmp_path, changes):
    with pytest.raises(ValueError, match="must be"):
        config.render(settings(**changes), tmp_path)


def _target_map(text):
    block = text.split("map $connections_active $fizbuz_target_path {")[1].split("}")[0]
    return dict(line.strip().rstrip(";").split() for line in block.strip().splitlines())


def test_adaptive_routing_sends_quiet_requests_to_batch_1_and_busy_ones_batched(tmp_path):
    text = config.render(settings(adaptive_threshold=3), tmp_path)
    targets = _target_map(text)
    assert targets == {
        "default": PREDICT_PATH,
        "0": SINGLE_PREDICT_PATH,
        "1": SINGLE_PREDICT_PATH,
        "2": SINGLE_PREDICT_PATH,
        "3": SINGLE_PREDICT_PATH,
    }
    # Every way to a host follows the map: the first try, the 507 retry, readiness,
    # and the v2/gRPC calls' first try and 507 retry.
    assert text.count("proxy_pass http://fizbuz_hosts$fizbuz_target_path;") == 3
    assert text.count("proxy_pass http://$fizbuz_retry_group$fizbuz_target_path;") == 2
    assert "proxy_pass " not in text.replace("proxy_pass http://fizbuz_hosts$fizbuz_target_path;", "").replace(
        "proxy_pass http://$fizbuz_retry_group$fizbuz_target_path;", ""
    )  # (proxy_pass_request_headers: not a way)


@pytest.mark.parametrize("routing, default", [("batched", PREDICT_PATH), ("single", SINGLE_PREDICT_PATH)])
def test_fixed_routings_send_everything_one_way(tmp_path, routing, default):
    assert _target_map(config.render(settings(routing=routing), tmp_path)) == {"default": default}


@pytest.mark.parametrize(
    "changes, message", [({"routing": "fast"}, "routing must be"), ({"adaptive_threshold": 0}, "threshold must be")]
)
def test_bad_routing_settings_are_refused(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        config.render(settings(**changes), tmp_path)


def test_every_host_drained_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot drain every host"):
        config.render(settings(drained={"10.1.2.2:9000", "10.1.2.3:9000"}), tmp_path)


def test_token_file_round_trip_and_revoke(tmp_path):
    path = tmp_path / "tokens.txt"
    first = tokens.add(path, "alice")
    tokens.add(path, "bob", "b" * 20)
    assert tokens.read(path) == {"alice": first, "bob": "b" * 20}
    tokens.revoke(path, "alice")
    assert tokens.read(path) == {"bob": "b" * 20}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # A regex key: compared case-sensitively (issue 22), the scheme's case aside.
    assert tokens.render_map(tokens.read(path)) == f'"~^(?i:Bearer) {"b" * 20}$" "bob";\n'


@pytest.mark.parametrize(
    "line", ['eve "x;}" ', "eve short", "e;ve " + "a" * 20, "eve " + "a" * 20 + " extra", "eve " + "a" * 19 + '"']
)
def test_tokens_that_could_break_the_config_are_refused(tmp_path, line):
    path = tmp_path / "tokens.txt"
    path.write_text(line + "\n")
    with pytest.raises(tokens.TokenError, match="tokens.txt:1"):
        tokens.read(path)


def test_nginx_accepts_the_rendered_config_and_refuses_a_broken_one(front_door, nginx_installed, tls_pair, token_file):
    pair = tls_pair
    door = front_door
    door.write(settings(certificate=str(pair / "c.pem"), key=str(pair / "k.pem")), token_file)  # runs nginx -t
    with pytest.raises(NginxError, match="rejects"):
        door.write(settings(certificate=str(pair / "missing.pem"), key=str(pair / "k.pem")), token_file)


def test_the_container_stacks_front_door_is_the_same_template_in_dns_mode(
    front_door, nginx_installed, tls_pair, token_file
):
    """The stack's own settings, only its image's file paths moved to a temp
    folder: nginx -t catches a template or settings change that breaks the
    container's front door without building it."""
    door = front_door
    in_image = stack.front_settings(stack.Options(stack="fbz"))
    assert in_image.door_js == images.FRONT_DOOR_JS  # baked into the front image from serving/front/door.js
    settings = dataclasses.replace(
        in_image,
        tokens_map=str(door.tokens_map),
        door_js=str(images.DOOR_JS),
        certificate=str(tls_pair / "c.pem"),
        key=str(tls_pair / "k.pem"),
    )
    door.prefix.mkdir(parents=True)
    # What the image's entry writes before nginx starts (no task answers here).
    (door.prefix / config.TASKS_FILE).write_text(front_tasks_lines("tasks.fbz_mms:8080"))
    door.write(settings, token_file)  # runs nginx -t (njs loads door.js)
    text = door.conf.read_text()
    assert f"js_import fizbuz_door from {images.DOOR_JS};" in text
    group = text.split("    upstream fizbuz_tasks {")[1].split("}")[0]
    assert f"include {door.prefix}/tasks.conf;" in group and "keepalive 64;" in group
    assert "zone fizbuz_tasks 64k;" in group  # the max_conns of front_tasks.sh, shared by the workers
    assert "resolver" not in text and text.count("\n    upstream ") == 1
    assert "map $host $fizbuz_hosts { default fizbuz_tasks; }" in text
    assert text.count("proxy_pass http://$fizbuz_hosts$fizbuz_target_path;") == 3
    assert "proxy_pass http://$fizbuz_retry_group$fizbuz_target_path;" in text
    assert _target_map(text) == {"default": PREDICT_PATH}  # the tasks register no batch-1 model
    assert "error_log stderr warn;" in text and "metrics.log" not in text
    # The fleet's rules hold in the container too (they once drifted apart).
    for rule in (
        "error_page 414 /_errors/414;",
        'return 405 \'{"error": "use GET"',
        "error_page 429 = @too_many;",
        "headers too large",
    ):
        assert rule in text


def front_tasks_lines(name, env=None):
    """The stack door's server lines for `name` now, as its entry prints them."""
    environment = {**os.environ, "FIZBUZ_FRONT_TASKS": name, **(env or {})}
    done = subprocess.run(
        [str(images.FRONT_TASKS_SH), "--print"], env=environment, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_stack_doors_per_request_lookup_is_still_there_when_keepalive_is_off(tmp_path):
    off = stack.front_settings(stack.Options(stack="fbz", front_keepalive=False))
    text = config.render(off, tmp_path)
    assert "resolver 127.0.0.11 valid=1s ipv6=off;" in text and "\n    upstream " not in text
    assert "map $host $fizbuz_hosts { default tasks.fbz_mms:8080; }" in text


def test_front_tasks_prints_capped_lines_a_down_server_for_no_task_and_refuses_bad_values():
    assert front_tasks_lines("no-such-name.invalid:8080") == "server 127.0.0.1:1 down;  # no healthy task in DNS\n"
    lines = front_tasks_lines("localhost:8080").splitlines()
    cap = f" max_conns={config.ADMISSION}"  # the settings table's default, as the fleet's door
    assert lines == [
        f"server 127.0.0.1:8080 max_fails=2 fail_timeout=2s{cap};",
        f"server 127.0.0.1:8080 backup max_fails=0{cap};",
    ]
    # Admission 0: no cap on the lines.
    lines = front_tasks_lines("localhost:8080", {"FIZBUZ_ADMISSION": "0"}).splitlines()
    assert lines == ["server 127.0.0.1:8080 max_fails=2 fail_timeout=2s;", "server 127.0.0.1:8080 backup max_fails=0;"]
    bad_values = [
        {"FIZBUZ_FRONT_TASKS": bad} for bad in ("tasks x:80", "tasks.x", "tasks.x:80;include", "tasks.x:123456")
    ]
    bad_values += [{"FIZBUZ_FRONT_TASKS": "localhost:8080", "FIZBUZ_ADMISSION": bad} for bad in ("-1", "ten", "100001")]
    for bad in bad_values:
        done = subprocess.run(
            [str(images.FRONT_TASKS_SH), "--print"],
            env={**os.environ, **bad},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2 and "must be" in done.stderr and list(bad)[-1] in done.stderr, bad


def test_hosts_and_a_dns_name_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        config.render(settings(dns_hosts="tasks.x_mms:8080"), tmp_path)


@pytest.mark.parametrize("script", ["serving/front/fleet.sh", "serving/front/setup_nginx.sh"])
def test_scripts_explain_themselves(script):
    result = subprocess.run([str(ROOT / script), "-h"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("Usage:")


def test_nginx_set_up_rerun_is_a_quiet_no_op(nginx_installed):
    result = subprocess.run([str(ROOT / "serving/front/setup_nginx.sh")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_without_root_the_fleet_plans_loopback_addresses_and_says_so(tmp_path, monkeypatch, caplog):
    from serving.front import network
    from serving.front.fleet import Fleet, Options

    monkeypatch.setattr(network.os, "geteuid", lambda: 1000)
    assert not network.namespaces_possible()
    with caplog.at_level("WARNING"):
        state = Fleet(tmp_path)._plan(Options(hosts=3, metrics_port=0))
    assert state["mode"] == "loopback"
    assert [h["namespace"] for h in state["hosts"]] == [None, None, None]
    addresses = [h["address"] for h in state["hosts"]]
    assert all(a.startswith("127.") for a in addresses) and len(set(addresses)) == 3
    assert "no network namespaces" in caplog.text


def test_run_in_calls_inside_a_namespace_and_only_there():
    """Host management calls go through network.run_in: a fresh namespace has
    only its loopback, and the caller's own thread stays where it was."""
    import secrets
    import socket
    from serving.front import network

    if not network.namespaces_possible():
        pytest.skip("needs network namespaces (root)")
    namespace = f"fbz{secrets.token_hex(2)}t"
    network.ip("netns", "add", namespace)
    try:
        inside = network.run_in(namespace, lambda: [name for _, name in socket.if_nameindex()])
        assert inside == ["lo"]
        assert len(socket.if_nameindex()) > 1  # the root namespace: more than lo
        with pytest.raises(ZeroDivisionError):  # errors reach the caller
            network.run_in(namespace, lambda: 1 / 0)
        assert network.run_in(None, lambda: "here") == "here"
    finally:
        network.ip("netns", "del", namespace, check=False)
    assert namespace not in network.ip("netns", "list").stdout


def test_a_taken_metrics_port_fails_the_start_before_anything_is_made(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LifecycleError, match=f"port {port} .*FRONT_METRICS_PORT"):
            Fleet(tmp_path).start(Options(metrics_port=port, front_port=free_port()))
    assert not (tmp_path / "fleet.json").exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(FleetError, match="must differ"):
        Fleet(tmp_path).start(Options(metrics_port=port, front_port=port))
