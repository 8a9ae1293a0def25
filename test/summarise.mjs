// Runs the whole tap suite and ends with the line CI reads: `N passed, N failed`.
// Exits non-zero when anything failed or nothing ran (tap alone exits 0 for a file
// that asserts nothing).
import { spawn } from 'node:child_process';

const tap = spawn('npx', ['tap', '--reporter=tap', ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'] });
let summary;
let tail = '';
tap.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString('utf8')).slice(-4096);
  // tap's closing comment: # { total: 23, pass: 22, fail: 1, skip: ... }
  const matches = [...tail.matchAll(/^# \{ total: (\d+)([^}]*)\}$/gm)];
  if (matches.length) summary = matches.at(-1);
});
tap.on('close', (code) => {
  const count = (key) => Number(new RegExp(`${key}: (\\d+)`).exec(summary?.[2] ?? '')?.[1] ?? 0);
  const passed = count('pass');
  const failed = count('fail') + (summary ? 0 : 1);
  const skipped = count('skip') + count('todo');
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(code !== 0 || failed > 0 || passed === 0 ? 1 : 0);
});
