// `import x from 'file.wasm' with { type: 'file' }` (src/cli/entry.ts): Bun embeds the file in
// the executable and the import is its path there.
declare module '*.wasm' {
  const path: string;
  export default path;
}
