import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BpfdError, invalidInput } from '../base/errors.js';
import type { PolicyInput } from '../policy/input.js';
import { labelFor, readRequest, type RequestField, type RequestSpec } from './policy-request-fields.js';

/**
 * A `bpfd policy test` cases file: a list of cases, or `{data?, policy?, cases: [...]}` where data
 * and policy apply to every case that does not name its own. Each case is
 * `{name, request: {...policy eval's flags...}, expect: {allow, reasons?: [substring, ...]}}`.
 * Whatever is wrong with the file is an error naming the case and the field, before anything is
 * evaluated: a half-read table of cases would pass or fail for the wrong reason.
 */

export interface PolicyCase {
  name: string;
  /** position in the file, from 1 */
  index: number;
  input: PolicyInput | unknown;
  data?: string;
  policy?: string;
  expect: { allow: boolean; reasons: string[] };
}

export interface CasesFile {
  path: string;
  data?: string;
  policy?: string;
  cases: PolicyCase[];
}

type Builder = typeof import('../core/policy-request.js').describedInput;

const FILE_FIELDS = ['data', 'policy', 'cases'];
const CASE_FIELDS = ['name', 'request', 'expect'];
const EXPECT_FIELDS = ['allow', 'reasons'];

export async function readCasesFile(file: string): Promise<CasesFile> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw invalidInput(`cannot read cases file ${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  const doc = await parseDocument(abs, text);
  const baseDir = path.dirname(abs);
  let list: unknown;
  const top: { data?: string; policy?: string } = {};
  if (Array.isArray(doc)) list = doc;
  else if (isObject(doc)) {
    for (const k of Object.keys(doc)) {
      if (!FILE_FIELDS.includes(k)) throw invalidInput(`${file}: unknown top-level field ${k}`, [`fields: ${FILE_FIELDS.join(', ')}`]);
    }
    for (const k of ['data', 'policy'] as const) {
      const v = doc[k];
      if (v === undefined) continue;
      if (typeof v !== 'string' || v === '') throw invalidInput(`${file}: ${k}: give a file path, relative to the cases file`);
      top[k] = path.resolve(baseDir, v);
    }
    list = doc.cases;
    if (list === undefined) throw invalidInput(`${file}: no cases: give a list of cases, or {data, policy, cases: [...]}`);
  } else throw invalidInput(`${file}: give a list of cases, or {data, policy, cases: [...]}`);
  if (!Array.isArray(list) || list.length === 0) throw invalidInput(`${file}: cases: give a non-empty list of {name, request, expect}`);

  // libbpf (koffi) and the ELF reader load only once the file is known to hold cases
  const { describedInput } = await import('../core/policy-request.js');
  const seen = new Set<string>();
  const cases = list.map((c, i) => readCase(c, i + 1, file, baseDir, seen, describedInput));
  return { path: abs, ...top, cases };
}

async function parseDocument(file: string, text: string): Promise<unknown> {
  if (/\.json$/i.test(file)) {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw invalidInput(`cases file ${file} is not valid JSON: ${(e as Error).message}`);
    }
  }
  if (!/\.ya?ml$/i.test(file)) throw invalidInput(`cases file ${file}: name it .json, .yaml or .yml, so that bpfd knows how to read it`);
  // yaml loads only for a YAML cases file
  const { default: YAML } = await import('yaml');
  try {
    return YAML.parse(text);
  } catch (e) {
    throw invalidInput(`cases file ${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
}

function readCase(c: unknown, index: number, file: string, baseDir: string, seen: Set<string>, build: Builder): PolicyCase {
  const nameOf = isObject(c) && typeof c.name === 'string' && c.name !== '' ? c.name : null;
  const where = nameOf ? `${file}: case "${nameOf}"` : `${file}: case ${index}`;
  if (!isObject(c)) throw invalidInput(`${where}: give an object {name, request, expect}`);
  for (const k of Object.keys(c)) {
    if (!CASE_FIELDS.includes(k)) throw invalidInput(`${where}: unknown field ${k}`, [`case fields: ${CASE_FIELDS.join(', ')}`]);
  }
  if (!nameOf) throw invalidInput(`${where}: name: give each case a name`);
  if (seen.has(nameOf)) throw invalidInput(`${where}: name: another case has the same name`);
  seen.add(nameOf);
  if (!isObject(c.request)) throw invalidInput(`${where}: request: give an object with the fields of bpfd policy eval's flags`);
  const e = c.expect;
  if (!isObject(e)) throw invalidInput(`${where}: expect: give {allow: true|false, reasons: [substring, ...]}`);
  for (const k of Object.keys(e)) {
    if (!EXPECT_FIELDS.includes(k)) throw invalidInput(`${where}: expect.${k}: unknown field`, [`expect fields: ${EXPECT_FIELDS.join(', ')}`]);
  }
  if (typeof e.allow !== 'boolean') throw invalidInput(`${where}: expect.allow: give true or false, got ${JSON.stringify(e.allow)}`);
  const reasons = e.reasons ?? [];
  if (!Array.isArray(reasons) || !reasons.every((r) => typeof r === 'string' && r !== '')) {
    throw invalidInput(`${where}: expect.reasons: give a list of non-empty substrings, got ${JSON.stringify(e.reasons)}`);
  }

  const label = (f: RequestField) => `${where}: request.${f}`;
  const src = { label, baseDir };
  let spec: RequestSpec;
  let input: unknown;
  try {
    spec = readRequest(c.request, src);
    input = spec.input ?? build(spec.request!, labelFor(src));
  } catch (err) {
    if (!(err instanceof BpfdError) || err.message.startsWith(where)) throw err;
    // an error from reading the object (no such file, no such function): say which case
    throw invalidInput(`${where}: ${err.message}`, err.details);
  }
  return { name: nameOf, index, input, ...(spec.data ? { data: spec.data } : {}), ...(spec.policy ? { policy: spec.policy } : {}), expect: { allow: e.allow, reasons } };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Whether a decision is what the case expects; the problems, in words, when it is not. */
export function judge(c: PolicyCase, got: { allow: boolean; reasons: string[] }): string[] {
  const problems: string[] = [];
  if (got.allow !== c.expect.allow) problems.push(`expected ${c.expect.allow ? 'allow' : 'deny'}, got ${got.allow ? 'allow' : 'deny'}`);
  for (const want of c.expect.reasons) {
    if (!got.reasons.some((r) => r.includes(want))) problems.push(`expected a reason containing ${JSON.stringify(want)}, none does`);
  }
  return problems;
}
