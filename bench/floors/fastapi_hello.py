"""Floor 2: FastAPI's hello world, under the same gunicorn + uvicorn setup as the api."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "hello"}
