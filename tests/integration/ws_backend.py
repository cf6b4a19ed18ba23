"""A WebSocket echo server for the proxy tests: `ws_backend.py PORT`."""

import asyncio
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1])):
        print("ready", flush=True)
        await asyncio.Future()

asyncio.run(main())
