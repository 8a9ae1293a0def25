// The playground, in the browser: a start point, its files in a CodeMirror editor, the
// [test] button and the traffic lights. It uses only the runner's public functions, and
// sends image_name and unchanged_files with every run, so a kata that was reaped or
// removed comes back without the user noticing. Bundled by the set-up (esbuild).
import { cpp } from '@codemirror/lang-cpp';
import { java } from '@codemirror/lang-java';
import { javascript } from '@codemirror/lang-javascript';
import { python } from '@codemirror/lang-python';
import { StreamLanguage } from '@codemirror/language';
import { go } from '@codemirror/legacy-modes/mode/go';
import { ruby } from '@codemirror/legacy-modes/mode/ruby';
import { shell } from '@codemirror/legacy-modes/mode/shell';
import { EditorState, Prec, type Extension } from '@codemirror/state';
import { keymap } from '@codemirror/view';
import { basicSetup, EditorView } from 'codemirror';
import { call, element } from '../../lib/page-client.ts';

interface StartPoint {
  display_name: string;
  image_name: string;
  starting_files: Record<string, string>;
  max_seconds: number;
}
interface Text {
  content: string;
  truncated: boolean;
}
interface Run {
  stdout: Text;
  stderr: Text;
  colour: string;
  duration_ms: number;
  created: Record<string, Text>;
  changed: Record<string, Text>;
  deleted: string[];
  resurrected: boolean;
}

const AVATARS = ['alligator', 'bat', 'bee', 'cheetah', 'dolphin', 'fox', 'heron', 'koala', 'lion', 'owl', 'panda', 'salmon', 'tiger', 'zebra'];

const languageOf = (name: string): Extension => {
  const extension = name.slice(name.lastIndexOf('.') + 1);
  if (extension === 'py') return python();
  if (['js', 'mjs', 'cjs'].includes(extension)) return javascript();
  if (extension === 'java') return java();
  if (['c', 'h', 'cpp', 'hpp', 'cc'].includes(extension)) return cpp();
  if (extension === 'go') return StreamLanguage.define(go);
  if (extension === 'rb') return StreamLanguage.define(ruby);
  if (['sh', 'bats'].includes(extension)) return StreamLanguage.define(shell);
  return [];
};

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const state = {
  startPoint: undefined as StartPoint | undefined,
  kataId: '',
  avatar: '',
  files: new Map<string, string>(), // as the user has them
  sent: new Map<string, string>(), // as the kata holds them
  editors: new Map<string, EditorState>(),
  current: '',
  running: false,
};

// Ahead of the editor's own Mod-Enter (a blank line).
const runKeys = Prec.highest(keymap.of([{ key: 'Mod-Enter', run: () => (void test(), true) }]));
const view = new EditorView({ parent: $('editor') });

function stateOf(name: string): EditorState {
  let editor = state.editors.get(name);
  if (!editor) {
    editor = EditorState.create({
      doc: state.files.get(name) ?? '',
      extensions: [
        basicSetup,
        runKeys,
        languageOf(name),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) state.files.set(name, update.state.doc.toString());
        }),
      ],
    });
    state.editors.set(name, editor);
  }
  return editor;
}

function select(name: string): void {
  if (state.current) state.editors.set(state.current, view.state);
  state.current = name;
  view.setState(stateOf(name));
  renderTabs();
}

function renderTabs(): void {
  const tabs = $('tabs');
  tabs.replaceChildren(
    ...[...state.files.keys()].sort().map((name) => {
      const tab = element('button', { class: name === state.current ? 'tab current' : 'tab', role: 'tab', 'aria-selected': String(name === state.current), 'data-file': name }, name);
      tab.addEventListener('click', () => select(name));
      return tab;
    }),
  );
}

function setFiles(files: Record<string, string>): void {
  state.files = new Map(Object.entries(files));
  state.editors = new Map();
  state.current = '';
  const names = [...state.files.keys()].sort();
  select(names.find((n) => n !== 'cyber-dojo.sh') ?? names[0] ?? 'cyber-dojo.sh');
}

async function choose(startPoint: StartPoint): Promise<void> {
  state.startPoint = startPoint;
  state.kataId = Array.from(crypto.getRandomValues(new Uint8Array(5)), (b) => b.toString(16).padStart(2, '0')).join('').toUpperCase();
  state.avatar = AVATARS[Math.floor(Math.random() * AVATARS.length)]!;
  $('kata').textContent = `kata ${state.kataId} · ${state.avatar}`;
  $<HTMLInputElement>('max-seconds').value = String(startPoint.max_seconds);
  $('traffic-lights').replaceChildren();
  $('stdout').textContent = '';
  $('stderr').textContent = '';
  await call('kata_new', { image_name: startPoint.image_name, kata_id: state.kataId });
  await call('avatar_new', { kata_id: state.kataId, avatar_name: state.avatar, starting_files: startPoint.starting_files });
  state.sent = new Map(Object.entries(startPoint.starting_files));
  setFiles(startPoint.starting_files);
}

async function test(): Promise<void> {
  if (state.running || !state.startPoint) return;
  state.running = true;
  $<HTMLButtonElement>('test').disabled = true;
  $('error').textContent = '';
  try {
    if (state.current) state.editors.set(state.current, view.state);
    const changed: Record<string, string> = {};
    const unchanged: Record<string, string> = {};
    for (const [name, content] of state.files) (state.sent.get(name) === content ? unchanged : changed)[name] = content;
    const deleted = [...state.sent.keys()].filter((name) => !state.files.has(name));
    const maxSeconds = Number($<HTMLInputElement>('max-seconds').value) || state.startPoint.max_seconds;
    const run = (await call('run', {
      kata_id: state.kataId,
      avatar_name: state.avatar,
      changed_files: changed,
      deleted_filenames: deleted,
      max_seconds: Math.min(20, Math.max(1, maxSeconds)),
      image_name: state.startPoint.image_name,
      unchanged_files: unchanged,
    })) as Run;
    state.sent = new Map(state.files);
    // What the run made or changed appears as tabs (a file cut at 50 KiB is kept as it was),
    // what it deleted goes.
    for (const [name, text] of Object.entries({ ...run.created, ...run.changed })) {
      if (text.truncated) continue;
      state.files.set(name, text.content);
      state.sent.set(name, text.content);
      state.editors.delete(name);
    }
    for (const name of run.deleted) {
      state.files.delete(name);
      state.sent.delete(name);
      state.editors.delete(name);
    }
    if (!state.files.has(state.current)) state.current = '';
    select(state.current || [...state.files.keys()].sort()[0]!);
    const light = element('li', { 'data-colour': run.colour, title: `${run.colour}, ${run.duration_ms} ms${run.resurrected ? ', resurrected' : ''}` });
    $('traffic-lights').append(light);
    $('stdout').textContent = run.stdout.content;
    $('stderr').textContent = run.stderr.content;
  } catch (e) {
    $('error').textContent = (e as Error).message;
  } finally {
    state.running = false;
    $<HTMLButtonElement>('test').disabled = false;
  }
}

function newFile(): void {
  const name = prompt('new file name')?.trim();
  if (!name || state.files.has(name)) return;
  state.files.set(name, '');
  select(name);
}

function renameFile(): void {
  const from = state.current;
  const to = from && prompt(`rename ${from} to`, from)?.trim();
  if (!from || !to || to === from || state.files.has(to)) return;
  state.files.set(to, state.files.get(from)!);
  state.files.delete(from);
  state.editors.delete(from);
  state.current = '';
  select(to);
}

function deleteFile(): void {
  const name = state.current;
  if (!name || !confirm(`delete ${name}?`)) return;
  state.files.delete(name);
  state.editors.delete(name);
  state.current = '';
  const next = [...state.files.keys()].sort()[0];
  if (next) select(next);
  else view.setState(EditorState.create({ doc: '' }));
  renderTabs();
}

async function start(): Promise<void> {
  const startPoints = (await call('start_points')) as StartPoint[];
  const pick = $<HTMLSelectElement>('start-point');
  pick.replaceChildren(element('option', { value: '' }, 'choose a start point'), ...startPoints.map((s, i) => element('option', { value: String(i) }, s.display_name)));
  pick.addEventListener('change', () => {
    const chosen = startPoints[Number(pick.value)];
    if (chosen) choose(chosen).catch((e: Error) => ($('error').textContent = e.message));
  });
  $('test').addEventListener('click', () => void test());
  $('new-file').addEventListener('click', newFile);
  $('rename-file').addEventListener('click', renameFile);
  $('delete-file').addEventListener('click', deleteFile);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void test();
    }
  });
}

start().catch((e: Error) => ($('error').textContent = e.message));
