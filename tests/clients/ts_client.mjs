// Drive an MCP Streamable HTTP endpoint with the official TypeScript SDK
// client (@modelcontextprotocol/sdk, Client + StreamableHTTPClientTransport)
// and print one JSON object with what was observed.
//
//   node tests/clients/ts_client.mjs URL
//
// Against tests/servers/feature_server.py behind the bridge it does:
// initialize, tools/list, tools/call echo, tools/call progress with an
// onprogress callback, tools/call sample answered by a sampling handler, then
// closes the session with DELETE (terminateSession).
//
// The SDK is found in the node_modules directory named by MCPBRIDGE_JS
// (default /tmp/n22/node_modules).  ESM ignores NODE_PATH, so the SDK's ESM
// entry points are imported by absolute file URL; its own dependencies then
// resolve from that node_modules tree as usual.
//
// Exit status 0 when every check passed, 1 when one failed, 2 on an error.
// A watchdog ends the process after 30 s whatever happens.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const TIMEOUT_MS = 30000;
const watchdog = setTimeout(() => {
  process.stdout.write(JSON.stringify({ ok: false, errors: ["timed out after 30 s"] }) + "\n");
  process.exit(2);
}, TIMEOUT_MS);

const url = process.argv[2];
const modules = process.env.MCPBRIDGE_JS || "/tmp/n22/node_modules";
const sdk = join(modules, "@modelcontextprotocol", "sdk", "dist", "esm");

async function load(rel) {
  const file = join(sdk, rel);
  if (!existsSync(file)) throw new Error(`the MCP TypeScript SDK is not at ${file}`);
  return import(pathToFileURL(file).href);
}

const out = { errors: [] };
function expect(condition, message) {
  if (!condition) out.errors.push(message);
}
const textOf = (result) =>
  (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("");

async function main() {
  if (!url) throw new Error("usage: node ts_client.mjs URL");
  const { Client } = await load("client/index.js");
  const { StreamableHTTPClientTransport } = await load("client/streamableHttp.js");
  const { CreateMessageRequestSchema, CallToolResultSchema } = await load("types.js");
  out.sdk_dir = sdk;
  out.node = process.version;

  const client = new Client(
    { name: "mcpbridge-test-ts", version: "1.0.0" },
    { capabilities: { sampling: {} } },
  );
  const sampling = [];
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    const texts = request.params.messages.map((m) => m.content.text);
    sampling.push(texts);
    return {
      role: "assistant",
      model: "test-model",
      content: { type: "text", text: `ts-sampled(${texts.join(" ")})` },
    };
  });

  const transport = new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  out.session_id = transport.sessionId ?? null;
  out.protocol_version = transport.protocolVersion ?? null;
  out.server = client.getServerVersion()?.name ?? null;

  const tools = await client.listTools();
  out.tools = tools.tools.map((t) => t.name).sort();

  out.echo = textOf(await client.callTool({ name: "echo", arguments: { text: "hello ts" } }));

  const progress = [];
  const progressResult = await client.callTool(
    { name: "progress", arguments: { steps: 4, delay: 0.05 } },
    CallToolResultSchema,
    { onprogress: (p) => progress.push([p.progress, p.total ?? null, p.message ?? null]) },
  );
  out.progress_result = textOf(progressResult);
  out.progress = progress;

  out.sample = textOf(await client.callTool({ name: "sample", arguments: { prompt: "hi from ts" } }));
  out.sampling_requests = sampling;

  await transport.terminateSession();
  out.session_after_terminate = transport.sessionId ?? null;
  await client.close();

  expect(out.session_id, "no session id after connect");
  expect(out.tools.includes("echo"), `tools ${out.tools}`);
  expect(out.echo === "hello ts", `echo returned ${JSON.stringify(out.echo)}`);
  expect(out.progress_result === "done 4", `progress returned ${JSON.stringify(out.progress_result)}`);
  expect(JSON.stringify(progress.map((p) => p[0])) === "[1,2,3,4]", `progress ${JSON.stringify(progress)}`);
  expect(out.sample === "sampled: ts-sampled(hi from ts)", `sample returned ${JSON.stringify(out.sample)}`);
  expect(sampling.length === 1, `sampling requests ${JSON.stringify(sampling)}`);
}

let status = 0;
try {
  await main();
  status = out.errors.length ? 1 : 0;
} catch (e) {
  out.errors.push(`exception: ${e && e.stack ? e.stack : e}`);
  status = 2;
}
out.ok = status === 0;
clearTimeout(watchdog);
process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(status));
