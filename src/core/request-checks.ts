import { invalidInput } from '../base/errors.js';

/**
 * Checks on the free-form parts of a request, before anything acts on them. Metadata is stored,
 * listed in tables and matched by policies, so control characters (which rewrite a terminal) and
 * unbounded sizes are refused; interface names follow the kernel's rules (dev_valid_name), so a
 * name with "/" or ".." never reaches a path or a lookup.
 */
export const MAX_METADATA_KEY = 63;
export const MAX_METADATA_VALUE = 1024;
export const MAX_METADATA_ENTRIES = 64;
const IFNAMSIZ = 16;

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;

const printable = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);

export function checkMetadata(md: Record<string, string>): void {
  const entries = Object.entries(md);
  if (entries.length > MAX_METADATA_ENTRIES) throw invalidInput(`--metadata: ${entries.length} labels, more than the ${MAX_METADATA_ENTRIES} a program may carry`);
  for (const [k, v] of entries) {
    if (Buffer.byteLength(k) > MAX_METADATA_KEY) throw invalidInput(`--metadata key ${printable(k)} is ${Buffer.byteLength(k)} bytes, longer than ${MAX_METADATA_KEY}`);
    if (!KEY.test(k)) {
      throw invalidInput(`--metadata key ${printable(k)} is not a valid label key`, ['keys are letters, digits and . _ / -, starting with a letter or digit, e.g. app.kubernetes.io/name']);
    }
    if (Buffer.byteLength(v) > MAX_METADATA_VALUE) throw invalidInput(`--metadata ${k}: the value is ${Buffer.byteLength(v)} bytes, longer than ${MAX_METADATA_VALUE}`);
    if (CONTROL.test(v)) throw invalidInput(`--metadata ${k}: the value ${printable(v)} contains control characters (a NUL, newline, escape…), which labels may not hold`);
  }
}

/** The kernel's rules for an interface name: 1..15 bytes, not "." or "..", no "/", ":" or white space. */
export function checkIfaceName(name: string): void {
  const bytes = Buffer.byteLength(name);
  const why =
    bytes === 0 ? 'it is empty'
    : bytes >= IFNAMSIZ ? `it is ${bytes} bytes; interface names have at most ${IFNAMSIZ - 1}`
    : name === '.' || name === '..' ? `"${name}" names a directory, not an interface`
    : /[/:]/.test(name) ? 'it contains "/" or ":"'
    : /\s/.test(name) || CONTROL.test(name) ? 'it contains white space or control characters'
    : null;
  if (why) throw invalidInput(`invalid interface name ${printable(name)}: ${why}`, ['see the interfaces with: ip link']);
}
