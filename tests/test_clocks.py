"""The virtual clock's "auto" rule: the time jumps only when the event loop is idle."""

from __future__ import annotations

import asyncio
import socket

from tests.clocks import VirtualClock, loop_is_idle


async def test_auto_clock_stands_still_while_a_request_is_on_the_wire() -> None:
    """A loopback request sent while another task sleeps 5 s is served at the time it was sent
    (a readable socket is not an idle loop); then the sleeper wakes exactly 5 s later."""
    clock = VirtualClock(advance="auto")
    served_at: list[float] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)
        served_at.append(clock.monotonic())
        writer.write(b"pong")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = clock.monotonic()
        sleeper = asyncio.create_task(clock.sleep(5))
        for _ in range(3):  # the driver gets going before the request leaves
            await asyncio.sleep(0)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"pong"
        assert served_at == [start] and clock.monotonic() == start
        await sleeper
        assert clock.monotonic() == start + 5
        writer.close()
        await writer.wait_closed()
    finally:
        await clock.close()
        server.close()
        await server.wait_closed()


async def test_auto_clock_wakes_sleepers_in_deadline_order() -> None:
    """With nothing else to do, each sleeper wakes at its own deadline, the earliest first."""
    clock = VirtualClock(advance="auto")
    start = clock.monotonic()
    woke: list[tuple[int, float]] = []

    async def sleeper(seconds: int) -> None:
        await clock.sleep(seconds)
        woke.append((seconds, clock.monotonic() - start))

    try:
        await asyncio.gather(sleeper(30), sleeper(1), sleeper(7))
    finally:
        await clock.close()
    assert woke == [(1, 1.0), (7, 7.0), (30, 30.0)]


async def test_a_readable_socket_is_not_an_idle_loop() -> None:
    """Bytes waiting on a socket the loop watches make it busy until its reader has run: the
    rule that keeps the time still while a loopback request is on the wire."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    got: asyncio.Future[bytes] = loop.create_future()

    def read() -> None:
        if not got.done():
            got.set_result(ours.recv(1))

    loop.add_reader(ours, read)
    try:
        assert loop_is_idle(loop)
        theirs.send(b"x")
        assert not loop_is_idle(loop)
        assert await got == b"x"
        assert loop_is_idle(loop)
    finally:
        loop.remove_reader(ours)
        ours.close()
        theirs.close()
