/**
 * Test helpers: paths in the repository, and a real mandate service (the `mandate` binary,
 * `MANDATE_BIN` or `<repo>/target/debug/mandate`, run with `serve --dev` in a temporary
 * directory on a free port). A missing binary fails the test, saying how to get one.
 */

import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** A path from the repository root (tests run from `dist/test/`). */
export function repoPath(path: string): string {
  return resolve(here, "../../../..", path);
}

/** The mandate binary. */
/** The environment of a `mandate` process the tests start: this one's, less `MANDATE_BIN` (it
 * only tells the tests where the binary is, and mandate refuses unknown `MANDATE_*` variables). */
export function childEnv(): NodeJS.ProcessEnv {
  const { MANDATE_BIN: _binary, ...inherited } = process.env;
  return inherited;
}

export function mandateBin(): string {
  const bin = process.env.MANDATE_BIN ?? repoPath("target/debug/mandate");
  if (!existsSync(bin)) {
    throw new Error(`the mandate binary is missing at ${bin}: build it with \`cargo build\` at the repository root, or set MANDATE_BIN`);
  }
  return bin;
}

/** A port nothing listens on now. */
export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => done(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}

/** A running mandate service in development mode. */
export class Service {
  private constructor(readonly baseUrl: string, readonly dir: string, private readonly child: ChildProcess) {}

  static async start(): Promise<Service> {
    const bin = mandateBin();
    const dir = mkdtempSync(join(tmpdir(), "mandate-ts-"));
    const port = await freePort();
    const child = spawn(bin, ["serve", "--dev"], {
      cwd: dir, env: { ...childEnv(), MANDATE_LISTEN: `127.0.0.1:${port}` }, stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    child.stderr?.on("data", (chunk: Buffer) => { log = (log + chunk.toString()).slice(-4000); });
    const service = new Service(`http://127.0.0.1:${port}`, dir, child);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`mandate exited with ${child.exitCode}: ${log}`);
      try {
        if ((await fetch(`${service.baseUrl}/readyz`)).ok) return service;
      } catch {
        // Not listening yet.
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await service.stop();
    throw new Error(`mandate did not become ready: ${log}`);
  }

  /** The seeded orchestrator's secret. */
  secret(): string {
    return readFileSync(join(this.dir, "mandate-data/dev-orchestrator.secret"), "utf8").trim();
  }

  /** Runs the mandate CLI in the service's directory. */
  cli(args: string[], input?: string): string {
    return execFileSync(mandateBin(), args, { cwd: this.dir, env: childEnv(), input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
  }

  /** A human token for `alice` in group `staff` from the built-in identity provider. */
  login(): string {
    return this.cli(["dev", "login", "alice", "--group", "staff"]).trim();
  }

  /** Mints a mandate for the seeded orchestrator. */
  async mint(scope: Array<{ tool: string; operations: string[] }>, extra: Record<string, unknown> = {}): Promise<{ token: string; mandate_id: string; revocation_id: string }> {
    const response = await fetch(`${this.baseUrl}/v1/mandates`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.secret()}`, "content-type": "application/json" },
      body: JSON.stringify({ subject_token: this.login(), task: { description: "Summarise open CRM tickets" }, scope, ...extra }),
    });
    const body = await response.json() as { token: string; mandate_id: string; revocation_id: string };
    if (response.status !== 200 && response.status !== 201) throw new Error(`mint answered ${response.status}: ${JSON.stringify(body)}`);
    return body;
  }

  /** Revokes a mandate as its orchestrator. */
  async revoke(mandateId: string): Promise<void> {
    const response = await fetch(`${this.baseUrl}/v1/mandates/${mandateId}/revoke`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.secret()}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: "test" }),
    });
    if (!response.ok) throw new Error(`revoke answered ${response.status}: ${await response.text()}`);
  }

  /** The published key documents. */
  async documents(): Promise<{ keys: unknown; agentKeys: unknown }> {
    const keys = await (await fetch(`${this.baseUrl}/.well-known/mandate-keys`)).json();
    const agentKeys = await (await fetch(`${this.baseUrl}/.well-known/mandate-agent-keys`)).json();
    return { keys, agentKeys };
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      const exited = new Promise((r) => this.child.once("exit", r));
      this.child.kill("SIGTERM");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
