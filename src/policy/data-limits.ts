import { statSync } from 'node:fs';

/**
 * Bounds on the policy data document, checked before it is parsed: bpfd reads it on every
 * change, so a document far larger or deeper than any real policy needs (a runaway generator, a
 * hostile edit) gets a message naming the limit instead of seconds of parsing, hundreds of MB of
 * memory or a stack overflow inside the policy engine.
 */
export const MAX_DATA_BYTES = 16 * 1024 * 1024;
export const MAX_DATA_DEPTH = 64;

/** Why the file cannot be the data document before reading it, or null. ENOENT is the caller's. */
export function dataFileProblem(path: string): string | null {
  let st;
  try {
    st = statSync(path);
  } catch {
    return null;
  }
  if (!st.isFile()) return `policy data ${path} is not a regular file`;
  if (st.size > MAX_DATA_BYTES) {
    return `policy data ${path} is ${(st.size / 1048576).toFixed(1)} MB, more than the ${MAX_DATA_BYTES / 1048576} MB bpfd reads: a policy data document is rules and names, not bulk data`;
  }
  return null;
}

/** Why the text is nested too deeply to be the data document, or null. */
export function dataDepthProblem(path: string, text: string): string | null {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_DATA_DEPTH) return `policy data ${path} is nested more than ${MAX_DATA_DEPTH} levels deep (at byte ${i})`;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return null;
}
