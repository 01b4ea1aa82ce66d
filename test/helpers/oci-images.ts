import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';

/**
 * Bytecode images written the way an outside tool would: layers made by the system's tar, an
 * OCI image layout written here, pushed with `skopeo copy`. Nothing of bpfd's own image code
 * is used, so these images test bpfd against an independent producer.
 */

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export type LayerKind = 'tar.gz' | 'tar' | 'elf' | 'elf.gz' | 'dotdot' | 'symlink' | 'zstd';

export function makeLayer(object: string, kind: LayerKind, uniqueFile?: string, padding = 0): { bytes: Buffer; diffId: string; mediaType: string } {
  const obj = readFileSync(object);
  const name = path.basename(object);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'bpfd-layer-'));
  try {
    copyFileSync(object, path.join(tmp, name));
    if (uniqueFile) writeFileSync(path.join(tmp, uniqueFile), padding ? randomBytes(padding) : `${uniqueFile}\n`);
    const first = uniqueFile ? [uniqueFile] : [];
    const tar = (...args: string[]) => {
      const r = spawnSync('tar', ['--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', tmp, '-cf', '-', ...args], { maxBuffer: 64 << 20 });
      if (r.status !== 0) throw new Error(`tar: ${r.stderr}`);
      return r.stdout;
    };
    let plain: Buffer;
    switch (kind) {
      case 'elf':
        return { bytes: obj, diffId: sha(obj), mediaType: 'application/vnd.oci.image.layer.v1.tar' };
      case 'elf.gz':
        return { bytes: gzipSync(obj), diffId: sha(obj), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };
      case 'dotdot':
        // -P keeps the leading ../ that tar would otherwise strip
        plain = tar('-P', '--transform', 's,^,../../,', name);
        break;
      case 'symlink':
        symlinkSync('/etc/passwd', path.join(tmp, `a-link.o`));
        plain = tar('a-link.o', name);
        break;
      case 'zstd': {
        plain = tar(name);
        const z = spawnSync('zstd', ['-q', '-c'], { input: plain });
        // without the zstd tool, a zstd frame header is enough: bpfd refuses it by its magic
        const bytes = z.status === 0 ? z.stdout : Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), plain]);
        return { bytes, diffId: sha(plain), mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' };
      }
      default:
        plain = tar(...first, name);
    }
    if (kind === 'tar') return { bytes: plain, diffId: sha(plain), mediaType: 'application/vnd.oci.image.layer.v1.tar' };
    return { bytes: gzipSync(plain), diffId: sha(plain), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export interface PushOptions {
  object: string;
  /** io.ebpf.* labels; default: io.ebpf.programs naming `program` as xdp */
  labels?: Record<string, string>;
  program?: string;
  layer?: LayerKind;
  /** push an image index with an arm64 and an amd64 entry */
  index?: boolean;
  /** user:password for the registry */
  creds?: string;
  /** a file of this name goes into the tar before the object: a layer no other image shares */
  uniqueFile?: string;
  /** bytes of random (incompressible) data in that file, for layers of a given size (bench) */
  padding?: number;
}

export interface Pushed {
  /** the linux/amd64 image manifest's digest */
  digest: string;
  /** the index's digest, when pushed as one */
  indexDigest: string | null;
  layerDigest: string;
  layerSize: number;
}

/** Writes an OCI layout for the image and pushes it to `dest` (host/repo:tag) with skopeo. */
export function pushWithSkopeo(dest: string, o: PushOptions): Pushed {
  const layout = mkdtempSync(path.join(os.tmpdir(), 'bpfd-oci-layout-'));
  try {
    const blobs = path.join(layout, 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    const put = (b: Buffer) => {
      const d = sha(b);
      writeFileSync(path.join(blobs, d.slice(7)), b);
      return { digest: d, size: b.length };
    };
    const layer = makeLayer(o.object, o.layer ?? 'tar.gz', o.uniqueFile, o.padding);
    const layerDesc = { mediaType: layer.mediaType, ...put(layer.bytes) };
    const labels = o.labels ?? { 'io.ebpf.programs': JSON.stringify({ [o.program ?? path.basename(o.object, '.o')]: 'xdp' }), 'io.ebpf.maps': '{}' };
    const manifestFor = (architecture: string) => {
      const config = Buffer.from(JSON.stringify({ architecture, os: 'linux', config: { Labels: labels }, rootfs: { type: 'layers', diff_ids: [layer.diffId] } }));
      const manifest = Buffer.from(JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...put(config) },
        layers: [layerDesc],
      }));
      return { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...put(manifest), platform: { architecture, os: 'linux' } };
    };
    const amd64 = manifestFor('amd64');
    let top: { mediaType: string; digest: string; size: number } = amd64;
    let indexDigest: string | null = null;
    if (o.index) {
      const arm64 = manifestFor('arm64');
      const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [arm64, amd64] }));
      top = { mediaType: 'application/vnd.oci.image.index.v1+json', ...put(index) };
      indexDigest = top.digest;
    }
    const tag = dest.split(':').pop()!;
    writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: top.mediaType, digest: top.digest, size: top.size, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }));
    // --preserve-digests: skopeo would otherwise compress a plain tar layer and rewrite the manifest
    const args = ['copy', '--quiet', '--preserve-digests', '--dest-tls-verify=false', ...(o.index ? ['--all'] : []), ...(o.creds ? ['--dest-creds', o.creds] : []), `oci:${layout}:${tag}`, `docker://${dest}`];
    const r = spawnSync('skopeo', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`skopeo ${args.join(' ')}: ${r.stderr}`);
    return { digest: amd64.digest, indexDigest, layerDigest: layerDesc.digest, layerSize: layerDesc.size };
  } finally {
    rmSync(layout, { recursive: true, force: true });
  }
}
