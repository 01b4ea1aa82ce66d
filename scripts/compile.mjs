// Run by Bun (scripts/build.mjs starts it): compiles src/cli/entry.ts, its dependencies, koffi's
// and lmdb's native addons and the shipped policy into one executable, dist/bpfd.
// Usage: bun scripts/compile.mjs OUTFILE VERSION COMMIT [--no-bytecode] [--no-minify] [--no-shims] [--no-jit-policy] [--no-elf-gate]
// (the --no-* switches exist to measure what each step is worth: bench/cli.ts and bench/elf-gate.ts
// say how; --no-elf-gate builds a copy whose strict ELF gate returns at once, never shipped).
import path from 'node:path';
import { readFileSync } from 'node:fs';

const [outfile, version, commit, ...flags] = process.argv.slice(2);
const root = path.resolve(import.meta.dir, '..');
const modules = path.join(root, 'node_modules');
const want = (name) => !flags.includes(`--no-${name}`);

// The executable is built for the platform that builds it (Bun's linux-x64 is a glibc binary),
// so each addon is the one prebuilt file for it, required by a fixed path: Bun embeds a `.node`
// only when it can see which file a require names.
const arch = process.arch;
const lmdbAddon = path.join(modules, `@lmdb/lmdb-linux-${arch}`, 'node.napi.glibc.node');
const koffiAddon = path.join(modules, `@koromix/koffi-linux-${arch}`, `linux_${arch}`, 'koffi.node');
for (const f of [lmdbAddon, koffiAddon]) readFileSync(f); // fail here, not at run time, when one is missing

// Modules replaced inside the executable, each by what the original would have done on this
// platform, minus its run-time search.
const replaced = {
  // lmdb and msgpackr-extract find their addons through node-gyp-build-optional-packages, which
  // searches node_modules (not there in the executable) and probes libc. Only lmdb's is needed.
  'node-gyp-build-optional-packages': `module.exports = () => require(${JSON.stringify(lmdbAddon)});`,
  // koffi's platform package reads the ELF header of process.execPath to pick glibc or musl.
  [`@koromix/koffi-linux-${arch}`]: `module.exports = require(${JSON.stringify(koffiAddon)});`,
  // msgpackr's optional native string extractor only speeds up large decodes, which bpfd never
  // does, and would need an addon of its own.
  'msgpackr-extract': 'module.exports = null;',
};
// Replacements that only save start-up time (measured by bench/cli.ts, see scripts/build.mjs).
const faster = {
  // The policy SDK's yaml builtins load a large parser at import; bpfd's policies compile with
  // wasm-native builtins only, so it loads the first time a custom policy really calls one.
  yaml: `
    let real = null;
    const yaml = () => (real ??= require(${JSON.stringify(path.join(modules, 'yaml'))}));
    module.exports = { parse: (...a) => yaml().parse(...a), stringify: (...a) => yaml().stringify(...a) };`,
};
const shims = { ...replaced, ...(want('shims') ? faster : {}) };

// koffi requires its platform package through a createRequire'd `require`, which a bundler cannot
// follow: without it the plain require calls remain, and the linux one is replaced above.
const koffiStatic = /[\\/]koffi[\\/]src[\\/]koffi[\\/]src[\\/]static\.js$/;
const koffiLocalRequire = 'const require = createRequire(import.meta.url);';
// koffi imports node:util for util.deprecate alone (its deprecated aliases), and Bun's node:util
// costs ~2.5 ms to evaluate: every command that loads koffi paid it. The same wrapper, warning once.
const koffiIndex = /[\\/]koffi[\\/]src[\\/]koffi[\\/]index\.js$/;
const koffiUtilImport = 'import util from "node:util";';
const koffiUtil = `const util = { deprecate: (fn, msg, code) => { let warned = false; return function (...args) { if (!warned) { warned = true; process.emitWarning(msg, 'DeprecationWarning', code); } return fn.apply(this, args); }; } };`;

// BPFD_TRACE_MODULES=1 (src/cli/entry.ts): every bundled module notes its name when it runs,
// so a test can see what each command really evaluates in the executable. One optional call
// per module when the variable is unset.
const traced = /\.(c|m)?[jt]s$/;
const loaderOf = (file) => (/\.(c|m)?ts$/.test(file) ? 'ts' : 'js');
const traceName = (file) => {
  const rel = path.relative(root, file);
  const pkg = /^node_modules[\\/]((@[^\\/]+[\\/])?[^\\/]+)[\\/](.*)$/.exec(rel);
  return pkg ? `${pkg[1]}:${pkg[3]}` : rel;
};

const plugin = {
  name: 'bpfd',
  setup(b) {
    // src/cli/entry.ts names the shipped policy without a path: src/ imports nothing outside it
    b.onResolve({ filter: /^bpfd:shipped-policy$/ }, () => ({ path: path.join(root, 'wasm', 'bpfd.wasm') }));
    // and the capabilities file policies are built with (bpfd policy build, policy capabilities)
    b.onResolve({ filter: /^bpfd:capabilities$/ }, () => ({ path: path.join(root, 'policies', 'capabilities.json') }));
    // and the gRPC interface, which the service and the CLI client encode with
    b.onResolve({ filter: /^bpfd:bpfman-proto$/ }, () => ({ path: path.join(root, 'proto', 'bpfman', 'v1', 'bpfman.proto') }));
    b.onResolve({ filter: /^@koromix\// }, (args) =>
      args.path in shims ? { path: args.path, namespace: 'bpfd-shim' } : { path: args.path, external: true },
    );
    const names = Object.keys(shims).filter((n) => !n.startsWith('@koromix/'));
    b.onResolve({ filter: new RegExp(`^(${names.join('|')})$`) }, (args) => ({ path: args.path, namespace: 'bpfd-shim' }));
    b.onLoad({ filter: /.*/, namespace: 'bpfd-shim' }, (args) => ({ contents: shims[args.path], loader: 'js' }));
    b.onLoad({ filter: traced }, (args) => {
      let source = readFileSync(args.path, 'utf8');
      if (koffiStatic.test(args.path)) {
        if (!source.includes(koffiLocalRequire)) throw new Error(`compile: ${args.path} changed; revisit the koffi shim in scripts/compile.mjs`);
        source = source.replace(koffiLocalRequire, '');
      }
      if (koffiIndex.test(args.path)) {
        if (!source.includes(koffiUtilImport) || (source.match(/\butil\.\w+/g) ?? []).some((u) => u !== 'util.deprecate')) {
          throw new Error(`compile: ${args.path} changed; revisit the node:util shim in scripts/compile.mjs`);
        }
        source = source.replace(koffiUtilImport, koffiUtil);
      }
      if (!want('elf-gate') && /[\\/]src[\\/]loader[\\/]elf-gate\.ts$/.test(args.path)) {
        const head = 'export function checkBpfObject(path: string, data: Buffer): CheckedElf {';
        if (!source.includes(head)) throw new Error(`compile: ${args.path} changed; revisit --no-elf-gate`);
        source = source.replace(head, `${head}\n  return { sections: [], names: [], symtab: null };`);
      }
      // appended, not prepended: a "use strict" directive must stay first
      source += `\n;globalThis.__bpfdModules?.push(${JSON.stringify(traceName(args.path))});\n`;
      return { contents: source, loader: loaderOf(args.path) };
    });
  },
};

// A bpfd command runs most of its code once, then exits: JavaScriptCore's JIT compiling it on the
// way (on the same two cores) costs more than it saves. The executable starts with its tier-up
// thresholds scaled by this (Bun's compile.jitPolicy); the long-running service sets the normal
// policy back once it serves (base/jit.ts). See scripts/build.mjs for what it is worth.
const JIT_POLICY = 100;

const result = await Bun.build({
  entrypoints: [path.join(root, 'src/app/entry.ts')],
  compile: { outfile, ...(want('jit-policy') ? { jitPolicy: JIT_POLICY } : {}), autoloadDotenv: false, autoloadBunfig: false, autoloadTsconfig: false, autoloadPackageJson: false },
  target: 'bun',
  format: want('bytecode') ? 'cjs' : 'esm',
  bytecode: want('bytecode'),
  // Identifiers keep their names: lmdb's key codec (ordered-binary) compiles a reader with new
  // Function from the source of one of its own functions, which must keep its variable names.
  minify: want('minify') ? { whitespace: true, syntax: true, identifiers: false } : false,
  naming: { asset: '[name].[ext]' },
  banner: 'globalThis.__bpfdModules = process.env.BPFD_TRACE_MODULES ? [] : undefined;',
  define: {
    __BPFD_VERSION__: JSON.stringify(version),
    __BPFD_COMMIT__: JSON.stringify(commit),
  },
  plugins: [plugin],
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
