#!/usr/bin/env python3
"""Agents with deliberate, realistic bugs, for tapedeck's failure detectors.

One program on the official `openai` SDK (httpx for the tool calls); `--fault NAME`
picks the bug. Each mode prints deterministic lines only (no timings, no ids from the
clock) and exits 0: the faults are in the agent's behaviour, not crashes.

  none           a clean run: LLM -> weather tool -> LLM -> answer
  empty          the weather tool URL points at /empty-list; the agent hands the "[]" it
                 gets to the LLM as the tool result
  error-ignored  the weather tool answers HTTP 500; the agent passes the error body on
                 as if it were data, and the LLM answers anyway
  retry          the weather tool answers HTTP 503; the agent retries the same call 3
                 times in a row without changing anything, then gives up
  context        a support chat on gpt-4 (8,192-token window) that keeps the whole
                 thread and never trims it; the reply budget (max_tokens) is whatever
                 the window has left, so the second turn nears the window and its answer
                 is cut off (finish_reason "length")
  burn           the agent wants an answer that starts with "FINAL:" and keeps re-asking
                 the LLM with the whole, growing history (no tool in between), 4 times
  handoff        two agents in one session: a planner and a writer, each with its own
                 HTTP client whose proxy user name is the session ("handoff") and whose
                 password is the agent name; the planner's LLM answer carries a misspelt
                 city ("Pariss"), the writer looks it up and the weather tool answers 404
  slow           a clean answer whose get_weather tool makes three calls, one of them to a
                 forecast service that takes 1.5 s: one step holds up a 5-exchange run
  soft-error     the price tool answers 200 with a parse_error field in the body; the agent
                 hands the body on and the LLM quotes the guessed price without a word
  cascade        two agents in one session ("cascade"): a researcher whose price tool
                 answers 200 with a parse_error and whose notes carry "EUR 1.299", and a
                 writer who gets the notes and writes "just EUR 1.30"
  drift          the weather question, then a stray user message from another chat is
                 appended before the second LLM call, which answers that instead: clean
                 to every rule, caught only by a judge (`analyze --judge`)

Environment:
  LLM_BASE_URL      OpenAI-compatible base URL, e.g. https://localhost:8443/v1
  TOOL_BASE_URL     base URL of the tools, e.g. https://localhost:8443
  OPENAI_API_KEY    default "sk-test-not-a-real-key"
  OPENAI_MAX_RETRIES  default 0 (so the traffic is the same on every run)
  AGENT_SYSTEM_PROMPT  the weather agents' system prompt (default "You are a weather
                    assistant. Use the tools."): the prompt a fix changes
  HTTPS_PROXY / SSL_CERT_FILE are honoured by the SDK and by httpx (`handoff` builds its
  own per-agent proxy URLs from HTTPS_PROXY's host and port).

Usage: faulty_agent.py --fault {none,empty,error-ignored,retry,context,burn,handoff,
                                slow,soft-error,cascade,drift}
Any unexpected API or HTTP error: the exception text on stderr, exit status 1.
"""

import argparse
import json
import os
import ssl
import sys
import urllib.parse

import httpx
import openai

FAULTS = ["none", "empty", "error-ignored", "retry", "context", "burn", "handoff",
          "slow", "soft-error", "cascade", "drift"]

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

PRICE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_price",
            "description": "Current price of an item in the shop.",
            "parameters": {
                "type": "object",
                "properties": {"item": {"type": "string", "description": "Item name"}},
                "required": ["item"],
            },
        },
    }
]

MODEL = "gpt-4o-mini"
# gpt-4: 8,192 tokens in all; this agent counts 4 characters a token (as the fixture does).
CONTEXT_MODEL = "gpt-4"
CONTEXT_WINDOW = 8192


class Env:
    def __init__(self):
        self.llm_base = os.environ.get("LLM_BASE_URL", "https://api.openai.com/v1")
        self.tool_base = os.environ.get("TOOL_BASE_URL", "https://localhost:8443").rstrip("/")
        self.api_key = os.environ.get("OPENAI_API_KEY", "sk-test-not-a-real-key")
        self.max_retries = int(os.environ.get("OPENAI_MAX_RETRIES", "0"))
        self.system = os.environ.get(
            "AGENT_SYSTEM_PROMPT", "You are a weather assistant. Use the tools."
        )

    def llm(self, http_client=None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.llm_base,
            api_key=self.api_key,
            max_retries=self.max_retries,
            timeout=60.0,
            http_client=http_client,
        )


def path_of(resp: httpx.Response) -> str:
    """The request's path and query, for deterministic output (no host or port)."""
    url = resp.request.url
    return url.raw_path.decode()


def ask(client: openai.OpenAI, messages: list, model: str = MODEL, **kw):
    """One chat turn; returns (assistant message as a plain dict, the response)."""
    resp = client.chat.completions.create(model=model, messages=messages, **kw)
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
    return out, resp


def weather_agent(env: Env, http: httpx.Client, tool_path: str, attempts: int = 1) -> None:
    """LLM -> get_weather at TOOL_BASE_URL + tool_path -> LLM -> answer.

    The tool's answer is never checked: whatever body comes back (an empty list, an error
    document) is handed to the LLM as the tool result. With attempts > 1 a failed call is
    retried as is, and after the last failure the agent gives up.
    """
    client = env.llm()
    try:
        messages = [
            {"role": "system", "content": env.system},
            {"role": "user", "content": "What is the weather in Paris?"},
        ]
        msg, _ = ask(client, messages, tools=TOOLS)
        messages.append(msg)
        for call in msg.get("tool_calls") or []:
            args = json.loads(call["function"]["arguments"] or "{}")
            print(f"llm: {call['function']['name']}({json.dumps(args, sort_keys=True)})")
            for attempt in range(1, attempts + 1):
                resp = http.get(env.tool_base + tool_path, params={"city": args.get("city", "")})
                print(f"tool: GET {path_of(resp)} -> {resp.status_code} {resp.text}")
                if resp.status_code < 400 or attempts == 1:
                    break
                if attempt == attempts:
                    print(f"gave up: get_weather failed {attempts} times (HTTP {resp.status_code})")
                    return
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": resp.text})
        msg, _ = ask(client, messages, tools=TOOLS)
        print(f"answer: {msg['content']}")
    finally:
        client.close()


# -- context -----------------------------------------------------------------------------

def ticket_thread() -> list:
    """A long support thread (deterministic): 24 log parts of about 900 characters, each
    acknowledged; about 5,600 tokens with the first question (68% of gpt-4's window)."""
    messages = [
        {
            "role": "system",
            "content": "You are a support assistant for the Acme build service. "
            "Answer from the conversation so far.",
        }
    ]
    for i in range(1, 25):
        log = " ".join(
            f"[build {i}.{j}] step compile ok; step test ok; step package ok; cache hit ratio 0.{j}"
            for j in range(1, 12)
        )
        messages.append({"role": "user", "content": f"Here is log part {i}: {log}"})
        messages.append({"role": "assistant", "content": f"Noted log part {i}."})
    return messages


def tokens(messages: list) -> int:
    return sum(len(m.get("content") or "") for m in messages) // 4


def context_agent(env: Env) -> None:
    """The bug: the whole thread is kept and resent every turn, and the reply budget is
    whatever the 8,192-token window has left; the second turn fills the window and its
    answer is cut off."""
    client = env.llm()
    try:
        messages = ticket_thread()
        questions = [
            "Did any build in these logs fail?",
            "Here is the deploy log too: "
            + " ".join(
                f"[deploy {j}] upload artefact ok; restart service ok; health check ok"
                for j in range(1, 86)
            )
            + " Summarise everything above in one report.",
        ]
        for turn, question in enumerate(questions, 1):
            messages.append({"role": "user", "content": question})
            budget = CONTEXT_WINDOW - tokens(messages)
            msg, resp = ask(client, messages, model=CONTEXT_MODEL, max_tokens=budget)
            messages.append(msg)
            choice = resp.choices[0]
            usage = resp.usage
            print(
                f"turn {turn}: {usage.prompt_tokens} prompt tokens of {CONTEXT_WINDOW}, "
                f"max_tokens {budget}, finish_reason {choice.finish_reason}, "
                f"{usage.completion_tokens} completion tokens"
            )
            print(f"answer {turn}: {(msg['content'] or '')[:60]}")
    finally:
        client.close()


# -- burn --------------------------------------------------------------------------------

def burn_agent(env: Env) -> None:
    """The bug: an answer that does not start with "FINAL:" is answered with a complaint
    and the whole, growing history is sent again; nothing new (no tool result) comes in
    between, so every turn costs more than the last."""
    client = env.llm()
    try:
        messages = [
            {"role": "system", "content": "Reply with one line that starts with FINAL:."},
            {"role": "user", "content": "Pick the best day for a picnic this week."},
        ]
        for attempt in range(1, 5):
            msg, resp = ask(client, messages)
            messages.append(msg)
            text = msg["content"] or ""
            print(f"attempt {attempt}: {resp.usage.prompt_tokens} prompt tokens: {text}")
            if text.startswith("FINAL:"):
                print(f"answer: {text}")
                return
            messages.append(
                {"role": "user", "content": "That does not start with FINAL:. Answer again, "
                 "one line that starts with FINAL:."}
            )
        print("gave up: no FINAL: answer after 4 attempts")
    finally:
        client.close()


# -- handoff -----------------------------------------------------------------------------

def agent_http(agent: str, session: str = "handoff", **kw) -> httpx.Client:
    """An httpx client for one agent: through the proxy of HTTPS_PROXY with the proxy user
    name "SESSION+AGENT" (the session, then the agent's name); trusting the SSL_CERT_FILE
    bundle. With no HTTPS_PROXY, a direct client."""
    proxy_env = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    cafile = os.environ.get("SSL_CERT_FILE")
    verify = ssl.create_default_context(cafile=cafile) if cafile else True
    proxy = None
    if proxy_env:
        p = urllib.parse.urlsplit(proxy_env)
        proxy = f"{p.scheme or 'http'}://{session}+{agent}@{p.hostname}:{p.port}"
    return httpx.Client(proxy=proxy, verify=verify, trust_env=False, timeout=30.0, **kw)


def handoff_agents(env: Env) -> None:
    planner_http = agent_http("planner")
    writer_http = agent_http("writer")
    planner = env.llm(http_client=planner_http)
    try:
        # The planner: asks its LLM for the plan and takes the destination from the
        # answer (the last capitalised word) without checking it.
        msg, _ = ask(planner, [
            {"role": "system", "content": "You are a travel planner. Name the destination."},
            {"role": "user", "content": "Plan a trip to Pariss"},
        ])
        plan = msg["content"] or ""
        words = [w.strip(".,!?\"'") for w in plan.split()[1:]]
        destination = [w for w in words if w[:1].isupper()][-1]
        print(f"planner: {plan}")
        print(f"planner -> writer: destination {destination}")
        # The writer: trusts the planner's destination and looks up its weather.
        resp = writer_http.get(env.tool_base + "/weather", params={"city": destination})
        print(f"writer: GET {path_of(resp)} -> {resp.status_code} {resp.text}")
        if resp.status_code >= 400:
            print(f"writer: no trip note: the weather of {destination} is unknown")
            return
        print(f"writer: trip note for {destination}: {resp.text}")
    finally:
        planner.close()
        planner_http.close()
        writer_http.close()


# -- slow --------------------------------------------------------------------------------

def slow_agent(env: Env, http: httpx.Client) -> None:
    """A clean run whose get_weather tool calls three services, the forecast one slow
    (1.5 s): LLM -> /weather -> /slow (forecast) -> /json (station) -> LLM."""
    client = env.llm()
    try:
        messages = [
            {"role": "system", "content": env.system},
            {"role": "user", "content": "What is the weather in Paris?"},
        ]
        msg, _ = ask(client, messages, tools=TOOLS)
        messages.append(msg)
        for call in msg.get("tool_calls") or []:
            city = json.loads(call["function"]["arguments"] or "{}").get("city", "")
            now = http.get(env.tool_base + "/weather", params={"city": city})
            forecast = http.get(env.tool_base + "/slow", params={"ms": "1500", "city": city})
            station = http.get(env.tool_base + "/json", params={"city": city})
            for resp in (now, forecast, station):
                print(f"tool: GET {path_of(resp)} -> {resp.status_code}")
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": now.text})
        msg, _ = ask(client, messages, tools=TOOLS)
        print(f"answer: {msg['content']}")
    finally:
        client.close()


# -- soft-error and cascade ----------------------------------------------------------------

def researcher(env: Env, client: openai.OpenAI, http: httpx.Client) -> str:
    """Asks what the widget costs, calls get_price, hands the tool's body to the LLM as is
    (a parse_error field and all) and returns the LLM's notes."""
    messages = [
        {"role": "system", "content": "You are a shop researcher. Use the tools."},
        {"role": "user", "content": "What does the widget cost?"},
    ]
    msg, _ = ask(client, messages, tools=PRICE_TOOLS)
    messages.append(msg)
    for call in msg.get("tool_calls") or []:
        args = json.loads(call["function"]["arguments"] or "{}")
        resp = http.get(env.tool_base + "/price", params={"item": args.get("item", "")})
        print(f"researcher: GET {path_of(resp)} -> {resp.status_code} {resp.text}")
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": resp.text})
    msg, _ = ask(client, messages, tools=PRICE_TOOLS)
    notes = msg["content"] or ""
    print(f"researcher: {notes}")
    return notes


def soft_error_agent(env: Env, http: httpx.Client) -> None:
    client = env.llm()
    try:
        researcher(env, client, http)
    finally:
        client.close()


def cascade_agents(env: Env) -> None:
    """The researcher's notes go to a writer agent (its own proxy user), which writes the
    ad from them."""
    researcher_http = agent_http("researcher", session="cascade")
    writer_http = agent_http("writer", session="cascade")
    researcher_llm = env.llm(http_client=researcher_http)
    writer_llm = env.llm(http_client=writer_http)
    try:
        notes = researcher(env, researcher_llm, researcher_http)
        msg, _ = ask(writer_llm, [
            {"role": "system", "content": "You are a copywriter."},
            {"role": "user", "content": f"Write a one-line ad from these notes: {notes}"},
        ])
        print(f"writer: {msg['content']}")
    finally:
        researcher_llm.close()
        writer_llm.close()
        researcher_http.close()
        writer_http.close()


# -- drift -------------------------------------------------------------------------------

def drift_agent(env: Env, http: httpx.Client) -> None:
    """The bug: a message from another conversation is appended to the history before the
    second LLM call (and the tools are dropped), so the answer is about that instead."""
    client = env.llm()
    try:
        messages = [
            {"role": "system", "content": env.system},
            {"role": "user", "content": "What is the weather in Paris?"},
        ]
        msg, _ = ask(client, messages, tools=TOOLS)
        messages.append(msg)
        for call in msg.get("tool_calls") or []:
            args = json.loads(call["function"]["arguments"] or "{}")
            resp = http.get(env.tool_base + "/weather", params={"city": args.get("city", "")})
            print(f"tool: GET {path_of(resp)} -> {resp.status_code} {resp.text}")
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": resp.text})
        messages.append({"role": "user", "content": "Forget that. Write a limerick about cheese."})
        msg, _ = ask(client, messages)
        print(f"answer: {msg['content']}")
    finally:
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fault", required=True, choices=FAULTS)
    args = ap.parse_args()
    env = Env()
    print(f"fault: {args.fault}")
    # trust_env (the default) makes httpx use HTTPS_PROXY and SSL_CERT_FILE, like the SDK.
    with httpx.Client(timeout=30.0) as http:
        if args.fault == "none":
            weather_agent(env, http, "/weather")
        elif args.fault == "empty":
            weather_agent(env, http, "/empty-list")
        elif args.fault == "error-ignored":
            weather_agent(env, http, "/status/500")
        elif args.fault == "retry":
            weather_agent(env, http, "/status/503", attempts=3)
        elif args.fault == "context":
            context_agent(env)
        elif args.fault == "burn":
            burn_agent(env)
        elif args.fault == "handoff":
            handoff_agents(env)
        elif args.fault == "slow":
            slow_agent(env, http)
        elif args.fault == "soft-error":
            soft_error_agent(env, http)
        elif args.fault == "cascade":
            cascade_agents(env)
        elif args.fault == "drift":
            drift_agent(env, http)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (openai.OpenAIError, httpx.HTTPError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
