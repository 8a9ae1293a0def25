import { Type } from '@sinclair/typebox';
import { defineFunction } from '../../lib/function.ts';
import { page } from '../../lib/pages.ts';

const BODY = `
<header>
  <h1>cyber-dojo runner · playground</h1>
  <label>start point <select id="start-point"></select></label>
  <span id="kata"></span>
  <a href="/dashboard">dashboard</a>
</header>
<main>
  <nav id="tabs" role="tablist"></nav>
  <div id="editor"></div>
  <p class="controls">
    <button id="test" title="Ctrl/Cmd-Enter">test</button>
    <label>max seconds <input id="max-seconds" type="number" min="1" max="20" size="3"></label>
    <button id="new-file">new file</button>
    <button id="rename-file">rename</button>
    <button id="delete-file">delete</button>
  </p>
  <p id="error" class="error" role="alert"></p>
  <ol id="traffic-lights" class="lights" aria-label="traffic lights"></ol>
  <h2>stdout</h2><pre id="stdout"></pre>
  <h2>stderr</h2><pre id="stderr"></pre>
</main>
<style>
  #tabs { display: flex; flex-wrap: wrap; gap: .25rem; }
  .tab { border-radius: .3rem .3rem 0 0; border-bottom: none; font-family: ui-monospace, monospace; font-size: .85rem; }
  .tab.current { background: #2b2b2b; color: #fff; }
  #editor { background: #fff; border: 1px solid #888; min-height: 16rem; }
  #editor .cm-editor { min-height: 16rem; }
  .controls { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
</style>`;

export default defineFunction({
  name: 'playground',
  method: 'GET',
  summary: 'a page to try a start point: its files in an editor, the [test] button, the traffic lights',
  result: Type.String(),
  produces: 'text/html; charset=utf-8',
  open: true,
  handler: async (_body, { config }) => page(config.pagesDir, 'playground', 'playground', BODY),
});
