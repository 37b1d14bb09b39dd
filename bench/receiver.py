"""A webhook receiver for the bench: `python -m bench.receiver` with HOST and PORT in the environment.

Every POST is answered 204 at once (HTTP/1.1, kept alive), or never with BENCH_RECEIVER_HANG=1: the
request is read and the connection held until the sender gives up. Signatures are not checked (the tests
do that); GET answers 200, which is what the bench's readiness check asks for.
"""

from __future__ import annotations

import asyncio
import os

HANG = os.environ.get("BENCH_RECEIVER_HANG") == "1"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if head.startswith(b"GET "):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            elif HANG:
                await reader.read()  # until the sender closes the connection
                return
            else:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        return
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
