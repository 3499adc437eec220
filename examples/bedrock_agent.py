#!/usr/bin/env python3
"""A Bedrock agent on the official AWS SDK (boto3): one `converse_stream` call and one
`invoke_model_with_response_stream` call (Anthropic's Messages stream, each chunk base64
in the binary event stream), each asking the model to repeat the caller's key.

Prints one line a call: `converse: TEXT` and `invoke: TEXT`, the text as the SDK read it
from the stream (botocore parses every message and checks its CRC-32s: a frame broken by
a proxy is an error here).

  BEDROCK_URL               the endpoint (the upstream fixture's base URL)
  AWS_BEARER_TOKEN_BEDROCK  the Bedrock API key the SDK sends as a bearer token
  AWS_CA_BUNDLE             the CA to trust (tapedeck's bundle under `-- CMD`)
"""

import json
import os
import sys

import boto3
from botocore.config import Config

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def main():
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=os.environ["BEDROCK_URL"],
        config=Config(retries={"max_attempts": 1}),
    )
    question = [{"role": "user", "content": [{"text": "Repeat my key"}]}]
    resp = client.converse_stream(modelId=MODEL, messages=question)
    text = ""
    for event in resp["stream"]:
        if "contentBlockDelta" in event:
            text += event["contentBlockDelta"]["delta"]["text"]
    print(f"converse: {text}", flush=True)

    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
            "messages": [{"role": "user", "content": "Repeat my key"}]}
    resp = client.invoke_model_with_response_stream(modelId=MODEL, body=json.dumps(body))
    text = ""
    for event in resp["body"]:
        chunk = json.loads(event["chunk"]["bytes"])
        if chunk.get("type") == "content_block_delta":
            text += chunk["delta"]["text"]
    print(f"invoke: {text}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the SDK's own error, named, for the script's log
        print(f"bedrock_agent: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
