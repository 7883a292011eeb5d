/**
 * The MCP middleware with the SDK's own server and client, against mandates minted by the real
 * service: challenges as the gateway's, each `tools/call` authorized with its arguments, and a
 * refused call never reaching its tool.
 */

import assert from "node:assert/strict";
import { createServer, request, type Server as HttpServer } from "node:http";
import { after, before, describe, it } from "node:test";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

import { HolderSecret, MandateMcp, Verifier, attenuate, createProof } from "../src/index.js";
import { Service, freePort } from "./support.js";

describe("MCP middleware", () => {
  let service: Service;
  let http: HttpServer;
  let url: string;
  const ran: Array<{ name: string; principal: unknown }> = [];

  before(async () => {
    service = await Service.start();
    const port = await freePort();
    url = `http://127.0.0.1:${port}/mcp`;
    const mcp = new MandateMcp({
      verifier: new Verifier({ baseUrl: service.baseUrl }),
      tool: "crm",
      publicUrl: `http://127.0.0.1:${port}`,
      resourceMetadata: `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`,
    });
    http = createServer((req, res) => {
      // Stateless: one server and transport per request.
      const server = new Server({ name: "crm", version: "1.0.0" }, { capabilities: { tools: {} } });
      server.setRequestHandler(ListToolsRequestSchema, async () => ({
        tools: ["read", "write"].map((name) => ({ name, inputSchema: { type: "object" as const } })),
      }));
      server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
        const mandate = (extra.authInfo?.extra as { mandate?: { principal_subject?: string } } | undefined)?.mandate;
        ran.push({ name: request.params.name, principal: mandate?.principal_subject });
        return { content: [{ type: "text" as const, text: `${request.params.name} done` }] };
      });
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      res.on("close", () => void transport.close());
      void server.connect(transport).then(() => mcp.handle(req, res, transport)).catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    await new Promise<void>((r) => http.listen(port, "127.0.0.1", r));
  });
  after(async () => {
    await new Promise((r) => http?.close(r));
    await service?.stop();
  });

  const client = async (headers: Record<string, string>) => {
    const c = new Client({ name: "tests", version: "1.0.0" });
    await c.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
    return c;
  };
  const initialize = JSON.stringify({
    jsonrpc: "2.0", id: 1, method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
  });
  const post = (headers: Record<string, string>, body = initialize) => fetch(url, {
    method: "POST", body, headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
  });

  it("challenges a request without a mandate as the gateway does", async () => {
    const response = await post({});
    assert.equal(response.status, 401);
    const metadata = url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp");
    assert.equal(response.headers.get("www-authenticate"), `Bearer resource_metadata="${metadata}", DPoP algs="EdDSA ES256"`);
    const body = await response.json() as { error: { code: number } };
    assert.equal(body.error.code, -32600);
  });

  it("answers a refused mandate with invalid_token and its code", async () => {
    const response = await post({ authorization: "Bearer not-a-mandate" });
    assert.equal(response.status, 401);
    assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer error="invalid_token", error_description="malformed", resource_metadata=/);
  });

  it("runs granted calls and refuses others without running the tool", async () => {
    const { token } = await service.mint([{ tool: "crm", operations: ["read", "write"] }]);
    const keys = (await service.documents()).keys;
    const narrowed = attenuate(token, {
      rights: [{ tool: "crm", operation: "read" }, { tool: "crm", operation: "write" }],
      constraints: [{ tool: "crm", operation: "write", argument: "ticket", constraint: { prefix: "T-" } }],
    }, keys);
    const c = await client({ authorization: `Bearer ${narrowed}` });
    assert.deepEqual((await c.listTools()).tools.map((t) => t.name), ["read", "write"]);
    ran.length = 0;
    const result = await c.callTool({ name: "read", arguments: {} });
    assert.deepEqual(result.content, [{ type: "text", text: "read done" }]);
    assert.deepEqual(ran, [{ name: "read", principal: "alice" }]);
    await c.callTool({ name: "write", arguments: { ticket: "T-1" } });
    await assert.rejects(c.callTool({ name: "write", arguments: { ticket: "X-1" } }), /argument_not_allowed/);
    await assert.rejects(c.callTool({ name: "delete", arguments: {} }), /not_authorized/);
    assert.deepEqual(ran.map((r) => r.name), ["read", "write"], "refused calls never ran");
    await c.close();

    const raw = await post({ authorization: `Bearer ${narrowed}` },
      JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "write", arguments: { ticket: "X-1" } } }));
    assert.equal(raw.status, 403);
    const body = await raw.json() as { id: number; error: { code: number; data: Record<string, unknown> } };
    assert.equal(body.id, 7);
    assert.equal(body.error.code, -32602);
    assert.deepEqual(body.error.data, { reason: "argument_not_allowed", tool: "crm", operation: "write", argument: "ticket", requirement: "must start with `T-`" });
    assert.match(raw.headers.get("www-authenticate") ?? "", /^Bearer error="insufficient_scope", scope="crm:write"/);
  });

  /** A request with exactly this request target (`http.request` sends `path` as it is). */
  const rawTarget = (target: string, headers: Record<string, string>) => new Promise<number>((resolve, reject) => {
    const sent = request({
      host: "127.0.0.1", port: Number(new URL(url).port), path: target, method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", "content-length": Buffer.byteLength(initialize), ...headers },
    }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    sent.on("error", reject);
    sent.end(initialize);
  });

  it("names this server in the proof's URL whatever the request target says", async () => {
    const holder = HolderSecret.generate("EdDSA");
    const { token } = await service.mint([{ tool: "crm", operations: ["read"] }], { holder_key: holder.publicKey.toJwk() });
    const dpop = (proofUrl: string) => ({ authorization: `DPoP ${token}`, dpop: createProof(holder, { method: "POST", url: proofUrl, token }) });
    // Proofs made for other servers, replayed here with targets that would name those servers.
    assert.equal(await rawTarget("//evil.example/mcp", dpop("http://evil.example/mcp")), 400, "a target starting with //");
    assert.equal(await rawTarget("https://other.example/mcp", dpop("https://other.example/mcp")), 400, "an absolute-form target");
    assert.equal(await rawTarget("http://evil.example/mcp", dpop(url)), 400, "an absolute-form target, even with a proof for here");
    // A proof names this server and the path; the query is not part of it.
    assert.equal(await rawTarget("/mcp?x=1", dpop(url)), 200);
    assert.equal(await rawTarget("/mcp", dpop("http://evil.example/mcp")), 401, "a proof for another server");
  });

  it("checks a bound mandate's proof on each request", async () => {
    const holder = HolderSecret.generate("ES256");
    const { token } = await service.mint([{ tool: "crm", operations: ["read"] }], { holder_key: holder.publicKey.toJwk() });
    const bearer = await post({ authorization: `Bearer ${token}` });
    assert.equal(bearer.status, 401);
    assert.match(bearer.headers.get("www-authenticate") ?? "", /^DPoP error="invalid_dpop_proof", error_description=".*", algs="EdDSA ES256"/);
    const proof = createProof(holder, { method: "POST", url, token });
    const accepted = await post({ authorization: `DPoP ${token}`, dpop: proof });
    assert.equal(accepted.status, 200);
    const replayed = await post({ authorization: `DPoP ${token}`, dpop: proof });
    assert.equal(replayed.status, 401, "a proof is accepted once");
  });
});
