"""An edge function in Python: a `wasi:http/proxy` component built with componentize-py.

Routes:
  GET  /            a greeting (the counterpart of examples/js/hello.js)
  GET  /hello/NAME  a greeting for NAME
  POST /echo        the request body back, with its length in `x-body-length`
  GET  /json        the method, authority, path, query and headers as JSON

Build it with examples/python/build.sh (componentize-py from PyPI), then serve the
directory it writes: `edge serve target/apps-py`.
"""

import json
from urllib.parse import unquote

from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
    Method_Get,
    Method_Head,
    Method_Post,
    Method_Put,
    Method_Delete,
    Method_Patch,
    Method_Options,
    Method_Other,
)
from wit_world.imports.streams import StreamError_Closed
from componentize_py_types import Err, Ok

# The largest chunk wasi:io lets one blocking write carry.
CHUNK = 4096

METHODS = {
    Method_Get: "GET",
    Method_Head: "HEAD",
    Method_Post: "POST",
    Method_Put: "PUT",
    Method_Delete: "DELETE",
    Method_Patch: "PATCH",
    Method_Options: "OPTIONS",
}


def method_name(method) -> str:
    if isinstance(method, Method_Other):
        return method.value
    return METHODS.get(type(method), "OTHER")


def read_body(request: IncomingRequest, limit: int = 1 << 20) -> bytes:
    """The whole request body (up to `limit` bytes)."""
    body = request.consume()
    stream = body.stream()
    data = bytearray()
    try:
        while len(data) < limit:
            try:
                data += stream.blocking_read(CHUNK)
            except Err as error:
                # The end of the body is a `closed` stream error.
                if isinstance(error.value, StreamError_Closed):
                    break
                raise
    finally:
        stream.__exit__(None, None, None)
        body.__exit__(None, None, None)
    return bytes(data)


def respond(out: ResponseOutparam, status: int, content_type: str, body: bytes, extra=()):
    headers = [("content-type", content_type.encode())]
    headers += [(name, value.encode()) for name, value in extra]
    response = OutgoingResponse(Fields.from_list(headers))
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(out, Ok(response))
    stream = outgoing.write()
    for start in range(0, len(body), CHUNK):
        stream.blocking_write_and_flush(body[start : start + CHUNK])
    stream.__exit__(None, None, None)
    OutgoingBody.finish(outgoing, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = method_name(request.method())
        target = request.path_with_query() or "/"
        path, _, query = target.partition("?")
        text = "text/plain; charset=utf-8"

        if path == "/" and method in ("GET", "HEAD"):
            respond(response_out, 200, text, b"Hello from edge, in Python!\n")
        elif path.startswith("/hello/") and method == "GET":
            name = unquote(path[len("/hello/") :]) or "stranger"
            respond(response_out, 200, text, f"Hello, {name}!\n".encode())
        elif path == "/echo" and method == "POST":
            body = read_body(request)
            respond(
                response_out,
                200,
                "application/octet-stream",
                body,
                [("x-body-length", str(len(body)))],
            )
        elif path == "/json":
            headers = {}
            for name, value in request.headers().entries():
                headers.setdefault(name, []).append(value.decode("latin-1"))
            doc = {
                "method": method,
                "authority": request.authority(),
                "path": path,
                "query": query,
                "headers": headers,
            }
            respond(response_out, 200, "application/json", json.dumps(doc).encode())
        else:
            respond(response_out, 404, text, f"no route for {method} {path}\n".encode())
