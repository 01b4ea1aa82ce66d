import { readFileSync } from 'node:fs';
import path from 'node:path';
import { failed } from '../base/errors.js';

/**
 * The capabilities file bpfd's own policy is compiled with (policies/capabilities.json, made by
 * scripts/gen-wasm-capabilities.mjs): only builtins OPA's wasm target implements inside the
 * module, so a module built with it never asks bpfd for a builtin. It ships beside the policy,
 * found the way the shipped wasm/bpfd.wasm is (BPFD_HOME); an executable that carries its files
 * inside it says where with useCapabilitiesFile, as it does for the policy.
 */

let embedded: string | null = null;
let embeddedDocument: unknown = null;

/**
 * The executable's copy: a path in its embedded files, or the document itself (Bun parses a
 * JSON import whatever its type; scripts/gen-wasm-capabilities.mjs writes it with 2-space JSON).
 */
export function useCapabilitiesFile(file: string | object): void {
  if (typeof file === 'string') embedded = file;
  else embeddedDocument = file;
}

export function capabilitiesPath(): string {
  if (embedded !== null) return embedded;
  // build/src/policy/ and dist/ are below the repo root; bin/bpfd's bundle sets BPFD_HOME
  const home = process.env.BPFD_HOME ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
  return path.join(home, 'policies', 'capabilities.json');
}

export function capabilitiesText(): string {
  if (embeddedDocument !== null) return JSON.stringify(embeddedDocument, null, 2) + '\n';
  const file = capabilitiesPath();
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw failed(`cannot read bpfd's capabilities file ${file}: ${(e as Error).message}`, ['it ships with bpfd (policies/capabilities.json): reinstall bpfd, or set BPFD_HOME to where it is']);
  }
}
