#!/usr/bin/env python3
"""One streaming call with the official `anthropic` SDK; prints the streamed text.

Environment:
  ANTHROPIC_BASE_URL  e.g. https://localhost:8443 (the SDK appends /v1/messages)
  ANTHROPIC_API_KEY   default "sk-ant-test-not-a-real-key"
  ANTHROPIC_MODEL     default "claude-sonnet-4-6"
  ANTHROPIC_MAX_RETRIES  default 0 (so the traffic is the same on every run)
  HTTPS_PROXY / SSL_CERT_FILE are honoured by the SDK.

Usage: anthropic_stream.py [--prompt TEXT]

Prints the text deltas as they arrive, then a newline and the stop reason and usage of
the final message. Any API error: the exception text on stderr, exit status 1.
"""

import argparse
import os
import sys

import anthropic


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", default="Say hello to the tape deck")
    args = ap.parse_args()

    client = anthropic.Anthropic(
        base_url=os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
        api_key=os.environ.get("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key"),
        max_retries=int(os.environ.get("ANTHROPIC_MAX_RETRIES", "0")),
        timeout=60.0,
    )
    try:
        with client.messages.stream(
            model=os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-6"),
            max_tokens=256,
            messages=[{"role": "user", "content": args.prompt}],
        ) as stream:
            for text in stream.text_stream:
                print(text, end="", flush=True)
            final = stream.get_final_message()
        print()
        print(
            f"stop_reason: {final.stop_reason} "
            f"input_tokens: {final.usage.input_tokens} output_tokens: {final.usage.output_tokens}"
        )
        return 0
    except anthropic.AnthropicError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # e.g. an unreadable SSL_CERT_FILE while building the client
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
