#!/usr/bin/env python3
"""`tapedeck mcp` as a coding agent sees it: the official MCP Python SDK (pinned in
examples/requirements.txt) starts `tapedeck mcp --store STORE` over stdio, lists the
tools and asks each of them about the sessions examples/faults.sh recorded.

Usage: mcp_check.py TAPEDECK_BIN STORE

Prints "sdk mcp X.Y.Z, protocol V", then one "ok ..." line per check; on the first
check that fails, "FAIL ..." with what came back, and exit status 1.
"""

import asyncio
import importlib.metadata
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

TOOLS = ["list_sessions", "show_run", "analyze", "explain_step", "diff_runs", "cluster"]


def check(cond: bool, what: str, got) -> None:
    if not cond:
        print(f"FAIL {what}: got {got!r}"[:4000])
        sys.exit(1)
    print(f"ok {what}")


def text(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def main(tapedeck: str, store: str) -> None:
    server = StdioServerParameters(command=tapedeck, args=["mcp", "--store", store])
    async with stdio_client(server) as (read, write), ClientSession(read, write) as client:
        init = await client.initialize()
        print(f"sdk mcp {importlib.metadata.version('mcp')}, protocol {init.protocolVersion}")
        info = init.serverInfo
        check(info is not None and info.name == "tapedeck", "the server says it is tapedeck", info)

        listed = await client.list_tools()
        names = [t.name for t in listed.tools]
        check(names == TOOLS, "tools/list names the six read tools", names)
        schemas = {t.name: t.inputSchema for t in listed.tools}
        check(schemas["explain_step"]["required"] == ["session", "step"], "explain_step takes a session and a step", schemas["explain_step"])

        r = await client.call_tool("list_sessions", {})
        sessions = {s["name"] for s in r.structuredContent["sessions"]}
        check(not r.isError and {"cascade", "fault-none", "fault-soft-error"} <= sessions, "list_sessions lists the fault sessions", sessions)

        r = await client.call_tool("show_run", {"session": "cascade"})
        tree = text(r)
        check(not r.isError and "execute_tool get_price" in tree and "invoke_agent writer" in tree, "show_run draws the cascade's span tree", tree)

        r = await client.call_tool("analyze", {"session": "cascade"})
        found = sorted((f["detector"], tuple(f["steps"])) for f in r.structuredContent["findings"])
        check(found == [("cascading_error", (2, 3, 4)), ("tool_error_ignored", (2, 3))], "analyze finds the cascade and the ignored soft error at their steps", found)

        r = await client.call_tool("analyze", {"session": "fault-none"})
        check(r.structuredContent["findings"] == [], "analyze finds nothing in the clean run", r.structuredContent)

        r = await client.call_tool("explain_step", {"session": "cascade", "step": 4})
        chain = [l["step"] for l in r.structuredContent["chain"]]
        check(chain == [4, 3, 2, 1], "explain_step walks step 4 back to step 1", chain)
        check("EUR 1.299" in text(r) and "$.parse_error" in text(r), "explain_step shows the value and the soft error", text(r))

        r = await client.call_tool("diff_runs", {"session_a": "fault-none", "session_b": "fault-error-ignored"})
        d = r.structuredContent["first_divergence"]
        check(d is not None and d["step_a"] == 2 and d["kind"] == "tool", "diff_runs finds the first divergence at the tool step", d)

        r = await client.call_tool("cluster", {"sessions": ["fault-soft-error", "cascade", "fault-none"]})
        groups = r.structuredContent["groups"]
        lead = groups[0]
        check(lead["count"] == 2 and lead["signature"]["detector"] == "tool_error_ignored" and lead["status"] == "recurring",
              "cluster puts the two runs of the price bug together, recurring", groups)

        r = await client.call_tool("analyze", {"session": "no-such-session"})
        check(r.isError and "no-such-session" in text(r), "a tool error comes back as isError with the reason", text(r))

        r = await client.call_tool("explain_step", {"session": "cascade", "step": 99})
        check(r.isError and "no step 99" in text(r), "explaining a step the run does not have is an error", text(r))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    print(json.dumps({"result": "all checks passed"}))
