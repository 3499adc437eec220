"""A small tool-calling agent on Python's standard library only (urllib honours
HTTPS_PROXY and SSL_CERT_FILE), used by tapedeck's regression-test tests.

LLM (OpenAI chat completions shape) -> weather tool over HTTP -> LLM -> answer.
AGENT_MODE=ignore passes a failed tool answer on to the LLM as if it were data (the
bug); AGENT_MODE=stop reports the failure and stops (the fix).
Env: LLM_BASE_URL (…/v1), WEATHER_URL, QUESTION, AGENT_MODE.
"""
import json
import os
import sys
import urllib.error
import urllib.request


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json",
                                          "authorization": "Bearer sk-regress-0000000000"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    base = os.environ["LLM_BASE_URL"]
    weather = os.environ["WEATHER_URL"]
    mode = os.environ.get("AGENT_MODE", "ignore")
    question = os.environ.get("QUESTION", "What is the weather in Paris?")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [{"role": "user", "content": question}]
    first = post(base + "/chat/completions", {"model": "gpt-4o-mini", "messages": messages, "tools": tools})
    msg = first["choices"][0]["message"]
    call = msg["tool_calls"][0]
    city = json.loads(call["function"]["arguments"])["city"]
    status, text = get(weather + "?city=" + city)
    if status != 200 and mode == "stop":
        print(f"weather unavailable for {city}: HTTP {status}")
        return 0
    messages += [msg, {"role": "tool", "tool_call_id": call["id"], "content": text}]
    second = post(base + "/chat/completions", {"model": "gpt-4o-mini", "messages": messages, "tools": tools})
    print("answer:", second["choices"][0]["message"]["content"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
