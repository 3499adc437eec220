#!/usr/bin/env python3
"""A weather MCP server on the official `mcp` SDK: FastMCP over Streamable HTTP, behind TLS.

Tools: get_weather(city) (an unknown city is a tool error: the result has isError: true),
get_forecast(city, days), get_alerts(city) (always an empty result).

Usage: mcp_server.py --port N --cert CERT.pem --key KEY.pem [--json-response]

Serves https://localhost:N/mcp until killed. --json-response answers requests with one
JSON body instead of an SSE stream. Every answer is deterministic.
"""

import argparse

import uvicorn
from mcp.server.fastmcp import FastMCP

WEATHER = {
    "Paris": (18, "sunny"),
    "London": (12, "cloudy"),
    "Tokyo": (22, "clear"),
    "Berlin": (15, "rainy"),
}


def build(json_response: bool) -> FastMCP:
    mcp = FastMCP("weather", json_response=json_response)

    @mcp.tool()
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        if city not in WEATHER:
            raise ValueError(f"unknown city: {city}")
        temp, conditions = WEATHER[city]
        return f"{city}: {temp}°C, {conditions}"

    @mcp.tool()
    def get_forecast(city: str, days: int = 3) -> str:
        """The next days' weather for a city."""
        temp, conditions = WEATHER.get(city, (10, "unknown"))
        return "; ".join(f"day {d + 1}: {temp + d}°C, {conditions}" for d in range(days))

    @mcp.tool()
    def get_alerts(city: str) -> list[str]:
        """Weather alerts for a city."""
        return []

    return mcp


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--json-response", action="store_true")
    a = p.parse_args()
    app = build(a.json_response).streamable_http_app()
    uvicorn.run(app, host="127.0.0.1", port=a.port, ssl_certfile=a.cert, ssl_keyfile=a.key, log_level="warning")


if __name__ == "__main__":
    main()
