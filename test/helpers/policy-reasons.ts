/**
 * The reasons a Rego policy can give, read from its source: every rule that adds to a set the
 * decision's `reasons` come from, with the literal text of the message it builds. A reason is a
 * template (the literals, in order, with whatever the rule fills in between), so that a case's
 * actual reason can be matched against it.
 */

/** Sets whose members end up in `reasons` (directly, or prefixed: grant_problems, input_problems). */
export const REASON_SETS = ['allowed_because', 'missing_permission', 'grant_problems', 'deny', 'input_problems'];
/** Sets that are not reasons: a new `contains` rule must be put in one list or the other. */
export const OTHER_SETS = ['matching_grants', 'passing_grants'];

export interface ReasonTemplate {
  set: string;
  /** line of the rule's head, from 1 */
  line: number;
  fragments: string[];
}

export function reasonTemplates(rego: string): ReasonTemplate[] {
  const lines = rego.split('\n');
  const out: ReasonTemplate[] = [];
  for (let i = 0; i < lines.length; i++) {
    const head = /^(\w+) contains (.*)$/.exec(lines[i]);
    if (!head) continue;
    const [, set, rest] = head;
    if (OTHER_SETS.includes(set)) continue;
    if (!REASON_SETS.includes(set)) {
      throw new Error(`policy line ${i + 1}: ${set} is a set this check does not know: list it in REASON_SETS or OTHER_SETS (test/helpers/policy-reasons.ts)`);
    }
    // the rule: its head line, and its body up to the closing brace at column 0
    let end = i;
    if (/\{\s*$/.test(lines[i])) while (end < lines.length && lines[end] !== '}') end++;
    const block = lines.slice(i, end + 1).join('\n');
    let fragments: string[];
    const literalHead = /^"((?:[^"\\]|\\.)*)"/.exec(rest);
    if (literalHead) fragments = [JSON.parse(`"${literalHead[1]}"`)];
    else {
      const at = rest.startsWith('concat(') ? block.indexOf('concat(') : messageConcat(block, rest);
      // a reason that is one string literal: msg := "…"
      const literal = at < 0 ? /\bmsg := "((?:[^"\\]|\\.)*)"/.exec(block) : null;
      if (literal) {
        out.push({ set, line: i + 1, fragments: [JSON.parse(`"${literal[1]}"`)] });
        continue;
      }
      if (at < 0) throw new Error(`policy line ${i + 1}: cannot tell what reason this ${set} rule gives (build it with msg := concat("", [...]))`);
      fragments = concatLiterals(block, at);
    }
    if (!fragments.some((f) => f.trim())) throw new Error(`policy line ${i + 1}: the reason of this ${set} rule has no literal text`);
    out.push({ set, line: i + 1, fragments });
  }
  return out;
}

/** Where `VAR := concat(` is in the rule, VAR being the head's message variable. */
function messageConcat(block: string, rest: string): number {
  const v = /^(?:\[\s*\w+\s*,\s*)?(\w+)\]?\s+if\b/.exec(rest)?.[1];
  if (!v) return -1;
  const m = new RegExp(`\\b${v}\\s*:=\\s*concat\\(`).exec(block);
  return m ? m.index + m[0].length - 'concat('.length : -1;
}

/** The string literals that are elements of the array of `concat("", [ ... ])` at `at`. */
function concatLiterals(text: string, at: number): string[] {
  let p = text.indexOf('[', at);
  const out: string[] = [];
  let depth = 0;
  for (p++; p < text.length; p++) {
    const ch = text[p];
    if (ch === '"') {
      let q = p + 1;
      while (text[q] !== '"') q += text[q] === '\\' ? 2 : 1;
      if (depth === 0) out.push(JSON.parse(text.slice(p, q + 1)));
      p = q;
    } else if (ch === '(' || ch === '[' || ch === '{') depth++;
    else if (ch === ')' || ch === ']' || ch === '}') {
      if (depth === 0) break;
      depth--;
    }
  }
  return out;
}

export const templateRegex = (t: ReasonTemplate): RegExp =>
  new RegExp(t.fragments.map((f) => f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[\\s\\S]*'));

/** The template's telling literals (6 characters or more, else its longest): a case's expected substring must contain one. */
export function keyFragments(t: ReasonTemplate): string[] {
  const trimmed = t.fragments.map((f) => f.trim());
  const long = trimmed.filter((f) => f.length >= 6);
  return long.length ? long : [trimmed.sort((a, b) => b.length - a.length)[0]];
}

export interface CaseOutcome {
  name: string;
  expected: { reasons: string[] };
  got: { reasons: string[] };
}

/**
 * The templates no case asserts: a case covers one when it got a reason of that template and
 * expects a substring of that reason which contains one of the template's telling literals.
 */
export function uncovered(templates: ReasonTemplate[], cases: CaseOutcome[]): ReasonTemplate[] {
  return templates.filter((t) => {
    const re = templateRegex(t);
    const keys = keyFragments(t);
    return !cases.some((c) => c.got.reasons.some((r) => re.test(r) && c.expected.reasons.some((s) => r.includes(s) && keys.some((k) => s.includes(k)))));
  });
}
