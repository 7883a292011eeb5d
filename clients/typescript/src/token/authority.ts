/**
 * Reading the authority block's facts from its serialized form (`src/token/authority.rs`).
 * Only the authority block is trusted for them, and only once the token's signatures verify.
 * Reading them here, rather than by querying an authorizer, runs no Datalog at all.
 */

import { compareText } from "../encoding.js";
import { Malformed } from "../errors.js";
import type { BlockProto, TermProto } from "../wire/schema.js";
import { SymbolOverlap, SymbolTable } from "../wire/symbols.js";
import { isThumbprint } from "../pop/keys.js";
import { finishApprovals, type ApprovalFacts, type AuthorityApproval } from "./approval.js";
import { ConstraintRefusal, readFact, type ArgConstraint } from "./constraints.js";
import type { Right } from "./vocabulary.js";

/** The schema version every mandate states as `mandate_schema(1)`. */
export const SCHEMA_VERSION = 1n;

/** The last second chrono represents (+262142-12-31T23:59:59Z): later dates are out of range. */
const MAX_SECONDS = 8_210_266_876_799n;

/** What the authority block states. */
export interface Authority {
  mandateId: string;
  principalSubject: string;
  principalIssuer: string;
  agentId: string;
  taskId: string;
  /** Every `right($tool, $operation)`, sorted. */
  rights: Right[];
  /** `expires($date)`, seconds since the epoch. */
  expiresAt: number;
  /** Every `constraint(…)`, in order. */
  constraints: ArgConstraint[];
  /** `holder_key($jkt)`, if the mandate is bound to a key. */
  holderKey: string | undefined;
  /**
   * Every gated right's `approval(…)` with its `approved_by(…)` and `approval_arguments(…)`
   * (`approval.ts`), sorted by tool and operation.
   */
  approvals: AuthorityApproval[];
}

/** Orders rights by tool, then operation. */
export function compareRights(a: Right, b: Right): number {
  return compareText(a.tool, b.tool) || compareText(a.operation, b.operation);
}

/**
 * Reads the mandate/v1 facts of `block`: one of each single-valued fact, any number of rights,
 * constraints and approvals.
 */
export function readAuthority(block: BlockProto): Authority {
  let table: SymbolTable;
  try {
    table = SymbolTable.from(block.symbols);
  } catch (error) {
    if (error instanceof SymbolOverlap) throw new Malformed();
    throw error;
  }
  const text = (term: TermProto | undefined): string => {
    const value = term?.kind === "string" ? table.get(term.value) : undefined;
    if (value === undefined) throw new Malformed();
    return value;
  };
  const found = new Map<string, unknown>();
  const once = (name: string, value: unknown) => {
    if (found.has(name)) throw new Malformed(`the authority block must state exactly one \`${name}\` fact`);
    found.set(name, value);
  };
  const rights: Right[] = [];
  const constraints: ArgConstraint[] = [];
  const approvals: ApprovalFacts = { approvals: [], approvers: [], arguments: [] };
  for (const fact of block.facts) {
    const name = table.get(fact.name);
    if (name === undefined) throw new Malformed();
    const terms = fact.terms;
    const [a, b, c, d] = terms;
    const arity = (n: number) => terms.length === n;
    if (name === "mandate_schema" && arity(1)) {
      if (a?.kind !== "integer") throw new Malformed();
      once(name, a.value);
    } else if (name === "mandate" && arity(1)) once(name, text(a));
    else if (name === "principal" && arity(2)) once(name, [text(a), text(b)]);
    else if (name === "agent" && arity(1)) once(name, text(a));
    else if (name === "task" && arity(2)) once(name, text(a));
    else if (name === "expires" && arity(1)) {
      if (a?.kind !== "date") throw new Malformed();
      once(name, a.value);
    } else if (name === "holder_key" && arity(1)) {
      const jkt = text(a);
      if (!isThumbprint(jkt)) throw new Malformed();
      once(name, jkt);
    } else if (name === "approval" && arity(4)) {
      if (d?.kind !== "date") throw new Malformed();
      if (d.value > MAX_SECONDS) throw new Malformed("time out of range");
      approvals.approvals.push({ id: text(a), tool: text(b), operation: text(c), at: Number(d.value) });
    } else if (name === "approved_by" && arity(5)) {
      const approver = { subject: text(d), issuer: text(terms[4]) };
      approvals.approvers.push({ id: text(a), tool: text(b), operation: text(c), approver });
    } else if (name === "approval_arguments" && arity(4)) {
      approvals.arguments.push({ id: text(a), tool: text(b), operation: text(c), sha256: text(d) });
    } else if (name === "right" && arity(2)) rights.push({ tool: text(a), operation: text(b) });
    else if (name === "constraint") {
      try {
        constraints.push(readFact(terms, (t) => {
          const value = t?.kind === "string" ? table.get(t.value) : undefined;
          if (value === undefined) throw new ConstraintRefusal("unknown symbol");
          return value;
        })[0]);
      } catch (error) {
        if (error instanceof ConstraintRefusal || error instanceof Malformed) throw new Malformed();
        throw error;
      }
    } else throw new Malformed();
  }
  const required = <T>(name: string): T => {
    if (!found.has(name)) throw new Malformed(`the authority block must state exactly one \`${name}\` fact`);
    return found.get(name) as T;
  };
  if (required<bigint>("mandate_schema") !== SCHEMA_VERSION) throw new Malformed();
  const [principalSubject, principalIssuer] = required<[string, string]>("principal");
  const expires = required<bigint>("expires");
  // chrono's range: later dates are refused as out of range.
  if (expires > MAX_SECONDS) throw new Malformed("time out of range");
  rights.sort(compareRights);
  return {
    mandateId: required<string>("mandate"),
    principalSubject,
    principalIssuer,
    agentId: required<string>("agent"),
    taskId: required<string>("task"),
    rights,
    expiresAt: Number(expires),
    constraints,
    holderKey: found.get("holder_key") as string | undefined,
    approvals: finishApprovals(approvals),
  };
}

