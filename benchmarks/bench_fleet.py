"""
What a fleet command costs with 50 member processes on one machine.

Starts a private ``redis-server`` on a free loopback port and N member processes that
each import one module from a shared directory and join one group. Then measures:

- **command → all applied**: wall time of ``Fleet.reload`` (both phases, every member
  answered), p50 and p99 over R commands, for N members and for 1 member (the ratio
  says how the two phases scale with the group);
- **Redis commands per member per command**: ``INFO commandstats`` before and after the
  R commands, less what the heartbeats did meanwhile, divided by N and R;
- **idle cost per member**: Redis commands per member per second and CPU time per
  member per second (``/proc/PID/stat``) while nothing is sent.

Not part of ``run_all.py`` (it needs a redis-server and starts 50 interpreters); run it
alone: ``.venv/bin/python benchmarks/bench_fleet.py [--members 50] [--commands 40]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MEMBER = """
import sys, time, os
sys.path.insert(0, sys.argv[1])
import versionload, versionload.fleet as fleet
versionload.install(allowed_roots=[sys.argv[1]])
import bench_fleet_mod
member = fleet.join(sys.argv[2], group=sys.argv[3], heartbeat=float(sys.argv[4]))
deadline = time.monotonic() + 600
while not os.path.exists(sys.argv[5]) and time.monotonic() < deadline:
    time.sleep(0.1)
member.leave()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command_calls(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(
    members: int, commands: int, heartbeat: float, idle: float, work: Path, server_bin: str
) -> dict[str, Any]:
    import redis

    import versionload.fleet as fleet

    port = free_port()
    server = subprocess.Popen(
        [server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=work,
    )
    url = f"redis://127.0.0.1:{port}/0"
    moddir, stop = work / f"mods{members}", work / f"stop{members}"
    moddir.mkdir()
    (moddir / "bench_fleet_mod.py").write_text("VALUE = 0\n")
    (work / "member.py").write_text(MEMBER)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        group = f"bench{members}"
        for _ in range(members):
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(work / "member.py"),
                        str(moddir),
                        url,
                        group,
                        str(heartbeat),
                        str(stop),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        operator = fleet.Fleet(url, group=group)
        deadline = time.monotonic() + 300
        while len(operator.members()) < members:
            if time.monotonic() > deadline:
                raise RuntimeError("members did not join in time")
            time.sleep(0.2)
        time.sleep(heartbeat)  # let every member settle after its first heartbeat

        calls0, cpu0, t0 = command_calls(client), [cpu_seconds(p.pid) for p in processes], time.monotonic()
        time.sleep(idle)
        calls1, cpu1, t1 = command_calls(client), [cpu_seconds(p.pid) for p in processes], time.monotonic()
        idle_calls_per_s = (calls1 - calls0 - 1) / (t1 - t0)  # less our own INFO
        idle_cpu = statistics.mean(b - a for a, b in zip(cpu0, cpu1, strict=True)) / (t1 - t0)

        durations = []
        calls2, t2 = command_calls(client), time.monotonic()
        for index in range(1, commands + 1):
            (moddir / "bench_fleet_mod.py").write_text(f"VALUE = {index}\n")
            started = time.perf_counter()
            result = operator.reload("bench_fleet_mod", timeout=60)
            durations.append(time.perf_counter() - started)
            if not result.ok:
                raise RuntimeError(f"command failed: {result}")
        calls3, t3 = command_calls(client), time.monotonic()
        heartbeat_calls = idle_calls_per_s * (t3 - t2)
        per_member = (calls3 - calls2 - 1 - heartbeat_calls) / (members * commands)
        operator.close()
        return {
            "members": members,
            "commands": commands,
            "p50_ms": round(statistics.median(durations) * 1000, 2),
            "p99_ms": round(percentile(durations, 0.99) * 1000, 2),
            "redis_calls_per_member_per_command": round(per_member, 2),
            "idle_redis_calls_per_member_per_s": round(idle_calls_per_s / members, 3),
            "idle_cpu_ms_per_member_per_s": round(idle_cpu * 1000, 3),
            "heartbeat_s": heartbeat,
        }
    finally:
        stop.write_text("stop")
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--commands", type=int, default=40)
    parser.add_argument("--heartbeat", type=float, default=2.0)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement")
    parser.add_argument("--json", metavar="FILE")
    options = parser.parse_args()
    import logging

    import structlog

    # The operator's one line per command would drown the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    server_bin = shutil.which("redis-server")
    if server_bin is None:
        sys.exit("bench_fleet needs redis-server on PATH (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as name:
        work = Path(name)
        one = run(1, options.commands, options.heartbeat, options.idle, work, server_bin)
        many = run(options.members, options.commands, options.heartbeat, options.idle, work, server_bin)
    print("== fleet")
    for row in (one, many):
        print(
            f"  {row['members']:>3} members: command -> all applied p50 {row['p50_ms']} ms, "
            f"p99 {row['p99_ms']} ms; {row['redis_calls_per_member_per_command']} Redis calls per member "
            f"per command; idle {row['idle_redis_calls_per_member_per_s']} calls/s and "
            f"{row['idle_cpu_ms_per_member_per_s']} ms CPU/s per member (heartbeat {row['heartbeat_s']} s)"
        )
    print(f"  p50 ratio {many['members']} members / 1 member: {many['p50_ms'] / one['p50_ms']:.2f}x")
    if options.json:
        Path(options.json).write_text(json.dumps({"one": one, "many": many}, indent=2))


if __name__ == "__main__":
    main()
