#!/usr/bin/env python3
"""An agent that runs the model's parallel tool calls concurrently.

For each question the model (the examples/upstream fixture, OpenAI chat completions)
answers with one tool call per city it names; the agent runs the weather tool for all of
them at once (asyncio.gather over one httpx.AsyncClient; the fixture answers in well under
a millisecond), hands every result back in one turn, and prints the final answer.

Prints the tool calls and results (in the model's order) and the answers; exit 1 on any
API or HTTP error. Honours HTTPS_PROXY and SSL_CERT_FILE.

Env: LLM_BASE_URL, WEATHER_URL, OPENAI_API_KEY, OPENAI_MAX_RETRIES (default 0).
"""

import asyncio
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
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
QUESTIONS = [
    "What is the weather in Paris, London, Tokyo, Berlin, Madrid and Oslo?",
    "And in Oslo, Madrid and Tokyo?",
]


async def ask(client: openai.AsyncOpenAI, http: httpx.AsyncClient, question: str) -> None:
    messages = [
        {"role": "system", "content": "You are a weather assistant. Use the tools."},
        {"role": "user", "content": question},
    ]
    resp = await client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    msg = resp.choices[0].message
    calls = msg.tool_calls or []
    messages.append(
        {
            "role": "assistant",
            "content": msg.content,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
                for c in calls
            ],
        }
    )
    url = os.environ["WEATHER_URL"]

    async def run(call):
        city = json.loads(call.function.arguments)["city"]
        r = await http.get(url, params={"city": city})
        r.raise_for_status()
        return r.text

    results = await asyncio.gather(*(run(c) for c in calls))
    for call, result in zip(calls, results):
        print(f"tool: {call.function.name}({call.function.arguments}) -> {result}")
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    final = await client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    print(f"answer: {final.choices[0].message.content}")


async def main() -> int:
    client = openai.AsyncOpenAI(
        base_url=os.environ["LLM_BASE_URL"],
        api_key=os.environ.get("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        max_retries=int(os.environ.get("OPENAI_MAX_RETRIES", "0")),
        timeout=60.0,
    )
    try:
        async with httpx.AsyncClient(timeout=30.0) as http:
            for q in QUESTIONS:
                await ask(client, http, q)
        return 0
    except (openai.OpenAIError, httpx.HTTPError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        await client.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
