#!/usr/bin/env python3
"""An agent that reaches its tools over MCP (the official `mcp` SDK, Streamable HTTP) and
thinks with an OpenAI-compatible LLM (the official `openai` SDK).

It initializes an MCP session, lists the server's tools, offers them to the LLM, calls
the ones the LLM asks for through MCP, hands the results back, and prints the answer.

Environment:
  MCP_URL        the MCP endpoint, e.g. https://localhost:9443/mcp
  LLM_BASE_URL   OpenAI-compatible base URL, e.g. https://localhost:8443/v1
  OPENAI_API_KEY default "sk-test-not-a-real-key"
  LLM_MODEL      default "gpt-4o-mini"
  HTTPS_PROXY / SSL_CERT_FILE are honoured by both SDKs.

Usage: mcp_agent.py [--question TEXT] [--extra-call]

Prints deterministic lines only: the tools, each call with its result, the answer.
--extra-call lists the tools a second time at the end and prints any error instead of
raising it: a changed agent for replay tests.
"""

import argparse
import asyncio
import json
import os

import openai
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

QUESTION = "Use get_forecast for Paris, get_alerts for Paris and get_weather for Atlantis."


def result_text(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def run(question: str, extra_call: bool) -> None:
    llm = openai.AsyncOpenAI(
        base_url=os.environ["LLM_BASE_URL"],
        api_key=os.environ.get("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        max_retries=0,
    )
    model = os.environ.get("LLM_MODEL", "gpt-4o-mini")
    async with streamablehttp_client(os.environ["MCP_URL"]) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            names = sorted(t.name for t in listed.tools)
            print("tools:", ", ".join(names))
            tools = [
                {"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                  "parameters": t.inputSchema}}
                for t in sorted(listed.tools, key=lambda t: t.name)
            ]
            messages = [{"role": "user", "content": question}]
            for _ in range(4):
                resp = await llm.chat.completions.create(model=model, messages=messages, tools=tools)
                msg = resp.choices[0].message
                if not msg.tool_calls:
                    print("answer:", msg.content)
                    break
                messages.append({"role": "assistant", "content": msg.content, "tool_calls": [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.function.name, "arguments": c.function.arguments}}
                    for c in msg.tool_calls]})
                for c in msg.tool_calls:
                    args = json.loads(c.function.arguments or "{}")
                    result = await session.call_tool(c.function.name, args)
                    text = result_text(result)
                    print(f"call {c.function.name}({json.dumps(args, sort_keys=True)}) "
                          f"isError={bool(result.isError)}: {text!r}")
                    messages.append({"role": "tool", "tool_call_id": c.id, "content": text})
            if extra_call:
                # A changed agent that swallows the failure: under replay the miss makes
                # tapedeck exit 3 even though the agent exits 0.
                try:
                    again = await session.list_tools()
                    print("tools again:", len(again.tools))
                except Exception as e:  # noqa: BLE001
                    print("error:", e)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--question", default=QUESTION)
    p.add_argument("--extra-call", action="store_true")
    a = p.parse_args()
    asyncio.run(run(a.question, a.extra_call))


if __name__ == "__main__":
    main()
