/**
 * Biscuit symbol tables (biscuit-auth 6 `datalog/symbol.rs`): 28 default symbols with ids
 * 0..27, then a token's own symbols from id 1024 on. A first-party block resolves against the
 * defaults, the authority's symbols and every first-party block's, in order; a third-party
 * block has a table of its own.
 */

const DEFAULT_SYMBOLS: readonly string[] = [
  "read", "write", "resource", "operation", "right", "time", "role", "owner", "tenant",
  "namespace", "user", "team", "service", "admin", "email", "group", "member", "ip_address",
  "client", "client_ip", "domain", "path", "version", "cluster", "node", "hostname", "nonce",
  "query",
];

const OFFSET = 1024;

/** A table's symbols overlap the defaults or another table's. */
export class SymbolOverlap extends Error {
  constructor() {
    super("a block may not redefine a symbol");
    this.name = "SymbolOverlap";
  }
}

/** A symbol table. */
export class SymbolTable {
  private constructor(private readonly symbols: string[]) {}

  /** A table of `symbols`, refused if one of them is a default symbol. */
  static from(symbols: readonly string[]): SymbolTable {
    if (symbols.some((s) => DEFAULT_SYMBOLS.includes(s))) throw new SymbolOverlap();
    return new SymbolTable([...symbols]);
  }

  /** Appends `other`'s symbols, refused if the two tables share one. */
  extend(other: SymbolTable): void {
    const mine = new Set(this.symbols);
    if (other.symbols.some((s) => mine.has(s))) throw new SymbolOverlap();
    this.symbols.push(...other.symbols);
  }

  /** The symbol with id `id`, if any. */
  get(id: number): string | undefined {
    if (id >= OFFSET) return this.symbols[id - OFFSET];
    return id >= 0 ? DEFAULT_SYMBOLS[id] : undefined;
  }

  /** A scratch copy that interns new symbols, as biscuit-auth does when it compiles Datalog. */
  scratch(): (symbol: string) => number {
    const added: string[] = [];
    const base = this.symbols;
    return (symbol) => {
      const known = DEFAULT_SYMBOLS.indexOf(symbol);
      if (known >= 0) return known;
      const own = base.indexOf(symbol);
      if (own >= 0) return OFFSET + own;
      const extra = added.indexOf(symbol);
      if (extra >= 0) return OFFSET + base.length + extra;
      added.push(symbol);
      return OFFSET + base.length + added.length - 1;
    };
  }
}
