"""A Tornado backend for the proxy tests: run as `proxy_backend.py PORT NAME`.

/echo     method, path, body and request headers back as JSON
/big?n=N  N bytes, streamed in 64 KiB writes (chunked)
/slow     answers after 3 s
/stats    how many connections this backend accepted
Every response carries X-Backend: NAME."""

import json
import sys

from tornado import gen, httpserver, ioloop, web

connections = 0


class CountingServer(httpserver.HTTPServer):
    def handle_stream(self, stream, address):
        global connections
        connections += 1
        return super().handle_stream(stream, address)


class Base(web.RequestHandler):
    def prepare(self):
        self.set_header("X-Backend", sys.argv[2])


@web.stream_request_body
class Echo(Base):
    def initialize(self):
        self.chunks = []

    def data_received(self, chunk):
        self.chunks.append(chunk)

    def reply(self):
        body = b"".join(self.chunks)
        self.set_header("Content-Type", "application/json")
        self.set_header("Connection", "X-Secret")
        self.set_header("X-Secret", "hop")
        self.set_header("Keep-Alive", "timeout=5")
        self.write(json.dumps({
            "method": self.request.method,
            "uri": self.request.uri,
            "body_len": len(body),
            "body": body.decode("latin-1")[:200],
            "headers": {k: v for k, v in self.request.headers.get_all()},
        }))

    get = post = put = delete = reply

    def head(self):
        self.set_header("Content-Length", "123")


class Big(Base):
    async def get(self):
        n = int(self.get_argument("n"))
        block = b"x" * 65536
        while n > 0:
            self.write(block[:n])
            n -= min(n, len(block))
            await self.flush()


class Slow(Base):
    async def get(self):
        await gen.sleep(3)
        self.write("late\n")


class Stats(Base):
    def get(self):
        self.write({"connections": connections})


app = web.Application([(r"/echo.*", Echo), (r"/big", Big), (r"/slow", Slow), (r"/stats", Stats)])
server = CountingServer(app)
server.listen(int(sys.argv[1]), address="127.0.0.1")
print("ready", flush=True)
ioloop.IOLoop.current().start()
