#!/usr/bin/env python3
"""A voice-style agent on the OpenAI Realtime API's event shapes, over WebSocket with the
`websockets` package: it configures the session with a tool, asks a question, runs the
tool call the model asks for (an HTTP tool), sends the result back and prints the answer.

Environment:
  REALTIME_URL    e.g. wss://localhost:8443/v1/realtime?model=gpt-realtime
  WEATHER_URL     the HTTP tool, e.g. https://localhost:8443/weather
  OPENAI_API_KEY  sent as the bearer credential (default "sk-test-not-a-real-key")
  HTTPS_PROXY / SSL_CERT_FILE are honoured (websockets connects through the proxy).

Usage: realtime_agent.py [--question TEXT] [--event-ids]

Prints the deterministic lines of the run, the type of every server event, and the
blake2b digest of every message received, byte for byte (so a replay that changed one
byte of one message prints another digest). A connection the server closes is reported
("closed: CODE REASON") and the agent exits 0, as an agent that swallows it would.
--event-ids gives each client event a fresh random event_id (replay ignores them).
"""

import argparse
import asyncio
import hashlib
import json
import os
import ssl
import urllib.parse
import uuid

import httpx
import websockets

TOOL = {"type": "function", "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


DIGEST = hashlib.blake2b(digest_size=16)
DELTAS: list = []


async def recv(ws) -> dict:
    raw = await ws.recv()
    DIGEST.update(raw.encode() if isinstance(raw, str) else raw)
    return json.loads(raw)


async def until_done(ws, log: list) -> dict:
    """Reads events until response.done; returns its response."""
    while True:
        ev = await recv(ws)
        log.append(ev["type"])
        if ev["type"] == "response.output_text.delta":
            DELTAS.append(ev["delta"])
        if ev["type"] == "error":
            raise SystemExit(f"error event: {ev['error']}")
        if ev["type"] == "response.done":
            return ev["response"]


async def run(question: str, event_ids: bool, deltas: bool) -> None:
    def send(ws, ev):
        if event_ids:
            ev = {"event_id": f"evt_{uuid.uuid4().hex}", **ev}
        return ws.send(json.dumps(ev))

    ctx = ssl.create_default_context()
    key = os.environ.get("OPENAI_API_KEY", "sk-test-not-a-real-key")
    log: list = []
    async with websockets.connect(os.environ["REALTIME_URL"], ssl=ctx,
                                  additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        created = await recv(ws)
        log.append(created["type"])
        await send(ws, {"type": "session.update", "session": {"type": "realtime", "tools": [TOOL]}})
        log.append((await recv(ws))["type"])
        await send(ws, {"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]}})
        await send(ws, {"type": "response.create"})
        response = await until_done(ws, log)
        for item in response["output"]:
            if item["type"] != "function_call":
                continue
            args = json.loads(item["arguments"])
            with httpx.Client() as http:
                out = http.get(os.environ["WEATHER_URL"], params=args).text
            print(f"tool {item['name']}({json.dumps(args, sort_keys=True)}) -> {out}")
            await send(ws, {"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": item["call_id"], "output": out}})
            await send(ws, {"type": "response.create"})
            response = await until_done(ws, log)
        text = "".join(c.get("text", "") for i in response["output"] if i["type"] == "message"
                       for c in i["content"])
        print("usage:", json.dumps(response.get("usage"), sort_keys=True))
        print("answer:", text)
        if deltas:
            print("deltas:", "".join(DELTAS))
    print("events:", " ".join(log))
    print("received digest:", DIGEST.hexdigest())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--question", default="What is the weather in Paris?")
    p.add_argument("--event-ids", action="store_true")
    p.add_argument("--deltas", action="store_true", help="print the streamed text deltas joined")
    a = p.parse_args()
    try:
        asyncio.run(run(a.question, a.event_ids, a.deltas))
    except websockets.ConnectionClosed as e:
        frame = e.rcvd
        print(f"closed: {frame.code if frame else None} {frame.reason if frame else ''}")


if __name__ == "__main__":
    main()
