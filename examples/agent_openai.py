#!/usr/bin/env python3
"""A small tool-calling agent on the official `openai` SDK.

LLM -> the weather tool over HTTP -> LLM with the tool result -> final answer.

Environment:
  LLM_BASE_URL     OpenAI-compatible base URL, e.g. https://localhost:8443/v1
  OPENAI_API_KEY   default "sk-test-not-a-real-key"
  WEATHER_URL      the tool endpoint, e.g. https://localhost:8443/weather
  LLM_MODEL        default "gpt-4o-mini"
  OPENAI_MAX_RETRIES  default 0 (so the traffic is the same on every run)
  HTTPS_PROXY / SSL_CERT_FILE are honoured by the SDK and by the tool call (httpx).

Usage: agent_openai.py [--stream] [--question TEXT] [--extra-call] [--print-errors]

Prints only deterministic lines (the tool call, its result, the answer). Any API or
HTTP error: the exception text on stderr, exit status 1.

--extra-call    after the final answer, one more LLM turn ("Thanks! Anything else?"),
                whose answer is printed as "extra: ...". A "changed agent" for replay
                tests: a recording made without it has no event for that call.
--print-errors  an agent that swallows API and HTTP errors: print the exception text
                on stdout ("error: ...") and exit 0 instead of stderr and exit 1.
"""

import argparse
import json
import os
import sys

import httpx
import openai

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}},
                "required": ["city"],
            },
        },
    }
]


def get_weather(http: httpx.Client, url: str, city: str) -> str:
    """Calls the weather tool; an HTTP error answer is handed to the model as is."""
    resp = http.get(url, params={"city": city})
    return resp.text


def complete(client: openai.OpenAI, model: str, messages: list, stream: bool) -> dict:
    """One chat turn; returns the assistant message as a plain dict."""
    if not stream:
        resp = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
        msg = resp.choices[0].message
        out = {"role": "assistant", "content": msg.content}
        if msg.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in msg.tool_calls
            ]
        return out

    content = []
    calls = {}  # index -> {"id", "name", "arguments"}
    with client.chat.completions.create(
        model=model,
        messages=messages,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    ) as events:
        for chunk in events:
            if not chunk.choices:
                continue  # the usage chunk
            delta = chunk.choices[0].delta
            if delta.content:
                content.append(delta.content)
            for tc in delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    call["id"] = tc.id
                if tc.function and tc.function.name:
                    call["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    call["arguments"] += tc.function.arguments
    out = {"role": "assistant", "content": "".join(content) if content else None}
    if calls:
        out["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for _, c in sorted(calls.items())
        ]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream", action="store_true", help="use streaming completions")
    ap.add_argument("--question", default="What is the weather in Paris?")
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument(
        "--extra-call", action="store_true", help="one more LLM turn after the final answer"
    )
    ap.add_argument(
        "--print-errors",
        action="store_true",
        help="print API/HTTP errors on stdout and exit 0 (an agent that swallows errors)",
    )
    args = ap.parse_args()

    base_url = os.environ.get("LLM_BASE_URL", "https://api.openai.com/v1")
    weather_url = os.environ.get("WEATHER_URL", "https://localhost:8443/weather")
    model = os.environ.get("LLM_MODEL", "gpt-4o-mini")
    client = openai.OpenAI(
        base_url=base_url,
        api_key=os.environ.get("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        max_retries=int(os.environ.get("OPENAI_MAX_RETRIES", "0")),
        timeout=60.0,
    )
    # trust_env (the default) makes httpx use HTTPS_PROXY and SSL_CERT_FILE, like the SDK.
    http = httpx.Client(timeout=30.0)

    messages = [
        {"role": "system", "content": "You are a weather assistant. Use the tools."},
        {"role": "user", "content": args.question},
    ]
    try:
        for _ in range(args.max_turns):
            msg = complete(client, model, messages, args.stream)
            messages.append(msg)
            if not msg.get("tool_calls"):
                print(f"answer: {msg['content']}", flush=True)
                if args.extra_call:
                    messages.append({"role": "user", "content": "Thanks! Anything else?"})
                    extra = complete(client, model, messages, args.stream)
                    print(f"extra: {extra['content']}")
                return 0
            for call in msg["tool_calls"]:
                name = call["function"]["name"]
                arguments = json.loads(call["function"]["arguments"] or "{}")
                if name == "get_weather":
                    result = get_weather(http, weather_url, arguments.get("city", ""))
                else:
                    result = json.dumps({"error": f"unknown tool {name}"})
                print(
                    f"tool: {name}({json.dumps(arguments, sort_keys=True)}) -> {result}",
                    flush=True,
                )
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        print(f"error: no final answer after {args.max_turns} turns", file=sys.stderr)
        return 1
    except (openai.OpenAIError, httpx.HTTPError) as e:
        if args.print_errors:
            print(f"error: {type(e).__name__}: {e}", flush=True)
            return 0
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        http.close()
        client.close()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # e.g. an unreadable SSL_CERT_FILE while building the client
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
