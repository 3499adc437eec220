"""Reads the spans of one trace back from Arize Phoenix's REST API and checks them
against `tapedeck show --json` of the same session: names, parentage, the span kinds
Phoenix derives from the GenAI attributes (AGENT, LLM, TOOL) and token counts; an MCP
`tools/call` span must be a TOOL child of the TOOL span of the call that asked for it.

usage: phoenix_check.py PHOENIX_URL SHOW_JSON_FILE
"""
import json
import sys
import time
import urllib.request


def fetch(base, trace_id, want):
    spans = []
    for _ in range(60):
        with urllib.request.urlopen(f"{base}/v1/projects/default/spans?limit=1000", timeout=10) as r:
            data = json.loads(r.read())["data"]
        spans = [s for s in data if s["context"]["trace_id"] == trace_id]
        if len(spans) >= want:
            return spans
        time.sleep(0.5)
    return spans


def main():
    base, show_file = sys.argv[1], sys.argv[2]
    tree = json.load(open(show_file))
    want_mcp = any(s["attributes"].get("mcp.method.name") == "tools/call" for s in tree["spans"])
    want = {s["span_id"]: s for s in tree["spans"]}
    got = fetch(base, tree["trace_id"], len(want))
    assert len(got) == len(want), f"phoenix has {len(got)} spans of trace {tree['trace_id']}, tapedeck exported {len(want)}"
    by_id = {s["context"]["span_id"]: s for s in got}
    kinds = {"agent": "AGENT", "workflow": "CHAIN", "llm": "LLM", "tool": "TOOL"}
    for sid, w in want.items():
        g = by_id.get(sid)
        assert g is not None, f"span {w['name']} ({sid}) missing in phoenix"
        assert g["name"] == w["name"], (g["name"], w["name"])
        assert (g["parent_id"] or None) == w["parent_span_id"], f"{w['name']}: parent {g['parent_id']} != {w['parent_span_id']}"
        if w["role"] in ("agent", "llm", "tool"):
            assert g["span_kind"] == kinds[w["role"]], f"{w['name']}: phoenix kind {g['span_kind']}, expected {kinds[w['role']]}"
        if w["attributes"].get("mcp.method.name") == "tools/call":
            # An MCP tool call: a TOOL span of its own under the execute_tool span that asked.
            assert g["span_kind"] == "TOOL", f"{w['name']}: phoenix kind {g['span_kind']}, expected TOOL"
            assert by_id[g["parent_id"]]["span_kind"] == "TOOL", f"{w['name']}: parent is {by_id[g['parent_id']]['span_kind']}"
        for attr in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
            if attr in w["attributes"]:
                assert g["attributes"].get(attr) == w["attributes"][attr], f"{w['name']}: {attr} {g['attributes'].get(attr)} != {w['attributes'][attr]}"
    llm = [s for s in got if s["span_kind"] == "LLM"]
    tool = [s for s in got if s["span_kind"] == "TOOL"]
    agent = [s for s in got if s["span_kind"] == "AGENT"]
    assert agent and llm and tool, f"kinds seen: {sorted({s['span_kind'] for s in got})}"
    total_in = sum(s["attributes"].get("llm.token_count.prompt", 0) for s in llm)
    assert total_in == tree["totals"]["input_tokens"], (total_in, tree["totals"]["input_tokens"])
    mcp = [s for s in tool if s["attributes"].get("mcp.method.name") == "tools/call"]
    for t in tool:
        if t in mcp:
            continue
        parent = by_id[t["parent_id"]]
        assert parent["span_kind"] == "LLM", f"tool span {t['name']} hangs under {parent['span_kind']}"
    if want_mcp:
        assert mcp, "no MCP tools/call span reached Phoenix as a TOOL span"
    print(f"phoenix: {len(got)} spans of trace {tree['trace_id']}: "
          f"{len(agent)} AGENT, {len(llm)} LLM, {len(tool)} TOOL ({len(mcp)} MCP tool calls under them); "
          f"tree, kinds and {total_in} input tokens match")


if __name__ == "__main__":
    main()
