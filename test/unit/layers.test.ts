import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * The layers of src/ point one way (issue #11, each directory's README): a module imports from its
 * own directory or from a lower layer, never from a higher or a sibling one. Only src/state
 * imports lmdb, only src/loader imports koffi. Every import counts: static, type-only, dynamic
 * `import()`, `typeof import()`, re-exports and require.
 */
const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src');

/** Lower number = lower layer. Directories of one rank are independent of each other. */
export const LAYER_RANK: Record<string, number> = {
  base: 0,
  loader: 1,
  state: 1,
  policy: 1,
  oci: 1,
  dispatcher: 2,
  core: 3,
  cli: 4,
  api: 4,
  // the executable's entry: plugs the service front end (api) into the command line (cli)
  app: 5,
};

/** Packages one directory alone may import. */
const OWNED_PACKAGES: Record<string, string> = { lmdb: 'state', koffi: 'loader' };

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)(['"])([^'"\n]+)\1/g;

export function importsOf(source: string): string[] {
  // Comments may quote imports (and do, in this very rule's explanations): drop them first.
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  return [...code.matchAll(SPECIFIER)].map((m) => m[2]);
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : /\.(ts|cjs|mjs|js)$/.test(e.name) ? [p] : [];
  });
}

/** Every import that breaks a rule, as `file: import (why)`. */
export function layerViolations(srcDir: string): string[] {
  const out: string[] = [];
  for (const file of walk(srcDir)) {
    const rel = path.relative(srcDir, file);
    const from = rel.split(path.sep)[0];
    const fromRank = LAYER_RANK[from];
    if (fromRank === undefined) {
      out.push(`${rel}: directory src/${from} has no layer (add it to LAYER_RANK and say what it owns)`);
      continue;
    }
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) {
        const target = path.relative(srcDir, path.resolve(path.dirname(file), spec));
        if (target.startsWith('..')) {
          out.push(`${rel}: ${spec} (outside src/)`);
          continue;
        }
        const to = target.split(path.sep)[0];
        if (to === from) continue;
        const toRank = LAYER_RANK[to];
        if (toRank === undefined) out.push(`${rel}: ${spec} (src/${to} has no layer)`);
        else if (toRank > fromRank) out.push(`${rel}: ${spec} (points up: ${from} is below ${to})`);
        else if (toRank === fromRank) out.push(`${rel}: ${spec} (sideways: ${from} and ${to} are one layer and independent)`);
        continue;
      }
      const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
      const owner = OWNED_PACKAGES[pkg];
      if (owner && owner !== from) out.push(`${rel}: ${spec} (only src/${owner} imports ${pkg})`);
    }
  }
  return out;
}

test('imports in src/ point down the layers only; lmdb only in src/state, koffi only in src/loader', () => {
  assert.deepEqual(layerViolations(SRC), []);
});

// src/ stays portable (node's test runner imports it): what only Bun offers is reached from the
// executable's entry point alone, which hands it to the layers below (useNativeSha256 and the like).
test("Bun's own API (the Bun global, bun: modules) is used in src/cli/entry.ts only", () => {
  const uses: string[] = [];
  for (const file of walk(SRC)) {
    const rel = path.relative(SRC, file);
    if (rel === path.join('cli', 'entry.ts')) continue;
    const code = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
    for (const m of code.matchAll(/\bBun\b|['"]bun:/g)) uses.push(`${rel}: ${code.slice(m.index, m.index + 40).split('\n')[0]}`);
  }
  assert.deepEqual(uses, []);
});

test('the import reader sees every form of import and ignores comments', () => {
  const src = [
    "import a from '../core/a.js';",
    "import type { B } from '../core/b.js';",
    "export { c } from './c.js';",
    "const d = await import('../dispatcher/d.js');",
    "type E = typeof import('../cli/e.js');",
    "import 'koffi';",
    "const f = require('lmdb');",
    "// import x from '../core/commented.js';",
    "/* import y from '../core/block.js'; */",
  ].join('\n');
  assert.deepEqual(importsOf(src), ['../core/a.js', '../core/b.js', './c.js', '../dispatcher/d.js', '../cli/e.js', 'koffi', 'lmdb']);
});
