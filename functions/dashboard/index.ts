import { Type } from '@sinclair/typebox';
import { defineFunction } from '../../lib/function.ts';
import { page } from '../../lib/pages.ts';

const BODY = `
<header>
  <h1>cyber-dojo runner · dashboard</h1>
  <span id="updated"></span>
  <a href="/playground">playground</a>
</header>
<main>
  <p id="error" class="error" role="alert"></p>
  <section id="detail"></section>
  <h2>katas</h2>
  <table id="katas"><thead><tr><th>kata</th><th>image</th><th>avatars (last light)</th><th>runs</th><th>time left</th></tr></thead><tbody></tbody></table>
  <h2>runs per minute</h2>
  <table id="runs-per-minute"><thead><tr><th>minute</th><th>red</th><th>amber</th><th>green</th><th>timed out</th><th>faulty</th></tr></thead><tbody></tbody></table>
  <h2>queue</h2>
  <p id="queue"></p>
  <h2>last reaps</h2>
  <ul id="reaps"></ul>
</main>`;

export default defineFunction({
  name: 'dashboard',
  method: 'GET',
  summary: "an operator's page: live katas, their avatars' last lights, runs per minute, the queue, the last reaps; it refreshes itself every 2 s",
  result: Type.String(),
  produces: 'text/html; charset=utf-8',
  open: true,
  handler: async (_body, { config }) => page(config.pagesDir, 'dashboard', 'dashboard', BODY),
});
