// `import x from 'bpfd:shipped-policy' with { type: 'file' }` (src/cli/entry.ts): the compile
// (scripts/compile.mjs) resolves the name to wasm/bpfd.wasm, Bun embeds the file in the
// executable, and the import is its path there.
declare module 'bpfd:shipped-policy' {
  const path: string;
  export default path;
}

// `import x from 'bpfd:capabilities' with { type: 'file' }`: policies/capabilities.json, the same
// way; Bun hands a JSON file over parsed, so it is the document rather than a path.
declare module 'bpfd:capabilities' {
  const path: string | object;
  export default path;
}

// `import x from 'bpfd:bpfman-proto' with { type: 'file' }`: proto/bpfman/v1/bpfman.proto, its path
// inside the executable.
declare module 'bpfd:bpfman-proto' {
  const path: string;
  export default path;
}
