"""``python -m jaxfit bench --serve``: the HTTP service under load on loopback, with and
without dynamic batching, both servers running and loaded in turn."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import NamedTuple

LABELS = {"batching (--max-batch 64)": "64", "no batching (--max-batch 1)": "1"}
"""The two servers, by label: their ``--max-batch``."""


class Load(NamedTuple):
    """What one round of load on one server measured."""

    seconds: float
    latencies: list[float]
    failures: int


def _start_server(*args: str) -> tuple[subprocess.Popen, str]:
    """A ``python -m jaxfit serve`` process on a free loopback port, once it answers."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxfit", "serve", "--port", str(port), *args],
        env={**os.environ, "JAX_NUM_CPU_DEVICES": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, url


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, body: bytes, trace: bool
) -> tuple[int, bytes]:
    """One POST /v1/fit on a kept-alive connection: ``(status, body)``."""
    writer.write(
        b"POST /v1/fit%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (b"" if trace else b"?trace=false", host.encode(), len(body), body)
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
    )
    return status, await reader.readexactly(length)


async def _load(url: str, clients: int, per_client: int, learning_rate: float, trace: bool) -> Load:
    """``clients`` keep-alive connections, each sending ``per_client`` fits in turn.

    A minimal HTTP/1.1 client on raw asyncio streams: a general-purpose client in
    Python is slower than the server and would measure itself."""
    host, port = url.rsplit("//", 1)[1].split(":")
    latencies: list[float] = []
    failures = 0

    async def client(k: int) -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, int(port))
        for j in range(per_client):
            b3 = -10 + 20 * (k * per_client + j) / (clients * per_client)
            body = json.dumps({"params": {"b3": b3}, "train": {"learning_rate": learning_rate}}).encode()
            t0 = time.perf_counter()
            status, _ = await _request(reader, writer, host, body, trace)
            latencies.append(time.perf_counter() - t0)
            failures += status != 200
        writer.close()

    reader, writer = await asyncio.open_connection(host, int(port))
    await _request(reader, writer, host, b"{}", trace)  # warm up
    writer.close()
    t0 = time.perf_counter()
    await asyncio.gather(*[client(k) for k in range(clients)])
    return Load(time.perf_counter() - t0, latencies, failures)


def _batch_mean(url: str) -> float:
    """The server's mean formed batch, from its metrics."""
    import httpx

    lines = httpx.get(url + "/metrics").text.splitlines()
    total, count = (
        float(next(x.split()[1] for x in lines if x.startswith(f"jaxfit_batch_size_{k}")))
        for k in ("sum", "count")
    )
    return total / count


def _cpu_seconds(proc: subprocess.Popen) -> float | None:
    """User + system CPU of a server process, all threads (Linux /proc; else None)."""
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def _print_rows(rows: list[tuple]) -> None:
    from jaxfit.output.report import table

    headers = ["server", "requests/s", "p50 ms", "p99 ms", "mean batch", "failures", "server CPU us/request"]
    cells = [
        [r[0], f"{r[1]:,.0f}", f"{1e3 * r[2]:.1f}", f"{1e3 * r[3]:.1f}", f"{r[4]:.1f}", r[5]]
        + ["-" if r[6] is None else f"{1e6 * r[6]:.0f}"]
        for r in rows
    ]
    print(table(headers, cells, [False, True, True, True, True, True, True]))
    print(f"throughput ratio: {rows[0][1] / rows[1][1]:.1f}x")
    if rows[0][6] and rows[1][6]:
        print(f"server CPU per request ratio: {rows[1][6] / rows[0][6]:.1f}x")


def serve_bench(
    clients: int = 200, per_client: int = 20, rounds: int = 3, learning_rate: float = 0.1, trace: bool = True
) -> int:
    """Load on loopback: ``clients`` x ``per_client`` single-b3 fits (each a different
    initial b3) against a batching server and one with ``--max-batch 1``, both
    running, loaded in turn for ``rounds`` rounds."""
    cpu: dict[str, list[float]] = {label: [] for label in LABELS}
    rates: dict[str, list[float]] = {label: [] for label in LABELS}
    latencies: dict[str, list[float]] = {label: [] for label in LABELS}
    failures = dict.fromkeys(LABELS, 0)
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for label, max_batch in LABELS.items():
            servers[label] = _start_server("--max-batch", max_batch, "--max-queue", str(clients * 2))
        for _ in range(rounds):  # interleaved, so drift on a shared machine hits both alike
            for label, (proc, url) in servers.items():
                before = _cpu_seconds(proc)
                load = asyncio.run(_load(url, clients, per_client, learning_rate, trace))
                after = _cpu_seconds(proc)
                if before is not None and after is not None:
                    cpu[label].append((after - before) / len(load.latencies))
                rates[label].append(len(load.latencies) / load.seconds)
                latencies[label] += load.latencies
                failures[label] += load.failures
        batches = {label: _batch_mean(url) for label, (_, url) in servers.items()}
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in servers.values():
            proc.wait(timeout=60)
    rows = []
    for label in servers:
        lat = sorted(latencies[label])
        row = (label, _median(rates[label]), lat[len(lat) // 2], lat[int(len(lat) * 0.99)], batches[label])
        rows.append((*row, failures[label], _median(cpu[label])))
    print(
        f"service: {clients} clients x {per_client} single-b3 fit requests (learning rate {learning_rate}"
        f"{'' if trace else ', no trace'}) on loopback, median of {rounds} interleaved rounds"
    )
    _print_rows(rows)
    return 0
