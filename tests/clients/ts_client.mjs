// Drive an MCP Streamable HTTP endpoint with the official TypeScript SDK
// client (@modelcontextprotocol/sdk, Client + StreamableHTTPClientTransport)
// and print one JSON object with what was observed.
//
//   node tests/clients/ts_client.mjs [--transport http|sse] URL
//
// Against tests/servers/feature_server.py behind the bridge it does:
// initialize, tools/list, tools/call echo, tools/call progress with an
// onprogress callback, tools/call sample answered by a sampling handler, then
// closes the session with DELETE (terminateSession).
//
// With --transport sse (or MCPBRIDGE_TRANSPORT=sse) it speaks the deprecated
// HTTP+SSE transport (2024-11-05) through SSEClientTransport to URL (the
// .../sse endpoint) instead: initialize, tools/list, echo, progress, sample,
// tools/call elicit answered by an elicitation handler, logging/setLevel and
// tools/call log whose notifications/message reach a notification handler,
// then close() (which closes the SSE stream: that ends the session).  It
// also reports the announced endpoint and the status and body size of every
// POST (each must be 202; the caller checks that each body is "Accepted").
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

const argv = process.argv.slice(2);
let transportName = process.env.MCPBRIDGE_TRANSPORT || "http";
if (argv[0] === "--transport") {
  transportName = argv[1];
  argv.splice(0, 2);
} else if (argv[0] && argv[0].startsWith("--transport=")) {
  transportName = argv.shift().slice("--transport=".length);
}
const url = argv[0];
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

// Answer the server's sampling/createMessage requests with
// "ts-sampled(<the messages' texts>)"; returns the list each request's texts
// are pushed to.
function answerSampling(client, CreateMessageRequestSchema) {
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
  return sampling;
}

// tools/list, tools/call echo with `text`, and tools/call progress (4 steps)
// with an onprogress callback, into out.tools, out.echo, out.progress_result
// and out.progress; returns the [progress, total, message] entries seen.
async function listEchoProgress(client, CallToolResultSchema, text) {
  const tools = await client.listTools();
  out.tools = tools.tools.map((t) => t.name).sort();

  out.echo = textOf(await client.callTool({ name: "echo", arguments: { text } }));

  const progress = [];
  const progressResult = await client.callTool(
    { name: "progress", arguments: { steps: 4, delay: 0.05 } },
    CallToolResultSchema,
    { onprogress: (p) => progress.push([p.progress, p.total ?? null, p.message ?? null]) },
  );
  out.progress_result = textOf(progressResult);
  out.progress = progress;
  return progress;
}

async function main() {
  if (!url || !["http", "sse"].includes(transportName)) {
    throw new Error("usage: node ts_client.mjs [--transport http|sse] URL");
  }
  if (transportName === "sse") return mainSSE();
  const { Client } = await load("client/index.js");
  const { StreamableHTTPClientTransport } = await load("client/streamableHttp.js");
  const { CreateMessageRequestSchema, CallToolResultSchema } = await load("types.js");
  out.sdk_dir = sdk;
  out.node = process.version;

  const client = new Client(
    { name: "mcpbridge-test-ts", version: "1.0.0" },
    { capabilities: { sampling: {} } },
  );
  const sampling = answerSampling(client, CreateMessageRequestSchema);

  const transport = new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  out.session_id = transport.sessionId ?? null;
  out.protocol_version = transport.protocolVersion ?? null;
  out.server = client.getServerVersion()?.name ?? null;

  const progress = await listEchoProgress(client, CallToolResultSchema, "hello ts");

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

async function mainSSE() {
  const { Client } = await load("client/index.js");
  const { SSEClientTransport } = await load("client/sse.js");
  const {
    CreateMessageRequestSchema, ElicitRequestSchema, LoggingMessageNotificationSchema,
    CallToolResultSchema,
  } = await load("types.js");
  out.sdk_dir = sdk;
  out.node = process.version;
  out.transport = "sse";

  const client = new Client(
    { name: "mcpbridge-test-ts-sse", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: {} } },
  );
  const sampling = answerSampling(client, CreateMessageRequestSchema);
  const elicitation = [];
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    elicitation.push(request.params.message);
    return { action: "accept", content: { name: "Grace" } };
  });
  const logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
    logs.push([notification.params.level, notification.params.data]);
  });

  // Every POST the transport makes: its status and how many body bytes came back.
  const posts = [];
  const gets = [];
  const tapFetch = async (input, init) => {
    const response = await fetch(input, init);
    if ((init?.method || "GET").toUpperCase() === "POST") {
      const body = await response.clone().text();
      posts.push({ status: response.status, body_length: body.length });
    } else {
      gets.push({ status: response.status, content_type: response.headers.get("content-type") });
    }
    return response;
  };

  const transport = new SSEClientTransport(new URL(url), { fetch: tapFetch });
  let closed = false;
  transport.onclose = () => { closed = true; };
  await client.connect(transport);
  // Every message as it comes off the stream, before the SDK dispatches it.
  const wire = [];
  const dispatch = transport.onmessage;
  transport.onmessage = (message, extra) => {
    wire.push({
      message: message.method ?? ("id" in message ? "response" : "?"),
      id: message.id ?? null,
      token: message.params?.progressToken ?? null,
      progress: message.params?.progress ?? null,
    });
    dispatch?.(message, extra);
  };
  out.endpoint = transport._endpoint ? transport._endpoint.pathname + transport._endpoint.search : null;
  out.server = client.getServerVersion()?.name ?? null;
  out.protocol_version = transport._protocolVersion ?? null;

  const progress = await listEchoProgress(client, CallToolResultSchema, "hello ts sse");
  // What the stream carried for that call: its progress, then its response.
  const progressNotes = wire.filter((w) => w.message === "notifications/progress");
  const token = progressNotes.length ? progressNotes[0].token : null;
  out.wire_progress = wire
    .filter((w) => (w.message === "notifications/progress" && w.token === token) ||
                   (w.message === "response" && token !== null && w.id === Number(token)))
    .map((w) => (w.message === "response" ? "response" : w.progress));

  out.sample = textOf(await client.callTool({ name: "sample", arguments: { prompt: "hi over sse" } }));
  out.sampling_requests = sampling;

  out.elicit = textOf(await client.callTool({ name: "elicit", arguments: { message: "Name?" } }));
  out.elicitation_requests = elicitation;

  await client.setLoggingLevel("debug");
  out.log_result = textOf(await client.callTool({ name: "log", arguments: { count: 3, level: "error" } }));
  for (let i = 0; i < 250 && logs.length < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  out.logs = logs;

  await client.close();
  out.closed = closed;
  out.posts = posts;
  out.gets = gets;

  expect(/^\/messages\?session_id=[0-9a-f]{32}$/.test(out.endpoint || "") ||
         /^\/servers\/[^/]+\/messages\?session_id=[0-9a-f]{32}$/.test(out.endpoint || ""),
         `endpoint ${JSON.stringify(out.endpoint)}`);
  expect(out.tools.includes("echo"), `tools ${out.tools}`);
  expect(out.echo === "hello ts sse", `echo returned ${JSON.stringify(out.echo)}`);
  expect(out.progress_result === "done 4", `progress returned ${JSON.stringify(out.progress_result)}`);
  // The stream must carry all four progress notifications before the response.  The SDK
  // may drop the last one from onprogress: it dispatches notifications on a microtask but
  // responses at once, so a progress and the response read in one chunk race (and the
  // response, removing the progress handler, wins).
  expect(JSON.stringify(out.wire_progress) === '[1,2,3,4,"response"]',
         `progress on the stream ${JSON.stringify(out.wire_progress)}`);
  expect(["[1,2,3,4]", "[1,2,3]"].includes(JSON.stringify(progress.map((p) => p[0]))),
         `progress ${JSON.stringify(progress)}`);
  expect(out.sample === "sampled: ts-sampled(hi over sse)", `sample returned ${JSON.stringify(out.sample)}`);
  expect(sampling.length === 1, `sampling requests ${JSON.stringify(sampling)}`);
  expect(out.elicit === 'accept {"name": "Grace"}', `elicit returned ${JSON.stringify(out.elicit)}`);
  expect(JSON.stringify(elicitation) === '["Name?"]', `elicitation requests ${JSON.stringify(elicitation)}`);
  expect(out.log_result === "logged 3", `log returned ${JSON.stringify(out.log_result)}`);
  expect(JSON.stringify(logs) ===
         JSON.stringify([1, 2, 3].map((i) => ["error", `log message ${i}`])), `logs ${JSON.stringify(logs)}`);
  // (The body of each 202, which should be empty, is reported in posts for the test to check.)
  expect(posts.length > 0 && posts.every((p) => p.status === 202), `POSTs ${JSON.stringify(posts)}`);
  expect(gets.length === 1 && gets[0].status === 200 &&
         (gets[0].content_type || "").startsWith("text/event-stream"), `GETs ${JSON.stringify(gets)}`);
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
