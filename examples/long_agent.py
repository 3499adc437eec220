#!/usr/bin/env python3
"""A tool-calling agent that runs many turns, each with two tool calls made in parallel,
for the web viewer's checks (examples/ui.sh): a short run shows parallel tool calls side
by side in the waterfall, a long one (thousands of steps) shows that the viewer stays fast.

Each turn is a fresh conversation: the user asks for the weather in Paris and Tokyo, the
LLM asks for get_weather twice in one answer, both calls run at once (two threads), and
the LLM gets both results back and answers. Four exchanges a turn.

Environment:
  LLM_BASE_URL   OpenAI-compatible base URL, e.g. https://localhost:8443/v1
  TOOL_BASE_URL  the weather tool's base URL, e.g. https://localhost:8443
  HTTPS_PROXY / SSL_CERT_FILE are honoured (httpx), as set by `tapedeck record -- CMD`.

Usage: long_agent.py [--turns N]
Prints one line a turn ("turn N: ..."), then "done: N turns".
"""

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=2)
    args = ap.parse_args()
    llm = os.environ["LLM_BASE_URL"].rstrip("/") + "/chat/completions"
    tool = os.environ["TOOL_BASE_URL"].rstrip("/") + "/weather"
    headers = {"authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "sk-long-not-a-real-key")}
    # One client per thread: each keeps its connection (and tunnel) open across turns.
    with httpx.Client(timeout=30, headers=headers) as main_client, \
            httpx.Client(timeout=30) as a, httpx.Client(timeout=30) as b, \
            ThreadPoolExecutor(max_workers=2) as pool:
        for turn in range(1, args.turns + 1):
            messages = [
                {"role": "system", "content": "You are a weather assistant. Use the tools."},
                {"role": "user", "content": f"Turn {turn}: what is the weather in Paris and Tokyo?"},
            ]
            r = main_client.post(llm, json={"model": "gpt-4o-mini", "messages": messages, "tools": TOOLS})
            r.raise_for_status()
            msg = r.json()["choices"][0]["message"]
            calls = msg.get("tool_calls") or []
            if len(calls) != 2:
                print(f"turn {turn}: expected two tool calls, got {len(calls)}", file=sys.stderr)
                return 1
            clients = [a, b]
            futures = [
                pool.submit(clients[i].get, tool, params=json.loads(c["function"]["arguments"]))
                for i, c in enumerate(calls)
            ]
            results = [f.result() for f in futures]
            messages.append(msg)
            for c, res in zip(calls, results):
                messages.append({"role": "tool", "tool_call_id": c["id"], "content": res.text})
            r = main_client.post(llm, json={"model": "gpt-4o-mini", "messages": messages, "tools": TOOLS})
            r.raise_for_status()
            answer = r.json()["choices"][0]["message"]["content"]
            if turn <= 3 or turn % 500 == 0:
                print(f"turn {turn}: {answer}")
    print(f"done: {args.turns} turns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
