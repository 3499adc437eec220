#!/usr/bin/env python3
"""Speech to text with the official `openai` SDK: `audio.transcriptions.create` uploads
each file as a multipart form, with a new random boundary every time, to the example
upstream's `/v1/audio/transcriptions` (which answers with the file's size and blake3).

Two files: 40 KB and 3 MiB (over the 1 MiB a non-JSON body is otherwise kept whole).
Prints one line per file: its name and the transcript. Honours HTTPS_PROXY and
SSL_CERT_FILE (through httpx).

Env: LLM_BASE_URL, OPENAI_API_KEY (any value)
"""

import hashlib
import os

from openai import OpenAI


def audio(name: str, size: int) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def main() -> None:
    client = OpenAI(
        base_url=os.environ["LLM_BASE_URL"],
        api_key=os.environ.get("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        max_retries=0,
    )
    for name, size in (("hello.wav", 40_000), ("meeting.wav", 3 << 20)):
        r = client.audio.transcriptions.create(
            model="whisper-1", file=(name, audio(name, size), "audio/wav")
        )
        print(name, r.text)


if __name__ == "__main__":
    main()
