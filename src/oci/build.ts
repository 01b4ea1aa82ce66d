import { gzipSync } from 'node:zlib';
import { failed } from '../base/errors.js';
import type { RegistryClient } from './client.js';
import { LABEL_MAPS, LABEL_PROGRAMS } from './labels.js';
import { MediaType, type Descriptor } from './manifest.js';
import { hostPlatform } from './manifest.js';
import { sha256Digest } from './verified.js';

/** An image in bpfman's bytecode format, ready to push: every blob with its descriptor. */
export interface BuiltImage {
  manifest: Buffer;
  digest: string;
  config: { descriptor: Descriptor; bytes: Buffer };
  layer: { descriptor: Descriptor; bytes: Buffer };
}

/** A one-file ustar archive: the object, mode 0644, owned by root, time 0 (builds are reproducible). */
export function tarOneFile(name: string, data: Buffer): Buffer {
  if (Buffer.byteLength(name) > 100) throw failed(`file name '${name}' is over 100 bytes`);
  const h = Buffer.alloc(512);
  h.write(name, 0, 'utf8');
  const octal = (n: number, width: number) => n.toString(8).padStart(width - 1, '0') + '\0';
  h.write(octal(0o644, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(data.length, 12), 124, 'latin1');
  h.write(octal(0, 12), 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h.write('0', 156, 'latin1');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([h, data, pad, Buffer.alloc(1024)]);
}

/**
 * Builds the image: one gzip tar layer holding the object, and a config whose labels
 * (io.ebpf.programs, io.ebpf.maps) say which functions and maps it has.
 */
export function buildImage(o: { object: Buffer; filename: string; programs: Record<string, string>; maps: Record<string, string> }): BuiltImage {
  const tar = tarOneFile(o.filename, o.object);
  const layerBytes = gzipSync(tar, { level: 9 });
  const layer: Descriptor = { mediaType: MediaType.ociLayerGzip, digest: sha256Digest(layerBytes), size: layerBytes.length };
  const { os, architecture } = hostPlatform();
  const configBytes = Buffer.from(JSON.stringify({
    architecture,
    os,
    config: { Labels: { [LABEL_PROGRAMS]: JSON.stringify(o.programs), [LABEL_MAPS]: JSON.stringify(o.maps) } },
    rootfs: { type: 'layers', diff_ids: [sha256Digest(tar)] },
  }));
  const config: Descriptor = { mediaType: MediaType.ociConfig, digest: sha256Digest(configBytes), size: configBytes.length };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [layer] }));
  return { manifest, digest: sha256Digest(manifest), config: { descriptor: config, bytes: configBytes }, layer: { descriptor: layer, bytes: layerBytes } };
}

async function pushBlob(client: RegistryClient, d: Descriptor, bytes: Buffer): Promise<void> {
  const head = await client.request(`blobs/${d.digest}`, { method: 'HEAD', push: true, allow: [404] });
  head.done();
  if (head.res.status !== 404) return;
  const start = await client.request('blobs/uploads/', { method: 'POST', push: true });
  start.done();
  await start.res.body?.cancel();
  const loc = start.res.headers.get('location');
  if (!loc) throw failed(`registry ${client.registry} started an upload without saying where to send it (no Location)`);
  const url = new URL(loc, client.base);
  url.searchParams.set('digest', d.digest);
  const put = await client.request(url.toString(), { method: 'PUT', body: bytes, contentType: 'application/octet-stream', push: true });
  put.done();
  await put.res.body?.cancel();
}

/** Pushes the blobs, then the manifest under `tag` (a blob the registry has is not sent again). */
export async function pushImage(client: RegistryClient, image: BuiltImage, tag: string): Promise<void> {
  await pushBlob(client, image.layer.descriptor, image.layer.bytes);
  await pushBlob(client, image.config.descriptor, image.config.bytes);
  const r = await client.request(`manifests/${tag}`, { method: 'PUT', body: image.manifest, contentType: MediaType.ociManifest, push: true });
  r.done();
  await r.res.body?.cancel();
}
