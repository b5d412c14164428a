"""Reference point (a): the limit of the HTTP stack.

The same server stack as genserve (FastAPI on uvicorn, same loop and HTTP implementation,
one worker) with one POST endpoint that parses the request body as genserve's /generate
does and answers with a ready-made JSON body of the same size, without any inference.

    python bench/bare_server.py PORT BODY_FILE
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

from app.api.schemas import GenerateRequest


def create_app(body: bytes) -> FastAPI:
    app = FastAPI()

    @app.post("/generate")
    async def generate(request: GenerateRequest) -> Response:
        return Response(body, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> dict:
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    port, body_file = int(sys.argv[1]), sys.argv[2]
    with open(body_file, "rb") as f:
        body = f.read()
    uvicorn.run(create_app(body), host="127.0.0.1", port=port, log_level="warning")
