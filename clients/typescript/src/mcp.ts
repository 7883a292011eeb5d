/**
 * Verifying mandates in an MCP server (Streamable HTTP, `@modelcontextprotocol/sdk`), with the
 * answers mandate's gateway gives (`src/gateway/answers.rs`):
 *
 * - at the HTTP level, every request must present a mandate (`Authorization: Bearer`, or `DPoP`
 *   with a `DPoP` proof for a bound one): a missing or refused mandate is answered 401 with
 *   `WWW-Authenticate: Bearer …` and `DPoP algs="EdDSA ES256"`, a refused proof with a `DPoP`
 *   challenge (and a fresh `DPoP-Nonce` when one is wanted);
 * - each `tools/call` is authorized with its arguments (the tool's name is the operation, or
 *   what `operation` maps it to, on the server's tool id): a refusal is a JSON-RPC error naming
 *   the code, 403 (401 for a revoked or expired mandate, 503 when revocations are stale), and the
 *   request never reaches the transport, so the tool never runs.
 *
 * Requests that pass go to the transport with `req.auth` set, so tool handlers see who acts
 * (`extra.authInfo.extra.mandate`).
 */

import type { IncomingMessage, ServerResponse } from "node:http";

import type { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";

import { ArgumentNotAllowed, ProofRefused, VerificationError } from "./errors.js";
import { JsonError, parseJson } from "./json.js";
import { ALGORITHMS } from "./pop/keys.js";
import type { Presentation, Verifier } from "./verifier.js";

/** JSON-RPC error codes the gateway answers with. */
const PARSE_ERROR = -32700;
const INVALID_REQUEST = -32600;
const INVALID_PARAMS = -32602;
const INTERNAL_ERROR = -32603;
/** Largest request body read. */
const MAX_BODY = 1 << 20;

/** How an MCP server checks mandates. */
export interface MandateMcpOptions {
  verifier: Verifier;
  /** This server's tool id in mandate (`crm`). */
  tool: string;
  /**
   * The URL clients address this server at (scheme, host, port, and a path prefix if a proxy
   * strips one): a DPoP proof must name it followed by the request's path. The request target
   * only ever contributes its path: an absolute-form target or one starting with `//` is
   * answered 400.
   */
  publicUrl: string;
  /** The operation a tool's call performs (default: the tool's name). */
  operation?: (toolName: string) => string;
  /** This server's RFC 9728 metadata URL, named in challenges. */
  resourceMetadata?: string;
}

type Message = { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown };

/** The gateway's `quoted`: controls dropped, quotes and backslashes escaped. */
function quoted(value: string): string {
  return `"${[...value].filter((c) => !/[\u0000-\u001f\u007f-\u009f]/u.test(c)).map((c) => (c === '"' || c === "\\" ? `\\${c}` : c)).join("")}"`;
}

function challenge(scheme: "Bearer" | "DPoP", params: Array<[string, string]>): string {
  return scheme + params.map(([k, v], i) => `${i === 0 ? " " : ", "}${k}=${quoted(v)}`).join("");
}

function rpcError(id: unknown, code: number, message: string, data?: unknown): unknown {
  const error: Record<string, unknown> = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: "2.0", id: id ?? null, error };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new JsonError("the request body is larger than 1 MiB");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** `publicUrl` without query, fragment or trailing slash; refused unless an absolute http(s) URL. */
function publicBase(publicUrl: string): string {
  let url: URL;
  try {
    url = new URL(publicUrl);
  } catch {
    throw new TypeError("publicUrl must be an absolute http or https URL");
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.username !== "" || url.password !== ""
    || url.search !== "" || url.hash !== "") {
    throw new TypeError("publicUrl must be an http or https URL without credentials, query or fragment");
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/**
 * The path of a request target in origin form (`/mcp?x=1` gives `/mcp`), or `undefined` for any
 * other form: absolute (`https://other.example/mcp`), authority or asterisk form, and a path
 * starting with `//`, which URL resolution reads as another host.
 */
function requestPath(target: string | undefined): string | undefined {
  if (target === undefined || !target.startsWith("/") || target.startsWith("//")) return undefined;
  return target.split(/[?#]/)[0];
}

/** Verifies mandates in front of a `StreamableHTTPServerTransport`. */
export class MandateMcp {
  private readonly base: string;

  constructor(private readonly options: MandateMcpOptions) {
    this.base = publicBase(options.publicUrl);
  }

  private metadata(): Array<[string, string]> {
    return this.options.resourceMetadata === undefined ? [] : [["resource_metadata", this.options.resourceMetadata]];
  }

  /** 401 with the Bearer challenge (and `error` when a mandate was refused) and the DPoP offer. */
  private unauthorized(res: ServerResponse, id: unknown, message: string, error?: [string, string]): void {
    const params: Array<[string, string]> = error === undefined ? [] : [["error", error[0]], ["error_description", error[1]]];
    send(res, 401, rpcError(id, INVALID_REQUEST, message), {
      "www-authenticate": [
        challenge("Bearer", [...params, ...this.metadata()]),
        challenge("DPoP", [["algs", ALGORITHMS.join(" ")]]),
      ],
    });
  }

  /** The answer to a mandate refused at the HTTP level. */
  private refused(res: ServerResponse, id: unknown, error: VerificationError): void {
    if (error instanceof ProofRefused && error.problem === "busy") {
      send(res, 503, rpcError(id, INTERNAL_ERROR, "too many proofs in flight; retry shortly"), { "retry-after": "1" });
    } else if (error instanceof ProofRefused) {
      const headers: Record<string, string> = {
        "www-authenticate": challenge("DPoP", [
          ["error", error.code], ["error_description", error.message], ["algs", ALGORITHMS.join(" ")], ...this.metadata(),
        ]),
      };
      if (error.code === "use_dpop_nonce") headers["dpop-nonce"] = this.options.verifier.nonce();
      send(res, 401, rpcError(id, INVALID_REQUEST, `the proof of possession is refused: ${error.message}`), headers);
    } else if (error.code === "revocations_stale") {
      send(res, 503, rpcError(id, INTERNAL_ERROR, `the server's copy of the revocation feed is stale; retry shortly`), { "retry-after": "1" });
    } else {
      this.unauthorized(res, id, `the mandate is not accepted: ${error.code}`, ["invalid_token", error.code]);
    }
  }

  /** The refusal of one tool call. */
  private denied(res: ServerResponse, id: unknown, name: string, operation: string, error: VerificationError): void {
    const tool = this.options.tool;
    if (error.code === "revoked" || error.code === "expired") {
      this.unauthorized(res, id, `the mandate is not accepted: ${error.code}`, ["invalid_token", error.code]);
      return;
    }
    if (error.code === "revocations_stale") {
      send(res, 503, rpcError(id, INTERNAL_ERROR, "the server cannot verify mandates now; retry shortly"), { "retry-after": "1" });
      return;
    }
    const message = error instanceof ArgumentNotAllowed
      ? `the mandate does not allow this call of \`${name}\`: argument \`${error.argument}\` ${error.requirement}`
      : `the mandate does not grant \`${operation}\` of \`${tool}\``;
    const data: Record<string, unknown> = { reason: error.code, tool, operation };
    if (error instanceof ArgumentNotAllowed) Object.assign(data, { argument: error.argument, requirement: error.requirement });
    send(res, 403, rpcError(id, INVALID_PARAMS, message, data), {
      "www-authenticate": challenge("Bearer", [
        ["error", "insufficient_scope"], ["scope", `${tool}:${operation}`], ["error_description", message], ...this.metadata(),
      ]),
    });
  }

  /**
   * Checks the request's mandate and every `tools/call` in its body, then hands it to
   * `transport` (with `req.auth` set), or answers the refusal itself.
   */
  async handle(req: IncomingMessage & { auth?: AuthInfo }, res: ServerResponse, transport: StreamableHTTPServerTransport): Promise<void> {
    let text = "";
    let messages: Message[] = [];
    let parsed: unknown;
    const path = requestPath(req.url);
    if (path === undefined) {
      send(res, 400, rpcError(null, INVALID_REQUEST, "the request target must be a path starting with a single `/`"));
      return;
    }
    if (req.method === "POST") {
      try {
        text = await readBody(req);
        parsed = parseJson(text);
      } catch {
        send(res, 400, rpcError(null, PARSE_ERROR, "the body is not JSON"));
        return;
      }
      messages = (Array.isArray(parsed) ? parsed : [parsed]).filter((m): m is Message => typeof m === "object" && m !== null);
    }
    const firstId = messages[0]?.id;
    const presentation = await this.presentation(req, res, firstId, `${this.base}${path}`);
    if (presentation === undefined) return;
    for (const message of messages) {
      if (message.method !== "tools/call") continue;
      const params = (message.params ?? {}) as { name?: unknown; arguments?: unknown };
      const name = typeof params.name === "string" ? params.name : "";
      const operation = this.options.operation?.(name) ?? name;
      try {
        this.options.verifier.authorize(presentation, { tool: this.options.tool, operation, arguments: params.arguments ?? {} });
      } catch (error) {
        if (!(error instanceof VerificationError)) throw error;
        this.denied(res, message.id, name, operation, error);
        return;
      }
    }
    const readOut = presentation.readOut;
    req.auth = {
      token: "",
      clientId: readOut.hops.at(-1)?.agent ?? readOut.agent_id,
      scopes: readOut.rights.map((r) => `${r.tool}:${r.operation}`),
      expiresAt: Math.floor(Date.parse(readOut.expires_at) / 1000),
      extra: { mandate: readOut },
    };
    await transport.handleRequest(req, res, req.method === "POST" ? JSON.parse(text) : undefined);
  }

  /** The request's mandate, checked with its proof; `undefined` when the refusal was answered. */
  private async presentation(req: IncomingMessage, res: ServerResponse, id: unknown, url: string): Promise<Presentation | undefined> {
    const authorization = req.headers.authorization ?? "";
    const match = /^(Bearer|DPoP) +(\S+)$/i.exec(authorization);
    if (match === null) {
      this.unauthorized(res, id, "send a mandate for this tool as `Authorization: Bearer <token>`");
      return undefined;
    }
    const scheme = (match[1] as string).toLowerCase();
    const token = match[2] as string;
    const proofs = req.headersDistinct["dpop"] ?? [];
    try {
      if (proofs.length > 1) throw new ProofRefused("malformed", "malformed proof: a request carries one DPoP header");
      if (scheme === "bearer" && proofs.length > 0) {
        throw new ProofRefused("malformed", "malformed proof: a DPoP proof comes with `Authorization: DPoP`");
      }
      if (scheme === "dpop" && proofs.length === 0) {
        throw new ProofRefused("missing", "the mandate is bound to a key: present it as `Authorization: DPoP` with a `DPoP` proof");
      }
      return await this.options.verifier.present(token, { proof: proofs[0], method: req.method ?? "GET", url });
    } catch (error) {
      if (!(error instanceof VerificationError)) throw error;
      this.refused(res, id, error);
      return undefined;
    }
  }
}
