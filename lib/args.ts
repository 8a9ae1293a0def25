// The contract's arguments: their TypeBox schemas (which validate requests and make
// the OpenAPI document) and the checks a schema cannot express (filenames in bytes).
import { Type, type ObjectOptions, type Static, type TSchema } from '@sinclair/typebox';
import { malformed } from './errors.ts';

// In order: an avatar's index is part of its uid, so this list never changes order.
export const AVATARS = [
  'alligator', 'antelope', 'bat', 'bear', 'bee', 'beetle', 'buffalo', 'butterfly',
  'cheetah', 'crab', 'deer', 'dolphin', 'eagle', 'elephant', 'flamingo', 'fox',
  'frog', 'gopher', 'gorilla', 'heron', 'hippo', 'hummingbird', 'hyena', 'jellyfish',
  'kangaroo', 'kingfisher', 'koala', 'leopard', 'lion', 'lizard', 'lobster', 'moose',
  'mouse', 'ostrich', 'owl', 'panda', 'parrot', 'peacock', 'penguin', 'porcupine',
  'puffin', 'rabbit', 'raccoon', 'ray', 'rhino', 'salmon', 'seal', 'shark',
  'skunk', 'snake', 'spider', 'squid', 'squirrel', 'starfish', 'swan', 'tiger',
  'toucan', 'tuna', 'turtle', 'vulture', 'walrus', 'whale', 'wolf', 'zebra',
] as const;
export type AvatarName = (typeof AVATARS)[number];

// Docker's reference grammar (distribution/reference), with its rule that a first
// component is a registry host only when it has a '.' or a ':' or is localhost.
const component = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const host = `(?:(?:${component}(?:\\.${component})+|localhost)(?::[0-9]+)?|${component}:[0-9]+|\\[[a-fA-F0-9:]+\\](?::[0-9]+)?)`;
const pathComponent = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const tag = '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}';
const digest = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
export const IMAGE_NAME_PATTERN = `^(?:${host}/)?${pathComponent}(?:/${pathComponent})*(?::${tag})?(?:@${digest})?$`;

export const KataId = Type.String({ pattern: '^[0-9A-F]{10}$', description: 'exactly 10 characters of 0-9A-F' });
export const Avatar = Type.Unsafe<AvatarName>(Type.String({ enum: [...AVATARS], description: 'one of the 64 avatars' }));
export const ImageName = Type.String({ pattern: IMAGE_NAME_PATTERN, maxLength: 512, description: 'a Docker image reference' });
export const MaxSeconds = Type.Integer({ minimum: 1, maximum: 20, description: 'wall-clock limit of the run' });
export const LifetimeSeconds = Type.Integer({ minimum: 60, maximum: 604800, description: 'how long the kata container lives (default 86400)' });
// An object of any keys, each holding a `value`. Not Type.Record: its key pattern
// '^(.*)$' matches no key with a line break, so such a key's value went unchecked in
// a request (a 500 where 400 was due) and the key was left out of an answer.
export const Dictionary = <T extends TSchema>(value: T, options: ObjectOptions = {}) =>
  Type.Unsafe<Record<string, Static<T>>>(Type.Object({}, { ...options, additionalProperties: value }));

export const Files = Dictionary(Type.String(), {
  description: 'filename -> UTF-8 text; filenames are relative, /-separated, no empty, . or .. segment, segments of at most 255 bytes, at most 1024 bytes in all',
});
export const Filenames = Type.Array(Type.String(), { description: 'filenames, as in Files' });
export type Files = Static<typeof Files>;

export const Text = Type.Object({ content: Type.String(), truncated: Type.Boolean() });

// The deepest name a request may carry, in segments: deeper than any project needs.
export const MAX_NAME_SEGMENTS = 64;

// A filename a caller may use: the contract's rule, checked in UTF-8 bytes.
export function filenameError(name: string): string | undefined {
  if (!name.isWellFormed()) return 'not UTF-8';
  if (name.includes('\0')) return 'NUL';
  if (name.startsWith('/')) return 'absolute';
  if (Buffer.byteLength(name, 'utf8') > 1024) return 'over 1024 bytes';
  const segments = name.split('/');
  if (segments.length > MAX_NAME_SEGMENTS) return `over ${MAX_NAME_SEGMENTS} segments`;
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..') return `segment '${segment}'`;
    if (Buffer.byteLength(segment, 'utf8') > 255) return 'segment over 255 bytes';
  }
  return undefined;
}

// Every name is checked, at most `max` of them (a sandbox holds no more files than that):
// the work is linear in the request's size, and done before anything else.
export function checkFilenames(arg: string, names: string[], max: number): void {
  if (names.length > max) throw malformed(arg, `${names.length} names, over ${max}`);
  for (const name of names) {
    const error = filenameError(name);
    if (error) throw malformed(arg, `${JSON.stringify(name)}: ${error}`);
  }
}

interface Folder {
  file: boolean;
  below?: Map<string, Folder>;
}

// Files must also fit together in one tree: no file may sit where another has a folder.
// A tree of the names' segments finds that in one pass over each name.
export function checkFiles(arg: string, files: Files, max: number): void {
  const names = Object.keys(files);
  checkFilenames(arg, names, max);
  const root: Folder = { file: false };
  for (const name of names) {
    if (!files[name]!.isWellFormed()) throw malformed(arg, `${JSON.stringify(name)}: content is not UTF-8`);
    let node = root;
    for (const segment of name.split('/')) {
      if (node.file) throw malformed(arg, `${JSON.stringify(name)}: a file stands where it needs a folder`);
      node.below ??= new Map();
      let next = node.below.get(segment);
      if (!next) node.below.set(segment, (next = { file: false }));
      node = next;
    }
    if (node.below) throw malformed(arg, `${JSON.stringify(name)} is both a file and a folder`);
    node.file = true;
  }
}
