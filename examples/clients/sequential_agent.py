#!/usr/bin/env python3
"""A sequential agent whose steps depend on each other, and two ways to reorder them.

The steps, each carrying content of the one before:
  1. LLM  "Hello, who are you?"                     (no tools)
  2. LLM  + step 1's reply + "What is the weather in Paris?"  -> a get_weather call
  3. tool GET WEATHER_URL?city=<the city step 2 asked for>
  4. LLM  + step 2's tool call + step 3's result    -> the answer

  --save FILE         write what steps 1-3 answered to FILE (JSON), for --swap later
  --swap turns FILE   send step 2 (built from FILE's step-1 reply) before step 1
  --swap tool FILE    send step 4 (built from FILE's tool result) before step 3

A swapped run sends exactly the recorded requests, only in an order the recorded program
could never produce: a replay must refuse it (an out-of-order miss). With --swap the
agent swallows the API error (prints it, exit 0), so the replay's own exit status (3)
is what the caller sees.

Env: LLM_BASE_URL, WEATHER_URL, OPENAI_API_KEY, OPENAI_MAX_RETRIES (default 0).
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
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
SYSTEM = {"role": "system", "content": "You are a weather assistant."}
HELLO = {"role": "user", "content": "Hello, who are you?"}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


def assistant_calls(calls: list) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": calls}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", metavar="FILE")
    ap.add_argument("--swap", nargs=2, metavar=("turns|tool", "FILE"))
    args = ap.parse_args()
    swap, saved = None, {}
    if args.swap:
        swap = args.swap[0]
        if swap not in ("turns", "tool"):
            ap.error("--swap takes turns or tool")
        with open(args.swap[1]) as f:
            saved = json.load(f)

    client = openai.OpenAI(
        base_url=os.environ["LLM_BASE_URL"],
        api_key=os.environ.get("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        max_retries=int(os.environ.get("OPENAI_MAX_RETRIES", "0")),
        timeout=60.0,
    )
    http = httpx.Client(timeout=30.0)

    def chat(messages, tools=None):
        kw = {"tools": tools} if tools else {}
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages, **kw).choices[0].message

    def step1():
        return chat([SYSTEM, HELLO]).content

    def step2(reply1):
        msg = chat([SYSTEM, HELLO, {"role": "assistant", "content": reply1}, QUESTION], TOOLS)
        c = msg.tool_calls[0]
        return {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}

    def step3(call):
        city = json.loads(call["function"]["arguments"])["city"]
        r = http.get(os.environ["WEATHER_URL"], params={"city": city})
        r.raise_for_status()
        return r.text

    def step4(reply1, call, result):
        messages = [
            SYSTEM, HELLO, {"role": "assistant", "content": reply1}, QUESTION,
            assistant_calls([call]), {"role": "tool", "tool_call_id": call["id"], "content": result},
        ]
        return chat(messages, TOOLS).content

    try:
        if swap == "turns":
            call = step2(saved["reply1"])
            reply1 = step1()
        else:
            reply1 = step1()
            call = step2(reply1)
        print(f"step 1: {reply1}")
        print(f"step 2: {call['function']['name']}({call['function']['arguments']})")
        if swap == "tool":
            answer = step4(reply1, call, saved["result"])
            result = step3(call)
        else:
            result = step3(call)
            answer = step4(reply1, call, result)
        print(f"step 3: {result}")
        print(f"step 4: {answer}")
        if args.save:
            with open(args.save, "w") as f:
                json.dump({"reply1": reply1, "call": call, "result": result}, f)
        return 0
    except (openai.OpenAIError, httpx.HTTPError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stdout if swap else sys.stderr)
        return 0 if swap else 1
    finally:
        http.close()
        client.close()


if __name__ == "__main__":
    sys.exit(main())
