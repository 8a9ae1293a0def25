// The dashboard, in the browser: GET /dashboard_data every 2 s, drawn as tables. With
// ?kata=<id>, that kata's avatars' last runs too.
import { call, element } from '../../lib/page-client.ts';

interface Run {
  at: string;
  colour: string;
  durationMs: number;
  stdout: string;
  stderr: string;
}
interface Data {
  at: string;
  queue: { waiting: number; running: number };
  katas: { kata_id: string; image_name: string; deadline: string; seconds_left: number; runs: number; avatars: Record<string, Run[]> }[];
  runs_per_minute: { minute: string; colours: Record<string, number> }[];
  reaps: { at: string; kataIds: string[] }[];
}

const REFRESH_MS = 2000;
const COLOURS = ['red', 'amber', 'green', 'timed_out', 'faulty'];
const $ = (id: string) => document.getElementById(id)!;
const shown = new URLSearchParams(location.search).get('kata');

const left = (seconds: number) => (seconds > 3600 ? `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min` : seconds > 60 ? `${Math.floor(seconds / 60)} min` : `${seconds} s`);
const time = (iso: string) => new Date(iso).toLocaleTimeString();

function draw(data: Data): void {
  $('updated').textContent = `updated ${time(data.at)}`;
  $('katas').querySelector('tbody')!.replaceChildren(
    ...data.katas.map((kata) =>
      element(
        'tr',
        { 'data-kata': kata.kata_id },
        element('td', {}, element('a', { href: `?kata=${kata.kata_id}` }, kata.kata_id)),
        element('td', {}, kata.image_name),
        element(
          'td',
          {},
          ...Object.entries(kata.avatars).flatMap(([avatar, runs]) => [
            element('span', { class: 'avatar', 'data-avatar': avatar }, avatar, ' ', element('span', { class: 'light', 'data-colour': runs[0]?.colour ?? 'none', title: runs[0] ? `${runs[0].colour}, ${runs[0].durationMs} ms, ${time(runs[0].at)}` : 'no run yet' })),
            ' ',
          ]),
        ),
        element('td', {}, String(kata.runs)),
        element('td', {}, left(kata.seconds_left)),
      ),
    ),
  );
  $('runs-per-minute').querySelector('tbody')!.replaceChildren(
    ...data.runs_per_minute.map((m) => element('tr', {}, element('td', {}, time(m.minute)), ...COLOURS.map((c) => element('td', {}, String(m.colours[c] ?? 0))))),
  );
  $('queue').textContent = `${data.queue.running} running, ${data.queue.waiting} waiting`;
  $('reaps').replaceChildren(...data.reaps.map((r) => element('li', {}, `${time(r.at)}: ${r.kataIds.join(', ')}`)));
  const kata = data.katas.find((k) => k.kata_id === shown);
  $('detail').replaceChildren(
    ...(kata
      ? [
          element('h2', {}, `kata ${kata.kata_id}: its avatars' last runs`),
          ...Object.entries(kata.avatars).flatMap(([avatar, runs]) => [
            element('h3', {}, avatar),
            ...runs.map((run) => element('details', {}, element('summary', {}, element('span', { class: 'light', 'data-colour': run.colour }), ` ${run.colour}, ${run.durationMs} ms, ${time(run.at)}`), element('pre', {}, run.stdout + run.stderr))),
          ]),
        ]
      : []),
  );
}

async function refresh(): Promise<void> {
  try {
    draw((await call('dashboard_data')) as Data);
    $('error').textContent = '';
  } catch (e) {
    $('error').textContent = (e as Error).message;
  }
  setTimeout(() => void refresh(), REFRESH_MS);
}

void refresh();
