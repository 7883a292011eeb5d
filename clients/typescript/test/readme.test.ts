/**
 * The README's code and commands, run: every fenced `ts` block compiled with the package's
 * `tsconfig.json` and run against the real dev service, and the `sh` block checked to be the
 * commands `.ci/run` runs.
 *
 * Each block is written to `dist/readme/` (inside the package, so `@mandate/client` resolves to
 * the package itself, as it does for a user who installed it) after a one-line preamble binding
 * the names the README says the test provides: `mandateUrl`, `token` (a mandate for `crm` read and
 * write, bound to `holder`), `holder`, `dpopHeader` (the holder's proof for
 * `POST https://crm.example.com/v1/tickets`) and `callArguments`. The block's top-level constants
 * are exported after it, for the tests to check what the block claims. A block's file is named
 * after the README line of its opening fence: line n of the file is line fence + n - 1 of the README.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it, mock } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

import { HolderSecret, RevocationFollower, Verifier, createProof } from "../src/index.js";
import { Service, repoPath } from "./support.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const README = readFileSync(join(root, "README.md"), "utf8");
const FENCE = /^```(\w+)\n([\s\S]*?)^```$/gm;

interface Block {
  /** The README line of the opening fence. */
  line: number;
  body: string;
}

function blocks(language: string): Block[] {
  return [...README.matchAll(FENCE)]
    .filter((m) => m[1] === language)
    .map((m) => ({ line: README.slice(0, m.index).split("\n").length, body: m[2] ?? "" }));
}

/** The names a block may use, bound by the test before it runs. */
interface Names {
  mandateUrl: string;
  token: string;
  holder: HolderSecret;
  dpopHeader: string;
  callArguments: Record<string, unknown>;
}

const PREAMBLE = "const { mandateUrl, token, holder, dpopHeader, callArguments } = (globalThis as unknown as { readme: "
  + "{ mandateUrl: string; token: string; holder: import(\"@mandate/client\").HolderSecret; dpopHeader: string; "
  + "callArguments: Record<string, unknown> } }).readme;";

let compiled: string[] | undefined;

/** Every `ts` block written with the preamble and compiled by `tsc`; the compiled modules' URLs. */
function compileBlocks(): string[] {
  if (compiled !== undefined) return compiled;
  const dir = join(root, "dist/readme");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({
    extends: "../../tsconfig.json",
    compilerOptions: { rootDir: ".", outDir: "out", declaration: false, sourceMap: false },
    include: ["*.ts"],
  }));
  const names = blocks("ts").map(({ line, body }) => {
    const declared = [...body.matchAll(/^(?:const|let) (\w+)/gm)].map((m) => m[1]);
    const exported = declared.length > 0 ? `export { ${declared.join(", ")} };\n` : "export {};\n";
    writeFileSync(join(dir, `line-${line}.ts`), `${PREAMBLE}\n${body}${exported}`);
    return `line-${line}`;
  });
  try {
    execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", dir], { encoding: "utf8", stdio: "pipe" });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`the README's ts blocks do not compile (dist/readme/line-<fence line>.ts):\n${stdout ?? ""}${stderr ?? ""}`);
  }
  compiled = names.map((name) => {
    const file = join(dir, "out", `${name}.js`);
    assert.ok(existsSync(file), `tsc wrote ${file}`);
    return pathToFileURL(file).href;
  });
  return compiled;
}

let runs = 0;

/** Runs the `index`th `ts` block with `names` bound: its top-level constants and what it logged. */
async function run(index: number, names: Names): Promise<{ exports: Record<string, unknown>; printed: unknown[][] }> {
  const url = compileBlocks()[index];
  assert.ok(url !== undefined, `the README has a ts block #${index}`);
  const global = globalThis as { readme?: Names };
  global.readme = names;
  const printed: unknown[][] = [];
  const log = mock.method(console, "log", (...args: unknown[]) => { printed.push(args); });
  try {
    // A query of its own per run: the same block evaluated afresh.
    const exports = await import(`${url}?run=${++runs}`) as Record<string, unknown>;
    return { exports, printed };
  } finally {
    log.mock.restore();
    delete global.readme;
  }
}

const TICKETS = "https://crm.example.com/v1/tickets";

async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe("README", () => {
  it("has the blocks this test runs", () => {
    assert.deepEqual(blocks("ts").length, 3);
    assert.deepEqual(blocks("sh").length, 1);
    assert.deepEqual([...README.matchAll(FENCE)].map((m) => m[1]).filter((l) => l !== "ts" && l !== "sh"), [],
      "no block in another language goes unrun");
  });

  it("gives the install and test commands .ci/run runs", () => {
    const [commands] = blocks("sh");
    assert.deepEqual(commands?.body.split("\n").filter((l) => l !== ""), ["cd clients/typescript && npm ci --no-audit --no-fund && npm test"]);
    const ci = readFileSync(repoPath(".ci/run"), "utf8");
    assert.ok(ci.includes("(cd clients/typescript && npm ci --no-audit --no-fund && npm test)"), ".ci/run runs them");
  });

  it("says truly that npm test and npm run bench load biscuit-wasm with --experimental-wasm-modules", () => {
    assert.match(README, /`npm test` and `npm run bench` do/);
    const { scripts } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> };
    for (const script of ["test", "bench"]) {
      assert.match(scripts[script] ?? "", /\bnode --experimental-wasm-modules /, script);
    }
  });

  it("has ts blocks that compile with the package's settings", () => {
    assert.equal(compileBlocks().length, 3);
  });
});

describe("README examples against the real service", () => {
  let service: Service;
  before(async () => {
    service = await Service.start();
  });
  after(async () => service?.stop());

  /** The preamble's names, for a fresh mandate bound to a fresh holder key. */
  const preamble = async (operations: string[] = ["read", "write"]): Promise<Names> => {
    const holder = HolderSecret.generate("EdDSA");
    const { token } = await service.mint([{ tool: "crm", operations }], { holder_key: holder.publicKey.toJwk() });
    const dpopHeader = createProof(holder, { method: "POST", url: TICKETS, token });
    return { mandateUrl: service.baseUrl, token, holder, dpopHeader, callArguments: { ticket: "T-17" } };
  };

  it("Verifying: logs who the mandate speaks for, or the refusal's code", async () => {
    const granted = await run(0, await preamble());
    assert.ok(granted.exports.verifier instanceof Verifier);
    assert.deepEqual(granted.printed, [["alice", "dev-orchestrator", [], { tool: "crm", operation: "read" }]]);

    const refused = await run(0, await preamble(["write"]));
    assert.deepEqual(refused.printed, [["not_authorized"]], "a mandate without crm read is refused");

    const names = await preamble();
    const foreign = await run(0, { ...names, dpopHeader: createProof(HolderSecret.generate("EdDSA"), { method: "POST", url: TICKETS, token: names.token }) });
    assert.deepEqual(foreign.printed, [["invalid_dpop_proof"]], "a proof by another key is refused");
  });

  it("Holding: narrows the mandate, and the narrowed one is presented with the holder's proof", async () => {
    const names = await preamble();
    const { exports, printed } = await run(1, names);
    assert.deepEqual(printed, []);
    const { narrowed, proof } = exports as { narrowed: string; proof: string };
    assert.equal(typeof narrowed, "string");
    assert.notEqual(narrowed, names.token);

    const verifier = new Verifier({ baseUrl: service.baseUrl });
    const read = await verifier.verify(narrowed, { tool: "crm", operation: "read", proof, method: "GET", url: TICKETS });
    assert.deepEqual(read.hops, [{ agent: "researcher", attested: false }]);
    assert.equal(read.holder_key, names.holder.thumbprint());
    const expires = Date.parse(read.expires_at);
    assert.ok(expires <= Date.now() + 300_000 && expires > Date.now() + 250_000, `expires in 5 minutes: ${read.expires_at}`);

    const write = (token: string) => verifier.verify(token, { tool: "crm", operation: "write", method: "GET", url: TICKETS,
      proof: createProof(names.holder, { method: "GET", url: TICKETS, token }) });
    assert.equal((await write(names.token)).right.operation, "write", "the mandate itself grants write");
    await assert.rejects(write(narrowed), { code: "not_authorized" }, "the narrowed one does not");
    await assert.rejects(verifier.verify(narrowed, { tool: "crm", operation: "read" }), { code: "invalid_dpop_proof" },
      "still bound: refused without a proof");
  });

  it("Revocations: the verifier refuses a mandate once it is revoked at the service", async () => {
    const { exports } = await run(2, await preamble());
    const { follower, verifier } = exports as { follower: RevocationFollower; verifier: Verifier };
    assert.ok(follower instanceof RevocationFollower && verifier instanceof Verifier);
    try {
      const minted = await service.mint([{ tool: "crm", operations: ["read"] }]);
      const outcome = async () => {
        try {
          return (await verifier.verify(minted.token, { tool: "crm", operation: "read" })).mandate_id;
        } catch (error) {
          return (error as { code?: string }).code;
        }
      };
      assert.ok(await eventually(async () => await outcome() === minted.mandate_id, 5_000), "verified once the follower synced");
      await service.revoke(minted.mandate_id);
      assert.ok(await eventually(async () => await outcome() === "revoked", 10_000), "refused once revoked");
    } finally {
      await follower.stop();
    }
  });
});
